"""Chest CT models keep their findings in the lungs: the lung mask from HU, and the engine's gate."""

import numpy as np
import pytest
from pydicom.data import get_testdata_file

torch = pytest.importorskip("torch")

from inference_helpers import DETECTOR_KWARGS, metadata  # noqa: E402

from radlens.imaging import load  # noqa: E402
from radlens.imaging.phantom import make_chest_ct  # noqa: E402
from radlens.imaging.progress import run_to_end  # noqa: E402
from radlens.imaging.volume import Volume  # noqa: E402
from radlens.inference.bundle import load_bundle, save_bundle  # noqa: E402
from radlens.inference.engine import run_bundle  # noqa: E402
from radlens.inference.findings import Detection  # noqa: E402
from radlens.inference.lungs import NOT_FOUND, find_lungs  # noqa: E402
from radlens.inference.networks import build_network  # noqa: E402


def chest_and_abdomen() -> Volume:
    """A SYNTHETIC trunk: 60 slices of chest (body, two lungs) above 60 of abdomen (body, a pocket of gas)."""
    z, y, x = np.indices((120, 96, 96), dtype=np.float32)
    a = np.full(z.shape, -1000, dtype=np.int16)
    body = ((y - 48) / 40) ** 2 + ((x - 48) / 44) ** 2 < 1
    a[body] = 40
    chest = z < 60
    for cx in (28, 68):
        a[chest & (((y - 46) / 26) ** 2 + ((x - cx) / 14) ** 2 < 1)] = -850
    a[(z - 90) ** 2 + (y - 40) ** 2 + (x - 50) ** 2 < 25] = -950  # bowel gas, 5 voxels across
    return Volume(a, (3.0, 3.0, 3.0), (-144.0, -144.0, 0.0), modality="CT", series_uid="1.2.3.trunk")


def _detection(volume: Volume, center_zyx, diameter_mm: float, i: int = 1) -> Detection:
    c = tuple(float(v) for v in center_zyx)
    box = (*(int(v) - 2 for v in c), *(int(v) + 3 for v in c))
    return Detection(i, "det", "nodule", 0.9, box, c, tuple(volume.index_to_lps(c)), diameter_mm)


def test_lungs_of_synthetic_chests_hold_every_labelled_nodule():
    for seed in range(4):
        phantom = make_chest_ct(seed)
        lungs = find_lungs(phantom.volume)
        assert lungs is not None and 2000 < lungs.volume_ml < 8000
        nodules = phantom.findings
        assert len(lungs.keep_detections(nodules)) == len(nodules)


def test_a_candidate_in_the_abdomen_is_dropped_and_one_in_the_lung_kept():
    trunk = chest_and_abdomen()
    in_lung = _detection(trunk, (30, 46, 28), 6.0, 1)
    on_pleura = _detection(trunk, (30, 46, 10), 12.0, 2)  # in the chest wall, touching the lung
    in_abdomen = _detection(trunk, (100, 60, 48), 8.0, 3)  # soft tissue 12 cm below the lungs
    beside_gas = _detection(trunk, (90, 40, 56), 6.0, 4)  # bowel gas is not lung
    kept = find_lungs(trunk).keep_detections([in_lung, on_pleura, in_abdomen, beside_gas])
    assert [d.center_zyx for d in kept] == [in_lung.center_zyx, on_pleura.center_zyx]
    assert [d.id for d in kept] == [1, 2]


def test_no_lungs_in_a_head_ct_or_an_mr():
    assert find_lungs(load(get_testdata_file("693_J2KI.dcm"))) is None  # a real head CT slice
    mr = chest_and_abdomen().with_array(chest_and_abdomen().array + 1000, modality="MR")
    assert find_lungs(mr) is None


def _trunk_candidates(trunk: Volume) -> tuple[Detection, ...]:
    return (
        _detection(trunk, (30, 46, 28), 6.0, 1),  # in the left lung
        _detection(trunk, (100, 60, 48), 8.0, 2),  # abdominal soft tissue
        _detection(trunk, (20, 46, 68), 10.0, 3),  # in the right lung
    )


@pytest.mark.parametrize("region", ["lungs", None])
def test_the_engine_gates_the_candidates_of_a_lung_model_only(tmp_path, monkeypatch, region):
    """What the network proposes in the abdomen never reaches findings.json of a lung model."""
    from radlens.inference import postprocess

    trunk = chest_and_abdomen()
    monkeypatch.setattr(postprocess, "decode_detections", lambda *a, **k: _trunk_candidates(trunk))
    meta = metadata("det", "detection", "centernet3d", DETECTOR_KWARGS, applicability={"region": region})
    meta["input"]["spacing_zyx"] = [6.0, 6.0, 6.0]
    bundle = load_bundle(save_bundle(tmp_path / "det", build_network("centernet3d", **DETECTOR_KWARGS), meta))
    found = run_to_end(run_bundle(trunk, bundle)).to_json()
    centres = [d["center_zyx"] for d in found["detections"]]
    if region == "lungs":
        assert centres == [[30, 46, 28], [20, 46, 68]] and [d["id"] for d in found["detections"]] == [1, 2]
    else:
        assert len(centres) == 3
    assert "warnings" not in found["models"][0]


def test_a_lung_model_refuses_a_series_without_lungs_and_says_why(tmp_path, monkeypatch):
    from radlens.inference import postprocess

    one = load(get_testdata_file("693_J2KI.dcm"))  # a real head CT slice, stacked into a thin volume
    head = one.with_array(np.repeat(one.array, 4, axis=0))
    monkeypatch.setattr(postprocess, "decode_detections", lambda *a, **k: (_detection(head, (0, 256, 256), 9.0),))
    meta = metadata("det", "detection", "centernet3d", DETECTOR_KWARGS, applicability={"region": "lungs"})
    meta["input"].update(spacing_zyx=[20.0, 4.0, 4.0], patch_zyx=[16, 32, 32])
    bundle = load_bundle(save_bundle(tmp_path / "det", build_network("centernet3d", **DETECTOR_KWARGS), meta))
    found = run_to_end(run_bundle(head, bundle)).to_json()
    assert found["detections"] == []
    (warning,) = found["models"][0]["warnings"]
    assert warning.startswith("refused: det:") and NOT_FOUND in warning


def test_a_lung_segmenters_components_away_from_the_lungs_leave_the_mask(tmp_path, monkeypatch):
    """The segmenter's mask keeps what touches the lungs and loses what lies in the abdomen."""
    from inference_helpers import SEGMENTER_KWARGS

    from radlens.inference import postprocess

    trunk = chest_and_abdomen()
    blobs = [(30, 46, 28), (100, 60, 48)]  # one in the left lung, one in abdominal soft tissue

    def lesion_logits(prep):
        """Logits on the model grid that say 'lesion' in a ball of 9 mm radius around each blob."""
        centres = prep.grid.lps_to_index(trunk.index_to_lps(np.asarray(blobs, dtype=float)))
        zyx = np.indices(prep.grid.shape_zyx).reshape(3, -1).T
        near = (((zyx[:, None, :] - centres[None]) * 6.0) ** 2).sum(-1).min(1) < 81
        out = torch.zeros((2, *prep.grid.shape_zyx))
        out[1] = torch.from_numpy(np.where(near, 5.0, -5.0).reshape(prep.grid.shape_zyx))
        return out

    real_segment = postprocess.segment

    def segment_lesions(output, prep, *args, **kwargs):
        return real_segment(lesion_logits(prep), prep, *args, **kwargs)

    monkeypatch.setattr(postprocess, "segment", segment_lesions)
    found = {}
    for region in ("lungs", None):
        meta = metadata("seg", "segmentation", "unet3d-seg", SEGMENTER_KWARGS, applicability={"region": region})
        meta["input"]["spacing_zyx"] = [6.0, 6.0, 6.0]
        bundle = load_bundle(save_bundle(tmp_path / str(region), build_network("unet3d-seg", **SEGMENTER_KWARGS), meta))
        (found[region],) = run_to_end(run_bundle(trunk, bundle)).segmentations
    assert found[None].mask[blobs[0]] and found[None].mask[blobs[1]] and len(found[None].components) == 2
    assert found["lungs"].mask[blobs[0]] and not found["lungs"].mask[60:].any()
    assert len(found["lungs"].components) == 1


def test_a_lungs_crop_keeps_the_chest_and_leaves_out_the_abdomen_and_every_nodule_stays_in():
    from radlens.inference.preprocess import CropToBody, CropToLungs

    trunk = chest_and_abdomen()
    z0, _, _, z1, _, _ = CropToLungs(margin_mm=12.0)(trunk)
    assert z0 == 0 and 60 <= z1 <= 60 + 2 + 12 / 3 + 1  # the lungs end at slice 60; the abdomen is left out
    assert CropToBody()(trunk)[3] == 120
    for seed in range(3):
        phantom = make_chest_ct(seed)
        box = np.asarray(CropToLungs()(phantom.volume))
        for n in phantom.findings:
            assert np.all(np.asarray(n.center_zyx) >= box[:3]) and np.all(np.asarray(n.center_zyx) < box[3:])


def test_a_lungs_crop_on_a_series_without_lungs_is_the_body():
    from radlens.inference.preprocess import CropToBody, CropToLungs

    head = load(get_testdata_file("693_J2KI.dcm"))
    assert CropToLungs()(head) == CropToBody()(head)
