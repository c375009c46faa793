"""One finding per lesion: a detector's box and a segmenter's component of one lesion are fused, with
its size (RECIST long and short axes), volume, mean value and each model's score."""

import numpy as np
import pytest

from radlens.imaging.volume import Volume
from radlens.inference.findings import Detection, Findings, ModelRun, input_block
from radlens.inference.lesions import box_iou, fuse, recist_axes


def _ct_with_two_spheres() -> tuple[Volume, np.ndarray]:
    """A 40 HU body with a 10 mm sphere of 60 HU and, far away, a 6 mm one; the spheres' label map."""
    shape = (40, 80, 80)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    spacing = (1.0, 0.5, 0.5)
    a = np.full(shape, 40, np.int16)
    big = ((z - 20) * 1.0) ** 2 + ((y - 20) * 0.5) ** 2 + ((x - 20) * 0.5) ** 2 <= 5.0**2
    small = ((z - 20) * 1.0) ** 2 + ((y - 60) * 0.5) ** 2 + ((x - 60) * 0.5) ** 2 <= 3.0**2
    a[big] = 60
    a[small] = 100
    return Volume(a, spacing, (0.0, 0.0, 0.0), np.eye(3), modality="CT"), big | small


def _findings(volume: Volume, mask: np.ndarray) -> Findings:
    from radlens.inference.postprocess import label_segmentations

    prob = (mask * 230).astype(np.uint8)
    whole = tuple(slice(0, n) for n in volume.shape_zyx)
    (seg,) = label_segmentations(mask.astype(np.uint8), prob, whole, volume, "seg", ["nodule"])
    big_box = (15, 10, 10, 26, 31, 31)  # the detector's box around the 10 mm sphere: a little off
    other = (2, 2, 2, 6, 8, 8)  # a false positive nowhere near
    return Findings(
        input_block(volume),
        models=(ModelRun("det", "1", "detection", threshold=0.5), ModelRun("seg", "1", "segmentation")),
        detections=(
            Detection(1, "det", "nodule", 0.9, big_box, (20.0, 20.0, 20.0), (10.0, 10.0, 20.0), 10.0),
            Detection(2, "det", "nodule", 0.2, other, (3.5, 4.5, 4.5), (2.0, 2.0, 3.0), 3.0),
        ),
        segmentations=(seg,),
    )


def test_a_box_and_a_component_of_one_lesion_are_one_finding_with_its_measures():
    volume, mask = _ct_with_two_spheres()
    lesions = fuse(_findings(volume, mask), volume)
    assert len(lesions) == 3  # the big sphere (box + component), the small sphere, the false positive
    big, small, fp = lesions
    assert big.scores == {"seg": pytest.approx(230 / 255, abs=1e-3), "det": 0.9}
    assert [m.legacy_key for m in big.members] == ["seg:seg:nodule:1", "det:det:1"]
    assert big.long_mm == pytest.approx(10.0, abs=0.6) and big.short_mm == pytest.approx(10.0, abs=0.6)
    assert big.volume_ml == pytest.approx(4 / 3 * np.pi * 125 / 1000, rel=0.08)
    assert big.mean_value == 60.0 and small.mean_value == 100.0
    assert big.center_lps == pytest.approx((10.0, 10.0, 20.0), abs=0.3)
    assert small.long_mm == pytest.approx(6.0, abs=0.6) and small.scores.keys() == {"seg"}
    assert fp.volume_ml is None and fp.scores == {"det": 0.2}
    assert (fp.long_mm, fp.short_mm) == (3.0, 3.0)  # a box alone: its in-plane sides
    assert fp.mean_value == 40.0  # in the box's inscribed ellipsoid


def test_two_boxes_of_one_model_stay_two_findings_and_distant_boxes_do_not_fuse():
    volume, _ = _ct_with_two_spheres()
    box = (15, 10, 10, 26, 31, 31)
    dets = tuple(
        Detection(i, "det", "nodule", s, box, (20, 20, 20), (10, 10, 20), 10.0) for i, s in ((1, 0.9), (2, 0.8))
    )
    near = Detection(3, "det2", "nodule", 0.7, (16, 11, 11, 25, 30, 30), (20, 20, 20), (10, 10, 20), 9.0)
    far = Detection(4, "det3", "nodule", 0.7, (30, 60, 60, 36, 70, 70), (33, 65, 65), (32, 32, 33), 5.0)
    lesions = fuse(Findings(input_block(volume), detections=(*dets, near, far)), volume)
    assert [sorted(lesion.scores.items()) for lesion in lesions] == [
        [("det", 0.9), ("det2", 0.7)],
        [("det", 0.8)],
        [("det3", 0.7)],
    ]


def test_box_iou_and_recist_axes_of_an_ellipse():
    assert box_iou((0, 0, 0, 2, 2, 2), np.array([[0, 0, 0, 2, 2, 2], [1, 0, 0, 3, 2, 2], [5, 5, 5, 6, 6, 6]])) == (
        pytest.approx([1.0, 1 / 3, 0.0])
    )
    y, x = np.mgrid[:60, :60]
    ellipse = ((y - 30) / 20.0) ** 2 + ((x - 30) / 8.0) ** 2 <= 1.0  # 40 × 16 pixels, rows along y
    long_mm, short_mm = recist_axes(ellipse[None], (1.0, 0.5, 0.5))
    assert long_mm == pytest.approx(20.5, abs=0.6) and short_mm == pytest.approx(8.5, abs=0.6)


def test_rerunning_a_model_replaces_its_results():
    volume, mask = _ct_with_two_spheres()
    first = _findings(volume, mask)
    again = first.merged(first)
    assert [m.name for m in again.models] == ["det", "seg"]
    assert len(again.detections) == 2 and len(again.segmentations) == 1
    only_det = Findings(first.input, models=first.models[:1], detections=first.detections[:1])
    mixed = first.merged(only_det)
    assert [m.name for m in mixed.models] == ["seg", "det"] and len(mixed.detections) == 1
    assert len(fuse(mixed, volume)) == 2  # the box joins its component again; the false positive went with the rerun


def test_findings_turned_for_display_and_back_are_the_same():
    import dataclasses

    from radlens.imaging.orient import Orientation

    volume, mask = _ct_with_two_spheres()
    sagittal = dataclasses.replace(volume, direction=np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    found = _findings(sagittal, mask)
    o = Orientation.of(sagittal)
    shown = o.volume(sagittal)
    there = found.reoriented(o, shown)
    back = there.reoriented(o.inverse(), sagittal)
    assert [d.box_zyx for d in back.detections] == [d.box_zyx for d in found.detections]
    assert np.allclose([d.center_zyx for d in back.detections], [d.center_zyx for d in found.detections])
    assert np.array_equal(back.segmentations[0].mask, found.segmentations[0].mask)
    boxes = [[c.box_zyx for c in f.segmentations[0].components] for f in (back, found)]
    assert boxes[0] == boxes[1]
    assert there.detections[0].box_zyx != found.detections[0].box_zyx  # it was turned
    big, small, _ = fuse(there, shown)  # RECIST on the patient's axial plane (0.5 × 1.0 mm pixels there)
    assert (big.long_mm, small.long_mm) == pytest.approx((10.0, 6.0), abs=1.0)
