"""`radlens ensemble`: one bundle whose output is the mean of its members' outputs, each member fed the
input it was trained on; members that do not fit together are refused with every reason; a detector
ensemble's score threshold is chosen again at ≤ 1 false positive per scan on a calibration set."""

import json

import numpy as np
import pytest
import torch

from radlens.cli import main
from radlens.imaging.progress import run_to_end
from radlens.imaging.volume_io import write_volume
from radlens.inference.bundle import load_bundle, save_bundle
from radlens.inference.engine import sliding_windows
from radlens.inference.networks import build_network
from radlens.inference.preprocess import Preprocess
from tests.inference.inference_helpers import (
    DETECTOR_KWARGS,
    ct_input,
    metadata,
    random_bundles,
    sphere_ct,
    two_stage_bundle,
)

# Two CT windows as two seeds' splits measure them: different percentiles, z-scored differently.
WINDOW_A = {"kind": "ct-clip", "clip": [-900.0, 80.0], "scale": "zscore", "mean": -300.0, "std": 250.0}
WINDOW_B = {"kind": "ct-clip", "clip": [-1000.0, 50.0], "scale": "unit"}


def _member(folder, seed: int, window: dict, split: dict, **input_changes):
    torch.manual_seed(seed)
    meta = metadata("det", "detection", "centernet3d", DETECTOR_KWARGS, input=ct_input(normalization=window))
    meta["input"].update(input_changes)
    meta["thresholds"] = {"score": 0.1 + 0.3 * seed}
    meta["training"] = {**meta["training"], "seed": seed, "split": split, "command": f"radlens train seed {seed}"}
    return save_bundle(folder, build_network("centernet3d", **DETECTOR_KWARGS), meta)


def _output(bundle, volume) -> np.ndarray:
    """The stitched network output on the model grid, exactly as `radlens infer` computes it."""
    prepared = Preprocess(bundle.input)(volume)
    out, _ = run_to_end(sliding_windows(bundle.network, prepared.image, bundle.input.patch_zyx, amp=False))
    return out.numpy()


def test_the_ensemble_outputs_the_mean_of_its_members_each_on_its_own_window(tmp_path, capsys):
    a = _member(tmp_path / "a", 1, WINDOW_A, {"train": ["c1", "c2", "c3"], "validation": ["c4", "c5"]})
    b = _member(tmp_path / "b", 2, WINDOW_B, {"train": ["c1", "c2", "c4"], "validation": ["c3", "c5"]})
    out = tmp_path / "chest-ensemble"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 0
    assert "calibrate it with --calibrate" in capsys.readouterr().err

    ensemble = load_bundle(out)
    volume = sphere_ct([(12, 24, 26), (8, 14, 30)])  # HU from -1000 to 60: both windows clip something
    expected = (_output(load_bundle(a), volume) + _output(load_bundle(b), volume)) / 2
    np.testing.assert_allclose(_output(ensemble, volume), expected, rtol=1e-4, atol=1e-4)

    meta = json.loads((out / "metadata.json").read_text())
    assert meta["arch"] == "ensemble" and meta["name"] == "chest-ensemble"
    assert meta["input"]["normalization"]["clip"] == [-1000.0, 80.0]  # holds both members' windows
    assert meta["thresholds"]["score"] == pytest.approx((0.4 + 0.7) / 2)
    training = meta["training"]
    assert training["seed"] == [1, 2]
    assert [m["command"] for m in training["ensemble_of"]] == ["radlens train seed 1", "radlens train seed 2"]
    assert [m["sha256"] for m in training["ensemble_of"]] == [load_bundle(a).sha256, load_bundle(b).sha256]
    # Only a case neither member trained on is held out for `radlens evaluate`.
    assert training["split"]["validation"] == ["c5"]

    # `radlens infer` runs it like any bundle.
    write_volume(volume, tmp_path / "ct.nii.gz")
    assert main(["infer", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "found"), "--model", str(out)]) == 0
    findings = json.loads((tmp_path / "found" / "findings.json").read_text())
    assert [m["name"] for m in findings["models"]] == ["chest-ensemble"]


def test_bundles_that_cannot_be_averaged_are_refused_with_every_reason(tmp_path, capsys):
    split = {"train": ["c1"], "validation": ["c2"]}
    a = _member(tmp_path / "a", 1, WINDOW_A, split)
    b = _member(tmp_path / "b", 2, WINDOW_A, split, patch_zyx=[16, 16, 16], mirror_axes=[0])
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("radlens: error: these bundles cannot be averaged")
    assert "input.patch_zyx [16, 16, 16]" in err and "input.mirror_axes [0]" in err
    assert not out.exists()

    assert main(["ensemble", str(a), "--out", str(out)]) == 1
    assert "at least two member bundles" in capsys.readouterr().err
    assert not out.exists()


def test_two_stage_detectors_average_into_a_two_stage_detector_for_the_same_organ(tmp_path, capsys):
    """The ensemble of two two-stage detectors finds candidates as they do, scores each by the mean of
    the members' logits, keeps their scoring rule and gates its boxes to the lungs as they do."""
    from radlens.inference import candidates
    from radlens.inference.engine import run_bundle
    from radlens.inference.lungs import find_lungs

    a, b = two_stage_bundle(tmp_path / "a", seed=1), two_stage_bundle(tmp_path / "b", seed=2)
    out = tmp_path / "ens"
    assert main(["ensemble", str(a.info.path), str(b.info.path), "--out", str(out)]) == 0
    ensemble = load_bundle(out)
    assert ensemble.metadata.pipeline == "candidates" and ensemble.metadata.scoring == a.metadata.scoring
    assert ensemble.metadata.applicability.region == "lungs"

    volume = sphere_ct(((30, 60, 50),), radius_mm=4.0, shape_zyx=(60, 120, 120), spacing_zyx=(1.5, 1.2, 1.2))
    findings = run_to_end(run_bundle(volume, ensemble))
    dets = findings.detections
    assert dets and find_lungs(volume).touches([d.center_lps for d in dets], [d.diameter_mm for d in dets]).all()
    views = np.random.default_rng(0).normal(size=(5, 2, 32, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        x = torch.from_numpy(views)
        mean_logit = (a.network(x) + b.network(x))[:, 0] / 2
    np.testing.assert_allclose(
        run_to_end(candidates.classify(ensemble.network, views)), torch.sigmoid(mean_logit), atol=1e-6
    )

    c = two_stage_bundle(tmp_path / "c", seed=3, scoring="classifier×shape")
    assert main(["ensemble", str(a.info.path), str(c.info.path), "--out", str(tmp_path / "mixed")]) == 1
    assert "scoring 'classifier×shape'" in capsys.readouterr().err


def test_a_calibrated_detector_ensemble_keeps_to_one_false_positive_per_scan(tmp_path, capsys):
    from radlens.imaging.phantom import iter_write_phantoms

    data = run_to_end(iter_write_phantoms(tmp_path / "calib", kind="chest-ct", cases=3, seed=5, shape_zyx=(24, 48, 48)))
    split = {"train": ["x"], "validation": ["y"]}
    a = _member(tmp_path / "a", 1, WINDOW_A, split, spacing_zyx=[4.0, 4.0, 4.0])
    b = _member(tmp_path / "b", 2, WINDOW_B, split, spacing_zyx=[4.0, 4.0, 4.0])
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(out), "--calibrate", str(data)]) == 0
    assert "FP/scan on 3 cases" in capsys.readouterr().err
    meta = json.loads((out / "metadata.json").read_text())
    calibration = meta["evaluation"]["calibration"]
    assert calibration["cases"] == 3 and calibration["synthetic"] is True
    assert calibration["data_command"].startswith(f"radlens phantom {data}")
    assert meta["thresholds"]["score"] == calibration["threshold"]
    assert calibration["fps_per_scan"] <= 1.0

    # Evaluated on the same cases, the bundle's own threshold gives what the calibration recorded.
    assert main(["evaluate", str(out), str(data), "--out", str(tmp_path / "m.json")]) == 0
    at = json.loads((tmp_path / "m.json").read_text())["froc"]["at_threshold"]
    assert at["fps_per_scan"] == pytest.approx(calibration["fps_per_scan"])
    assert at["sensitivity"] == pytest.approx(calibration["sensitivity"])


def test_calibrating_a_segmenter_ensemble_is_refused_before_anything_is_written(tmp_path, capsys):
    _, seg = random_bundles(tmp_path)
    out = tmp_path / "ens"
    assert main(["ensemble", str(seg), str(seg), "--out", str(out), "--calibrate", str(tmp_path)]) == 1
    assert "--calibrate chooses a detector's score threshold" in capsys.readouterr().err
    assert not out.exists()
