"""nnU-Net v2 results folders run in RadLens as nnU-Net's own predictor runs them.

The models are real: nnU-Net plans, preprocesses and trains a 3d_fullres and a 2d model here
(tests/inference/nnunet_tiny_model.py, SYNTHETIC data, about a minute each on two cores). Parity is
the contract: the same label map as ``nnUNetPredictor`` with Dice ≥ 0.99 per label, on a case whose
spacing differs from the training data, so the resampling runs both ways.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radlens.cli import main as radlens
from radlens.inference.errors import BundleError

nnunetv2 = pytest.importorskip("nnunetv2", reason="nnU-Net is a test extra: pip install -e '.[nnunet]'")
# nnU-Net trains two tiny models in the first test's setup: minutes on two busy cores.
pytestmark = pytest.mark.timeout(1500)
torch = pytest.importorskip("torch")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from nnunet_tiny_model import DATASET, LABELS, predict_with_nnunet, sphere_case, write_nifti  # noqa: E402

from radlens.inference import nnunet  # noqa: E402
from radlens.inference.nnunet_import import import_nnunet, read_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def nnunet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nnunet")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    script = [sys.executable, str(HERE / "nnunet_tiny_model.py"), str(root), "8", "40", "3d_fullres", "2d"]
    done = subprocess.run(script, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def results_folder(nnunet_root) -> Path:
    return nnunet_root / "res" / DATASET / "nnUNetTrainerTiny__nnUNetPlans__3d_fullres"


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """A SYNTHETIC case unlike the training data's grid: 4 mm slices of 0.7 mm pixels, another size."""
    image, _ = sphere_case(np.random.default_rng(5), shape=(12, 70, 80), spacing_xyz=(0.7, 0.7, 4.0), spheres=3)
    path = tmp_path_factory.mktemp("case") / "case_0000.nii.gz"
    write_nifti(image, str(path), (0.7, 0.65, 4.0), origin=(1.0, 2.0, 3.0))
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def assert_parity(ours: dict, reference: np.ndarray) -> None:
    """Dice ≥ 0.99 per label between RadLens' masks (by label name) and nnU-Net's label map."""
    assert reference.shape == ours["body"].shape
    for name, value in LABELS.items():
        if value == 0:
            continue
        theirs = reference == value
        assert np.count_nonzero(theirs) > 100, f"the tiny model predicts no {name}: parity would be vacuous"
        assert dice(ours[name], theirs) >= 0.99, name


@pytest.mark.slow
def test_an_imported_nnunet_model_segments_as_nnunets_predictor_does(results_folder, case, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert radlens(["import", str(results_folder), "--out", str(bundle)]) == 0
    assert "imported Dataset902_Spheres-3d_fullres" in capsys.readouterr().out
    assert sorted(p.name for p in bundle.iterdir()) == ["metadata.json", "model.safetensors"]
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["labels"] == ["body", "sphere"] and meta["pipeline"] == "nnunet"
    assert meta["training"]["source"] == "nnU-Net v2 results folder" and meta["input"]["modality"] == "CT"

    assert radlens(["infer", str(case), "--model", str(bundle), "--out", str(tmp_path / "out")]) == 0
    from radlens.inference.findings import read_findings

    findings = read_findings(tmp_path / "out")
    ours = {s.label: s.mask for s in findings.segmentations}
    reference, _ = predict_with_nnunet(results_folder, case)
    assert_parity(ours, reference)


@pytest.mark.slow
def test_a_2d_nnunet_model_segments_slice_by_slice_as_nnunet_does(nnunet_root, case, tmp_path, capsys):
    folder = nnunet_root / "res" / DATASET / "nnUNetTrainerTiny__nnUNetPlans__2d"
    bundle = tmp_path / "bundle"
    assert radlens(["import", str(folder), "--out", str(bundle), "--checkpoint", "checkpoint_best.pth"]) == 0
    assert "imported Dataset902_Spheres-2d" in capsys.readouterr().out
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["training"]["checkpoint"] == "checkpoint_best.pth" and meta["nnunet"]["configuration"] == "2d"
    assert radlens(["infer", str(case), "--model", str(bundle), "--out", str(tmp_path / "out")]) == 0
    from radlens.inference.findings import read_findings

    ours = {s.label: s.mask for s in read_findings(tmp_path / "out").segmentations}
    # nnU-Net's side from the same checkpoint: checkpoint_best.pth in place of checkpoint_final.pth.
    reference_folder = tmp_path / "reference"
    shutil.copytree(folder, reference_folder)
    shutil.copy(folder / "fold_all" / "checkpoint_best.pth", reference_folder / "fold_all" / "checkpoint_final.pth")
    reference, _ = predict_with_nnunet(reference_folder, case)
    assert_parity(ours, reference)


@pytest.mark.slow
def test_model_flag_takes_a_results_folder_and_imports_it_once(results_folder, case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for run in range(2):
        out = tmp_path / f"out{run}"
        assert radlens(["infer", str(case), "--model", str(results_folder), "--out", str(out)]) == 0
        notice = capsys.readouterr().err
        assert ("importing the nnU-Net model" in notice) == (run == 0)
        assert (out / "findings.json").is_file()
    assert [p.name for p in (tmp_path / "data" / "radlens" / "models").iterdir()] == ["Dataset902_Spheres-3d_fullres"]


@pytest.mark.slow
def test_two_folds_are_one_ensemble_and_checkpoints_load_weights_only(results_folder, tmp_path):
    folder = tmp_path / "two_folds"
    shutil.copytree(results_folder, folder)
    shutil.copytree(folder / "fold_all", folder / "fold_0")
    assert "network_weights" in read_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    meta = json.loads((import_nnunet(folder, tmp_path / "b") / "metadata.json").read_text())
    assert meta["arch"] == "ensemble" and meta["arch_kwargs"]["members"] == 2
    assert meta["training"]["folds"] == ["0", "all"]
    with pytest.raises(BundleError, match=r"fold_3.*no checkpoint_final.pth or checkpoint_best.pth"):
        import_nnunet(folder, tmp_path / "c", folds=["3"])


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _results_folder(tmp_path: Path, labels=None, checkpoint=None) -> Path:
    folder = tmp_path / "model"
    (folder / "fold_0").mkdir(parents=True)
    labels = labels or {"background": 0, "lesion": 1}
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels}))
    (folder / "plans.json").write_text("{}")
    if checkpoint is not None:
        torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = _results_folder(tmp_path, checkpoint={"network_weights": _RunsCode(marker)})
    with pytest.raises(BundleError, match=r"checkpoint_final.pth: refused: not loadable as weights only"):
        import_nnunet(folder, tmp_path / "bundle")
    assert not marker.exists()
    assert not (tmp_path / "bundle").exists()


def test_what_radlens_cannot_run_yet_is_refused_with_the_reason(tmp_path):
    regions = _results_folder(tmp_path, labels={"background": 0, "whole": [1, 2], "core": 2})
    with pytest.raises(BundleError, match="region-based nnU-Net models"):
        import_nnunet(regions, tmp_path / "b")
    block = {"transpose_forward": [0, 1, 2], "spacing": [1, 1, 1], "patch_size": [8, 8, 8], "normalization": "x"}
    with pytest.raises(BundleError, match="'3d_lowres' is not supported yet"):
        nnunet.NnunetPlan.from_json({**block, "configuration": "3d_lowres"})
    with pytest.raises(BundleError, match="normalization 'x' is not supported"):
        nnunet.NnunetPlan.from_json({**block, "configuration": "3d_fullres"})


def test_plans_name_only_allow_listed_networks_and_blocks():
    from radlens.inference.networks import build_network

    with pytest.raises(BundleError, match=r"'os.system' is not one RadLens builds"):
        build_network("nnunet", network_class="os.system", arch_kwargs={})
    kwargs = {"conv_op": "builtins.eval"}
    with pytest.raises(BundleError, match=r"conv_op 'builtins.eval' is not an allowed building block"):
        build_network("nnunet", network_class="PlainConvUNet", arch_kwargs=kwargs, block_names=["conv_op"])


@pytest.mark.slow
@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_a_residual_encoder_unet_imports_from_its_best_checkpoint(nnunet_root, results_folder, configuration, tmp_path):
    """nnU-Net's residual-encoder plans (nnUNetPlannerResEncM, planned on the same data): the network RadLens
    builds through its allow-list computes what nnU-Net's own builder's network computes with those weights."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from radlens.inference.bundle import load_bundle

    plans = load_json(str(nnunet_root / "pre" / DATASET / "nnUNetResEncUNetMPlans.json"))
    arch = plans["configurations"][configuration]["architecture"]
    assert arch["network_class_name"].endswith("ResidualEncoderUNet")
    arch["arch_kwargs"]["features_per_stage"] = [4 * 2**i for i in range(arch["arch_kwargs"]["n_stages"])]
    torch.manual_seed(0)
    theirs = get_network_from_plans(
        arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 3, deep_supervision=False
    ).eval()
    folder = tmp_path / "resenc"
    (folder / "fold_0").mkdir(parents=True)
    shutil.copy(results_folder / "dataset.json", folder / "dataset.json")
    (folder / "plans.json").write_text(json.dumps(plans))
    checkpoint = {
        "network_weights": theirs.state_dict(),
        "init_args": {"configuration": configuration},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2) if configuration == "3d_fullres" else (0, 1),
        "current_epoch": 1,
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_best.pth")  # no checkpoint_final.pth: the best is taken

    bundle = load_bundle(import_nnunet(folder, tmp_path / "bundle"))
    training = bundle.metadata.document["training"]
    assert training["checkpoint"] == "checkpoint_best.pth" and training["configuration"] == configuration
    patch = plans["configurations"][configuration]["patch_size"]
    x = torch.randn(1, 1, *patch)
    with torch.inference_mode():
        if configuration == "2d":  # a 2D network runs on one-slice windows
            torch.testing.assert_close(bundle.network(x[:, :, None])[:, :, 0], theirs(x))
        else:
            torch.testing.assert_close(bundle.network(x), theirs(x))


@pytest.mark.parametrize("configuration", ["3d_lowres", "3d_cascade_fullres"])
def test_low_resolution_and_cascade_models_are_refused_as_not_supported_yet(configuration, tmp_path, capsys):
    checkpoint = {"network_weights": {}, "init_args": {"configuration": configuration}}
    folder = _results_folder(tmp_path, checkpoint=checkpoint)
    assert radlens(["import", str(folder), "--out", str(tmp_path / "bundle")]) == 1
    error = capsys.readouterr().err
    assert f"configuration '{configuration}' is not supported yet (supported: 2d, 3d_fullres)" in error
    assert error.startswith("radlens: error: ") and not (tmp_path / "bundle").exists()


def test_windows_gaussian_and_resampling_are_nnunets():
    """Step for step against nnU-Net's own functions, on the sizes and spacings where they branch."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    for size, patch in (((40, 97, 128), (20, 56, 64)), ((20, 56, 64), (20, 56, 64)), ((33, 200, 31), (16, 96, 31))):
        theirs = compute_steps_for_sliding_window(size, patch, 0.5)
        assert [nnunet.window_starts(s, p) for s, p in zip(size, patch, strict=True)] == theirs
    patch = (20, 56, 63)
    theirs = compute_gaussian(patch, 1 / 8, 10, dtype=torch.float32, device=torch.device("cpu")).numpy()
    ours = np.einsum("i,j,k->ijk", *[nnunet.gaussian_profile(p) for p in patch])
    np.testing.assert_allclose(ours / ours.max(), theirs / theirs.max(), atol=1e-6)

    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 9, 30, 26)).astype(np.float32)
    for old, new, shape in (
        ((4.0, 0.7, 0.7), (3.0, 0.8, 0.8), (12, 26, 23)),  # anisotropic input: order 0 through-plane
        ((1.0, 1.0, 1.1), (0.8, 0.8, 0.8), (11, 38, 36)),  # isotropic: one 3D spline
        ((1.0, 0.7, 0.7), (3.0, 0.8, 0.8), (3, 26, 23)),  # anisotropic target
    ):
        for kwargs in ({"order": 3, "order_z": 0}, {"order": 1, "order_z": 0}):
            expected = resample_data_or_seg_to_shape(
                data, shape, old, new, is_seg=False, force_separate_z=None, **kwargs
            )
            how = nnunet.Resampling(kwargs["order"], kwargs["order_z"], None)
            np.testing.assert_allclose(nnunet.resample(data, shape, old, new, how), expected, atol=1e-4)
