"""Training on a tiny synthetic phantom set: the loss falls, the bundle runs in `radlens infer`, a resumed
run equals an uninterrupted one, a NaN loss stops cleanly, and DDP runs under torchrun (gloo, CPU)."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from radlens.cli import build_parser, main
from radlens.imaging.progress import Cancelled, run_showing, run_to_end
from radlens.training import train as train_module
from radlens.training import validation
from radlens.training.checkpoint import load_checkpoint
from radlens.training.cli import train_config
from radlens.training.errors import TrainingError
from radlens.training.train import train

TINY = ["--patch", "16", "32", "32", "--channels", "4", "8", "16", "--res-units", "0", "--batch", "2"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Four SYNTHETIC chest phantoms of 32×48×48 voxels (8 mm), each with nodules."""
    from radlens.imaging.phantom import iter_write_phantoms

    root = tmp_path_factory.mktemp("data") / "chest"
    return run_to_end(iter_write_phantoms(root, kind="chest-ct", cases=4, seed=1, shape_zyx=(32, 48, 48)))


def _config(*argv):
    return train_config(build_parser().parse_args(["train", *map(str, argv)]))


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_a_few_iterations_reduce_the_loss_and_write_a_bundle_radlens_infer_runs(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "tiny-seg"
    config = _config(
        "segment", tiny_dataset, "--out", out, "--epochs", 4, "--iterations", 5, "--lr", 0.01, "--mirror-axes", 2,
        "--overlap", 0.5, "--blend", "gaussian", *TINY
    )  # fmt: skip
    assert run_to_end(train(config, log=lambda s: None)) == out
    history = json.loads((out / "training_log.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert (out / "training_log.csv").read_text().startswith("epoch,loss,metric,")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "segmentation" and meta["arch"] == "unet3d-seg" and meta["labels"] == ["nodule"]
    assert meta["training"]["synthetic"] is True and meta["training"]["seed"] == 0
    made_by = f"radlens phantom {tiny_dataset} --kind chest-ct --cases 4 --seed 1 --shape 32 48 48"
    assert meta["training"]["data_command"] == made_by
    assert meta["training"]["split"]["validation"] and meta["input"]["spacing_zyx"] == [8.0, 8.0, 8.0]
    assert meta["input"]["normalization"]["kind"] == "ct-clip" and meta["input"]["mirror_axes"] == [2]
    assert meta["input"]["overlap"] == 0.5 and meta["input"]["blend"] == "gaussian"
    assert "dice_mean" in meta["evaluation"]["validation"]
    # The operating point the reader gets was chosen on the validation split, and the table behind it kept.
    chosen = meta["evaluation"]["validation"]["operating_point"]["chosen"]
    assert meta["thresholds"]["probability"] == chosen["probability"] in validation.PROBABILITY_GRID
    assert meta["thresholds"]["min_component_ml"] == chosen["min_component_ml"] >= 0

    image = tiny_dataset / "imagesTr" / "chest_000_0000.nii.gz"
    assert main(["infer", str(image), "--out", str(tmp_path / "found"), "--model", str(out)]) == 0
    findings = json.loads((tmp_path / "found" / "findings.json").read_text())
    assert [m["name"] for m in findings["models"]] == ["tiny-seg"]
    assert findings["models"][0]["sha256"] == meta["sha256"]

    # Evaluated on its own dataset: the validation split only, with a Dice-per-case plot beside the JSON.
    metrics_json = tmp_path / "eval" / "metrics.json"
    assert main(["evaluate", str(out), str(tiny_dataset), "--out", str(metrics_json), "--record"]) == 0
    doc = json.loads(metrics_json.read_text())
    assert doc["cases_from"] == "the bundle's validation split" and doc["synthetic"] is True
    assert doc["data_command"] == made_by
    assert sorted(doc["per_case"]) == meta["training"]["split"]["validation"]
    assert 0.0 <= doc["summary"]["1"]["dice_mean"] <= 1.0
    assert metrics_json.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = json.loads((out / "metadata.json").read_text())
    assert recorded["evaluation"]["held_out"]["summary"] == doc["summary"]
    assert recorded["sha256"] == meta["sha256"]


def _interrupt_after_first_epoch(job, cancel):
    def after_epoch_1(p):
        if isinstance(p.preview, dict) and p.preview.get("epoch_report", {}).get("epoch") == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        run_showing(job, after_epoch_1)


def test_resume_after_an_interruption_gives_the_same_weights_as_an_uninterrupted_run(tiny_dataset, tmp_path):
    common = ["--epochs", 2, "--iterations", 3, "--seed", 5, *TINY]
    straight = tmp_path / "straight"
    run_to_end(train(_config("detect", tiny_dataset, "--out", straight, *common), log=lambda s: None))

    broken = tmp_path / "broken"
    cancel = threading.Event()
    _interrupt_after_first_epoch(
        train(_config("detect", tiny_dataset, "--out", broken, *common), cancel, lambda s: None), cancel
    )
    assert not (broken / "metadata.json").exists()
    assert json.loads((broken / "training_log.json").read_text())[-1]["epoch"] == 1
    run_to_end(train(_config("detect", tiny_dataset, "--out", broken, "--resume", *common), log=lambda s: None))

    a, b = (
        _weights(straight / "checkpoints" / "last.safetensors"),
        _weights(broken / "checkpoints" / "last.safetensors"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [h["loss"] for h in json.loads((straight / "training_log.json").read_text())]
    lb = [h["loss"] for h in json.loads((broken / "training_log.json").read_text())]
    assert la == lb
    meta = json.loads((broken / "metadata.json").read_text())
    assert meta["task"] == "detection" and meta["thresholds"]["score"] > 0
    assert len(meta["training"]["resumed_with"]) == 1

    metrics_json = tmp_path / "froc.json"
    assert main(["evaluate", str(broken), str(tiny_dataset), "--out", str(metrics_json)]) == 0
    doc = json.loads(metrics_json.read_text())
    assert set(doc["froc"]["sensitivity_at_fps"]) == {"0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0"}
    assert doc["froc"]["at_threshold"]["threshold"] == meta["thresholds"]["score"]
    # Per nodule: the best score of a candidate within its radius (None = missed); they make the FROC's hits.
    hits = [h["best_score"] for c in doc["per_case"].values() for h in c["nodule_hits"]]
    assert len(hits) == doc["froc_all"]["nodules"] == sum(c["nodules"] for c in doc["per_case"].values())
    found_at = [s for s in hits if s is not None and s >= meta["thresholds"]["score"]]
    assert len(found_at) / len(hits) == doc["froc_all"]["at_threshold"]["sensitivity"]
    # The boxes a reader sees at the threshold: at least one per nodule found there, all counted.
    boxes = [c["boxes_at_threshold"] for c in doc["per_case"].values()]
    assert sum(boxes) >= len(found_at) and doc["summary"]["boxes_per_scan_at_threshold"] == round(
        sum(boxes) / len(boxes), 2
    )
    assert metrics_json.with_suffix(".png").is_file()


def test_resume_without_a_checkpoint_says_so(tiny_dataset, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        run_to_end(train(_config("segment", tiny_dataset, "--out", tmp_path / "none", "--resume", *TINY)))


def test_a_fixed_ct_window_and_a_lungs_crop_reach_the_bundle(tiny_dataset, tmp_path):
    """--clip keeps ground glass (-750 to -300 HU) inside the window; --crop lungs is what inference crops to."""
    out = tmp_path / "wide"
    config = _config(
        "detect", tiny_dataset, "--out", out, "--epochs", 1, "--iterations", 1, "--clip", -1000, 400,
        "--crop", "lungs", "--val-fraction", 0.25, *TINY
    )  # fmt: skip
    run_to_end(train(config, log=lambda s: None))
    block = json.loads((out / "metadata.json").read_text())["input"]
    assert block["normalization"] == {"kind": "ct-clip", "clip": [-1000.0, 400.0], "scale": "unit"}
    assert block["crop"] == "lungs"


@pytest.mark.parametrize(("option", "message"), [(["--clip", 400, -1000], "the low end must be below"),
                                                 (["--crop", "none", "--clip", 5, 5], "the low end")])  # fmt: skip
def test_a_window_upside_down_is_refused_before_training(tiny_dataset, tmp_path, option, message):
    with pytest.raises(TrainingError, match=message):
        _config("detect", tiny_dataset, "--out", tmp_path / "never", *option)


@pytest.mark.parametrize("overlap", [1.0, -0.25])
def test_an_overlap_no_bundle_could_run_is_refused_before_training(tiny_dataset, tmp_path, overlap):
    out = tmp_path / "never"
    with pytest.raises(TrainingError, match=r"--overlap .*: must be from 0 up to \(not including\) 1"):
        run_to_end(train(_config("segment", tiny_dataset, "--out", out, "--overlap", overlap, *TINY)))
    assert not out.exists()


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    real = train_module.make_loss
    calls = {"n": 0}

    def poisoned(task):
        loss = real(task)

        def fn(out, tgt):
            calls["n"] += 1
            value = loss(out, tgt)
            return value * float("nan") if calls["n"] > 3 else value  # the 2nd epoch goes bad

        return fn

    monkeypatch.setattr(train_module, "make_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError) as info:
        run_to_end(
            train(
                _config("segment", tiny_dataset, "--out", out, "--epochs", 3, "--iterations", 3, *TINY),
                log=lambda s: None,
            )
        )
    message = str(info.value)
    assert "epoch 2 iteration 1: loss is nan" in message
    assert str(out / "checkpoints" / "last.safetensors") in message
    from radlens.inference.networks import build_network

    net = build_network("unet3d-seg", n_labels=1, channels=[4, 8, 16], num_res_units=0)
    state = load_checkpoint(out / "checkpoints" / "last.safetensors", net)
    assert state["epoch"] == 0  # epoch 1, the last good one
    assert all(torch.isfinite(p).all() for p in net.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_trains_an_epoch(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    script = Path(sys.executable).parent / "radlens"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(script),
        "train", "segment", str(tiny_dataset), "--out", str(out), "--epochs", "1", "--iterations", "2", *TINY,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((out / "training_log.json").read_text())
    assert len(history) == 1  # one writer: rank 0
    assert result.stderr.count("bundle written") == 1
    assert json.loads((out / "metadata.json").read_text())["task"] == "segmentation"


def test_epochs_compare_cheaply_and_the_final_validation_runs_windows_as_the_bundle_does(monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from radlens.inference import engine

    seen = []

    def recording(network, image, patch, **kw):
        seen.append(kw)
        return (yield from engine_windows(network, image, patch, **kw))

    engine_windows = engine.sliding_windows
    monkeypatch.setattr(engine, "sliding_windows", recording)
    plan = SimpleNamespace(patch_zyx=[8, 16, 16], overlap=0.5, blend="gaussian", mirror_axes=[1, 2])
    image = np.zeros((8, 16, 16), np.float32)
    net = torch.nn.Conv3d(1, 2, 1)
    validation.predict_volume(net, image, plan, "cpu")
    validation.predict_volume(net, image, plan, "cpu", final=False)
    assert [(k["overlap"], k["blend"], list(k["mirror_axes"])) for k in seen] == [
        (0.5, "gaussian", [1, 2]),  # the bundle's own validation and operating point
        (validation.EPOCH_VALIDATION_OVERLAP, "gaussian", []),  # epochs: fewer windows, no mirroring
    ]


def test_the_operating_point_follows_the_validation_split(monkeypatch):
    """A faint lesion (p 0.42) and a bright one-voxel speck: the threshold drops below 0.42 to keep the
    lesion, and the minimum component size removes the speck without touching the lesion."""
    from types import SimpleNamespace

    import numpy as np

    label = np.zeros((12, 24, 24), np.uint8)
    label[3:8, 5:11, 5:11] = 1  # 6 voxels across at 2 mm: a 12 mm lesion
    fg = np.full(label.shape, 0.05)
    fg[label == 1] = 0.42
    fg[10, 20, 20] = 0.9  # 8 mm³: a 2.5 mm speck
    logits = np.log(np.stack([1 - fg, fg]))
    monkeypatch.setattr(validation, "predict_volume", lambda *a: logits)
    cache = SimpleNamespace(cases={"v": SimpleNamespace(image=None, label=label)})
    plan = SimpleNamespace(validation_cases=["v"], patch_zyx=[8, 16, 16], spacing_zyx=[2.0, 2.0, 2.0], mirror_axes=[])
    network = torch.nn.Identity()
    thresholds, table = validation.choose_operating_point(network, cache, plan, "cpu")
    assert thresholds["probability"] == 0.4  # the highest grid value that keeps the lesion
    assert table["chosen"]["min_component_diameter_mm"] == 3.0  # the smallest size that drops the speck
    assert thresholds["min_component_ml"] == pytest.approx(np.pi / 6 * 27 / 1000, abs=1e-5)
    assert table["chosen"]["lesion_precision"] == 1.0 and table["chosen"]["dice_mean"] == 1.0
    assert table["by_min_component_diameter_mm"]["0"]["lesion_precision"] == 0.5


def test_two_stage_training_writes_a_candidates_bundle_that_detects(tiny_dataset, tmp_path):
    from radlens.inference.bundle import load_bundle
    from radlens.inference.metadata import SCORINGS

    out = tmp_path / "two-stage"
    argv = ["train", "detect", str(tiny_dataset), "--out", str(out), "--two-stage", "--epochs", "1",
            "--iterations", "6", "--batch", "4", "--channels", "4", "8", "--val-fraction", "0.25",
            "--spacing", "3", "3", "3"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["pipeline"] == "candidates" and meta["arch"] == "nodule-classifier3d"
    assert meta["training"]["samples"]["positive"] > 0 and meta["training"]["samples"]["negative"] > 0
    validation = meta["evaluation"]["validation"]
    assert validation["cases"] == 1 and 0.0 <= validation["cpm"] <= 1.0
    # The scoring rule is the one with the best validation CPM, and the figures of both are kept.
    assert set(validation["cpm_by_scoring"]) == set(SCORINGS) and meta["scoring"] in SCORINGS
    assert validation["cpm"] == max(validation["cpm_by_scoring"].values())
    assert 0.0 <= meta["thresholds"]["score"] <= 1.0
    assert load_bundle(str(out)).metadata.pipeline == "candidates"

    # --init: the classifier's training continues from those weights, on the bundle's own grid.
    tuned = tmp_path / "tuned"
    argv_init = ["train", "detect", str(tiny_dataset), "--out", str(tuned), "--two-stage", "--epochs", "1",
                 "--iterations", "2", "--batch", "4", "--val-fraction", "0.25", "--init", str(out),
                 "--lr", "1e-9"]  # fmt: skip
    assert main(argv_init) == 0
    tuned_meta = json.loads((tuned / "metadata.json").read_text())
    assert tuned_meta["input"] == meta["input"] and tuned_meta["arch_kwargs"] == meta["arch_kwargs"]
    assert tuned_meta["training"]["init"] == {"name": "two-stage", "sha256": meta["sha256"]}
    # At a vanishing learning rate the tuned weights are the starting ones (a fresh network would differ).
    before = dict(load_bundle(str(out)).network.named_parameters())
    after = dict(load_bundle(str(tuned)).network.named_parameters())
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)


def test_two_stage_candidates_survive_a_killed_run(tiny_dataset, tmp_path, monkeypatch):
    import numpy as np

    from radlens.inference import candidates
    from radlens.inference.metadata import InputSpec
    from radlens.training import two_stage
    from radlens.training.datasets import read_dataset

    case = read_dataset(tiny_dataset, "detection").train_cases[0]
    spec = InputSpec.from_json(two_stage.input_block((3.0, 3.0, 3.0)))
    first = two_stage.case_samples(case, 1, spec, tmp_path)
    assert len(first["nodule_mm"]) and len(first["jittered"]) == two_stage.JITTERS * len(first["nodule_mm"])
    monkeypatch.setattr(candidates, "find_candidates", lambda *a, **k: pytest.fail("searched again"))
    again = two_stage.case_samples(case, 1, spec, tmp_path)
    assert sorted(first) == sorted(again) and all(np.array_equal(first[k], again[k]) for k in first)
