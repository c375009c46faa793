"""MONAI bundles run in RadLens as MONAI runs them, and their configs are read as data, never run.

The bundle is written here with MONAI's own classes (a small UNet trained for a few seconds on a
SYNTHETIC sphere phantom) in the model zoo's layout and config style, ``$`` expressions included in the
sections RadLens does not read. The reference is MONAI's own bundle run: its ConfigParser builds the
preprocessing, inferer and postprocessing from the same inference.json.
"""

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from radlens.cli import main as radlens
from radlens.inference.errors import BundleError

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("nibabel")  # MONAI's LoadImage reads NIfTI through nibabel here

sys.path.insert(0, str(Path(__file__).parent))
from nnunet_tiny_model import sphere_case, write_nifti  # noqa: E402

from radlens.inference.monai_bundle import import_monai_bundle  # noqa: E402

NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32]}
NETWORK.update(strides=[2, 2], num_res_units=1, norm="instance")
INFERENCE = {
    "imports": ["$import torch"],
    "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
    "image_key": "image",
    "network_def": NETWORK,
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, 2.0], "mode": "bilinear"},
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "image",
                "a_min": -100,
                "a_max": 400,
                "b_min": 0,
                "b_max": 1,
                "clip": True,
            },
            {"_target_": "EnsureTyped", "keys": "image"},
        ],
    },
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 16], "sw_batch_size": 2, "overlap": 0.5},
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "output_dir": "@output_dir",
                "output_postfix": "seg",
                "resample": False,
            },
        ],
    },
}
METADATA = {
    "name": "Spheres UNet (SYNTHETIC)",
    "version": "0.1.0",
    "monai_version": "1.4.0",
    "description": "a test bundle trained for seconds on SYNTHETIC spheres",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1}},
        "outputs": {
            "pred": {
                "type": "image",
                "num_channels": 3,
                "channel_def": {"0": "background", "1": "body", "2": "sphere"},
            },
        },
    },
}


def write_bundle(folder: Path, config: dict, weights=None) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "metadata.json").write_text(json.dumps(METADATA))
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    if weights is not None:
        torch.save(weights, folder / "models" / "model.pt")
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A MONAI bundle whose UNet learned body and spheres from one SYNTHETIC phantom, in MONAI's (x, y, z) order."""
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    image, labels = sphere_case(np.random.default_rng(3), shape=(24, 64, 64), spacing_xyz=(1.0, 1.0, 2.0), spheres=6)
    x = torch.from_numpy(np.clip((image.T.astype(np.float32) + 100) / 500, 0, 1))
    y = torch.from_numpy(labels.T.astype(np.int64))
    net = UNet(**{k: v for k, v in NETWORK.items() if k != "_target_"})
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(60):
        i, j, k = (int(rng.integers(0, n - p + 1)) for n, p in zip(x.shape, (32, 32, 16), strict=True))
        patch = (slice(i, i + 32), slice(j, j + 32), slice(k, k + 16))
        loss = torch.nn.functional.cross_entropy(net(x[patch][None, None]), y[patch][None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    config = {**INFERENCE, "output_dir": str(tmp_path_factory.mktemp("monai_out"))}
    return write_bundle(tmp_path_factory.mktemp("bundle") / "spheres", config, net.state_dict())


def monai_prediction(bundle: Path, image: Path) -> np.ndarray:
    """MONAI's own bundle run: its ConfigParser evaluates inference.json; the label map in (z, y, x)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(image)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    data = parser.get_parsed_content("postprocessing")(data)
    return np.asarray(data["pred"][0]).transpose(2, 1, 0).round().astype(np.uint8)


def test_a_monai_bundle_segments_in_radlens_as_in_monai(bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    image, _ = sphere_case(np.random.default_rng(8), shape=(20, 60, 70), spacing_xyz=(0.8, 0.9, 2.5), spheres=4)
    case = tmp_path / "case.nii.gz"
    write_nifti(image, str(case), (0.8, 0.9, 2.5), origin=(3.0, -4.0, 7.0))
    assert radlens(["infer", str(case), "--model", str(bundle), "--out", str(tmp_path / "out")]) == 0
    assert "importing the MONAI bundle" in capsys.readouterr().err
    from radlens.inference.findings import read_findings

    ours = {s.label: s.mask for s in read_findings(tmp_path / "out").segmentations}
    reference = monai_prediction(bundle, case)
    for value, name in ((1, "body"), (2, "sphere")):
        theirs = reference == value
        assert np.count_nonzero(theirs) > 100, f"the test network predicts no {name}"
        overlap = 2 * np.count_nonzero(ours[name] & theirs) / (np.count_nonzero(ours[name]) + np.count_nonzero(theirs))
        assert overlap >= 0.99, name


def _config_with(section: str, change) -> dict:
    config = copy.deepcopy(INFERENCE)
    change(config[section])
    return config


def test_an_expression_in_a_section_radlens_reads_is_refused_and_never_run(tmp_path):
    canary = tmp_path / "ran"
    config = _config_with(
        "network_def", lambda n: n.update(channels=f"$__import__('pathlib').Path('{canary}').touch()")
    )
    folder = write_bundle(tmp_path / "b", config, {})
    with pytest.raises(BundleError, match=r"inference.json: network_def.channels: expression .* is never evaluated"):
        import_monai_bundle(folder, tmp_path / "out")
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_unknown_targets_and_torchscript_are_refused_with_the_reason(tmp_path):
    config = _config_with("preprocessing", lambda p: p["transforms"].append({"_target_": "monai.apps.download_url"}))
    with pytest.raises(BundleError, match=r"preprocessing\[6\]: _target_ 'monai.apps.download_url' is not one"):
        import_monai_bundle(write_bundle(tmp_path / "a", config, {}), tmp_path / "out")
    config = _config_with("network_def", lambda n: n.update(_target_="os.system"))
    with pytest.raises(BundleError, match=r"network_def: _target_ 'os.system' is not one RadLens builds"):
        import_monai_bundle(write_bundle(tmp_path / "b", config, {}), tmp_path / "out")
    folder = write_bundle(tmp_path / "c", INFERENCE)
    (folder / "models" / "model.ts").write_bytes(b"PK")
    with pytest.raises(BundleError, match="TorchScript is code and is not run"):
        import_monai_bundle(folder, tmp_path / "out")


# The model zoo's networks, each with a few channels: (network_def, SlidingWindowInferer's roi_size).
ZOO_NETWORKS = {
    "UNet": ({"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}, 16),
    "SegResNet": ({"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1], "dropout_prob": 0.2}, 16),
    # img_size: what zoo configs still pass, which MONAI ≥ 1.5 no longer accepts (it ignored it since 1.3).
    "SwinUNETR": (
        {"img_size": 32, "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "norm_name": "batch"},
        32,
    ),
    "DynUNet": (
        {"kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "filters": [4, 8, 16]},
        16,
    ),
    "BasicUNet": ({"features": [4, 4, 8, 8, 16, 4]}, 32),
}


@pytest.mark.parametrize("target", sorted(ZOO_NETWORKS))
def test_each_zoo_network_imports_and_runs(target, tmp_path, monkeypatch):
    """Each network MONAI's model zoo uses, written with MONAI's class, comes back with the same weights
    (the same output) and segments a study; the inferer's device (a ``$`` expression) is RadLens' choice."""
    from monai.networks import nets

    from radlens.inference.bundle import load_bundle
    from radlens.inference.findings import read_findings

    kwargs, roi = ZOO_NETWORKS[target]
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, **kwargs}
    torch.manual_seed(0)
    built = {k: v for k, v in kwargs.items() if k != "img_size"}
    net = getattr(nets, target)(**built).eval()
    config = copy.deepcopy(INFERENCE)
    config["network_def"] = {"_target_": target, **kwargs}
    config["inferer"] = {
        "_target_": "SlidingWindowInferer",
        "roi_size": roi,
        "sw_batch_size": "@settings#batch",
        "overlap": 0.25,
        "mode": "gaussian",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    }
    config["settings"] = {"batch": 2}
    folder = import_monai_bundle(write_bundle(tmp_path / "zoo", config, net.state_dict()), tmp_path / "bundle")
    shutil.rmtree(tmp_path / "zoo")  # after import, only the bundle's safetensors and JSON are read
    loaded = load_bundle(folder)
    assert loaded.metadata.document["monai"]["inferer"]["sw_batch_size"] == 2
    x = torch.randn(1, 1, roi, roi, roi)
    with torch.inference_mode():
        assert torch.equal(loaded.network(x), net(x))

    image, _ = sphere_case(np.random.default_rng(2), shape=(10, 24, 20), spacing_xyz=(1.0, 1.0, 2.0), spheres=2)
    case = tmp_path / "case.nii.gz"
    write_nifti(image, str(case), (1.0, 1.0, 2.0))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert radlens(["infer", str(case), "--model", str(folder), "--out", str(tmp_path / "out")]) == 0
    segs = read_findings(tmp_path / "out").segmentations
    assert [s.label for s in segs] == ["body", "sphere"]
    assert all(s.mask.shape == image.shape for s in segs)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_pt_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = write_bundle(tmp_path / "b", INFERENCE, {"model": _RunsCode(marker)})
    with pytest.raises(BundleError, match=r"model.pt: refused: not loadable as weights only"):
        import_monai_bundle(folder, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
