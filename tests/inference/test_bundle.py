"""Model bundles: what saves loads back identically, and nothing unsafe or inconsistent loads at all."""

import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.inference.bundle import list_bundles, load_bundle, save_bundle  # noqa: E402
from radlens.inference.errors import BundleError  # noqa: E402
from radlens.inference.metadata import DEFAULT_BLEND, DEFAULT_OVERLAP, InputSpec, Normalization  # noqa: E402
from radlens.inference.networks import build_network  # noqa: E402


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def tiny_meta(**changes):
    meta = {
        "name": "tiny-detector",
        "version": "0.0.1",
        "task": "detection",
        "description": "random weights (synthetic test)",
        "labels": ["nodule"],
        "arch": "centernet3d",
        "arch_kwargs": {"channels": [4, 8], "features": 4, "num_res_units": 0},
        "input": {
            "modality": "CT",
            "spacing_zyx": [2.0, 2.0, 2.0],
            "patch_zyx": [16, 16, 16],
            "normalization": {"kind": "ct-clip", "clip": [-1000, 400]},
        },
        "thresholds": {"score": 0.4},
        "training": {"dataset": "none", "command": "test", "seed": 0, "date": "2026-01-01", "synthetic": True},
    }
    meta.update(changes)
    return meta


def make_bundle(folder, **changes):
    meta = tiny_meta(**changes)
    torch.manual_seed(0)
    net = build_network(meta["arch"], **meta["arch_kwargs"])
    save_bundle(folder, net, meta)
    return net


def test_round_trip_gives_the_same_outputs(tmp_path):
    net = make_bundle(tmp_path / "b").eval()
    loaded = load_bundle(tmp_path / "b")
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        assert torch.equal(net(x), loaded.network(x))
    assert loaded.info.name == "tiny-detector"
    assert loaded.info.threshold == 0.4
    assert loaded.info.modality == "CT"
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert len(meta["sha256"]) == 64 and meta["monai_version"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["metadata.json", "model.safetensors"]


class _Exploit:
    """Unpickling this creates a marker file: proof that code from the bundle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "state.pkl"])
def test_a_pickle_in_a_bundle_is_refused_and_never_opened(tmp_path, name):
    make_bundle(tmp_path / "b")
    marker = tmp_path / "pwned"
    (tmp_path / "b" / name).write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(BundleError, match=rf"{name}.*pickle"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="pickle"):
        load_bundle(tmp_path / "b" / name)
    assert not marker.exists()


def test_tampered_weights_are_refused(tmp_path):
    make_bundle(tmp_path / "b")
    w = tmp_path / "b" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(tmp_path / "b")


def _rewrite_state(folder, edit):
    """Change the weights file and re-record its sha256, as a careless exporter would."""
    from safetensors.torch import load_file, save_file

    from radlens.inference.bundle import sha256_of

    w = folder / "model.safetensors"
    state = load_file(str(w))
    edit(state)
    save_file(state, str(w))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"] = sha256_of(w)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_missing_extra_and_mis_shaped_weights_are_listed(tmp_path):
    make_bundle(tmp_path / "b")

    def edit(state):
        state.pop("heatmap.bias")
        state["extra.weight"] = torch.zeros(2)
        state["size.weight"] = torch.zeros(5, 4, 1, 1, 1)

    _rewrite_state(tmp_path / "b", edit)
    with pytest.raises(BundleError) as err:
        load_bundle(tmp_path / "b")
    msg = str(err.value)
    assert "missing weights: heatmap.bias" in msg
    assert "unexpected weights: extra.weight" in msg
    assert "size.weight" in msg and "mismatched" in msg
    assert "\n" not in msg


def test_unknown_architecture_is_refused_naming_the_known_ones(tmp_path):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["arch"] = "os.system"
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"unknown architecture.*centernet3d.*unet3d-seg"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("value", [["chest-ct-nodule-detector"], 3, "on-a-detector"])  # tiny_meta is a detector
def test_a_confirming_detector_that_is_not_a_name_is_refused(tmp_path, value):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["confirmed_by"] = value
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"confirmed_by must be a detector's bundle name, on a segmenter"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("value", [-1, "0.1", True, float("inf")])
def test_a_minimum_component_size_that_is_not_a_size_is_refused(tmp_path, value):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["thresholds"] = {"min_component_ml": value}
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"min_component_ml must be a number ≥ 0"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        *[
            ("mirror_axes", v, r"input.mirror_axes must list distinct image axes")
            for v in ([3], [0, 0], "012", [True], [1.0])
        ],
        *[("blend", v, r"input.blend .* is not one of constant, gaussian") for v in ("gauss", ["gaussian"], None)],
        *[("overlap", v, r"input.overlap must be a number from 0 up to") for v in (1.0, -0.1, "0.5", True)],
        *[("patch_zyx", v, r"input patch_zyx needs three positive whole numbers") for v in ([16, 16], [16, 16, 0.5])],
        *[("spacing_zyx", v, r"input spacing_zyx needs three positive numbers") for v in ([2, 2], [2, 0, 2])],
        ("crop", "liver", r"input.crop 'liver' is not one of body, lungs or null"),
        ("normalization", {"kind": "ct-clip", "clip": [400, -1000]}, r"clip must be two increasing numbers"),
        ("normalization", {"kind": "ct-clip", "window": [0, 1]}, r"normalization has unknown field\(s\): window"),
        ("normalization", {"kind": "minmax"}, r"normalization 'minmax' is not one of ct-clip, zscore"),
    ],
)
def test_window_settings_the_engine_cannot_run_are_refused(tmp_path, key, value, message):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["input"][key] = value
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_metadata_is_read_once_with_every_default_and_round_trips(tmp_path):
    """A bundle that leaves the optional settings out gets the documented defaults, in one place."""
    make_bundle(tmp_path / "b")
    meta = load_bundle(tmp_path / "b").metadata
    assert meta.input == InputSpec(
        modality="CT",
        spacing_zyx=(2.0, 2.0, 2.0),
        patch_zyx=(16, 16, 16),
        normalization=Normalization(kind="ct-clip", clip=(-1000.0, 400.0), scale="unit"),
        crop="body",  # CT crops to the body unless the bundle says otherwise
        overlap=DEFAULT_OVERLAP,
        blend=DEFAULT_BLEND,
        mirror_axes=(),
    )
    assert (meta.threshold, meta.min_component_ml, meta.labels) == (0.4, 0.0, ("nodule",))
    assert InputSpec.from_json(meta.input.to_json()) == meta.input
    mr = InputSpec.from_json({"modality": "mr", "spacing_zyx": [1, 1, 1], "patch_zyx": [8, 8, 8]})
    assert (mr.modality, mr.crop, mr.normalization.kind) == ("MR", None, "zscore")


def test_a_bad_metadata_field_names_the_file(tmp_path):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["labels"] = "nodule"
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        load_bundle(tmp_path / "b")
    message = str(err.value)
    assert message.startswith(str(tmp_path / "b" / "metadata.json")) and "labels must be a list" in message


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"region": "liver"}, r"applicability.region 'liver' is not one of lungs or null"),
        ({"lesion_diameter_mm": [30, 4]}, r"applicability.lesion_diameter_mm must be \[low, high\] in mm"),
        ({"contrast": "T2"}, r"applicability has unknown field\(s\): contrast"),
    ],
)
def test_an_applicability_the_engine_cannot_honour_is_refused(tmp_path, block, message):
    make_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    meta["applicability"] = block
    (tmp_path / "b" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_list_bundles_filters_by_modality_and_reports_broken_ones(tmp_path):
    make_bundle(tmp_path / "ct")
    make_bundle(tmp_path / "mr", name="tiny-mr", input={**tiny_meta()["input"], "modality": "MR"})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.json").write_text("{not json")
    errors = []
    names = {b.name for b in list_bundles("MR", dirs=(tmp_path,), errors=errors)}
    assert "tiny-mr" in names and "tiny-detector" not in names
    assert any("broken" in str(e) and "JSON" in str(e) for e in errors)
    assert load_bundle("tiny-mr", dirs=(tmp_path,)).info.modality == "MR"


def test_segmenter_has_one_logit_per_label_plus_background():
    net = build_network("unet3d-seg", n_labels=2, channels=(4, 8), num_res_units=0).eval()
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 16, 16, 16))
    assert out.shape == (1, 3, 16, 16, 16)
    assert np.isfinite(out.numpy()).all()
