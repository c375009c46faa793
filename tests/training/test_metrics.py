"""Metric functions against cases whose answers are worked out by hand."""

import numpy as np
import pytest

from radlens.training import metrics
from radlens.training.metrics import Candidate, Nodule


def test_dice_rules_for_empty_masks_and_a_known_overlap():
    empty = np.zeros((4, 4, 4), bool)
    a = empty.copy()
    a[0, :2, :2] = True  # 4 voxels
    b = empty.copy()
    b[0, :2, 1:3] = True  # 4 voxels, 2 shared
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.dice(a, empty) == 0.0
    assert metrics.dice(empty, a) == 0.0
    assert metrics.dice(a, b) == pytest.approx(2 * 2 / 8)
    labels = np.zeros((4, 4, 4), int)
    labels[a] = 1
    assert metrics.dice_per_label(labels, labels, [1, 2]) == {1: 1.0, 2: 1.0}


def test_hd95_in_millimetres_on_single_voxels_and_shifted_blocks():
    p = np.zeros((5, 5, 9), bool)
    r = p.copy()
    p[2, 2, 1] = True
    r[2, 2, 4] = True
    # Three columns apart along x at 2 mm: 6 mm in both directions.
    assert metrics.hd95(p, r, (1.0, 1.0, 2.0)) == pytest.approx(6.0)
    # A block and the same block shifted one slice along z at 3 mm: no surface point is farther than 3 mm.
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.roll(a, 1, axis=0)
    assert metrics.hd95(a, b, (3.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert metrics.hd95(a, a, (3.0, 1.0, 1.0)) == 0.0
    assert metrics.hd95(a, np.zeros_like(a), (1, 1, 1)) is None
    assert metrics.hd95(np.zeros_like(a), np.zeros_like(a), (1, 1, 1)) == 0.0


def _hd95_by_distance_transforms(pred, ref, spacing_zyx):
    """The definition written out: surfaces are what a 6-connected erosion removes; each surface voxel's
    distance to the other surface from an exact distance transform; the larger 95th percentile."""
    from scipy import ndimage

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))

    sp, sr = surface(pred), surface(ref)
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing_zyx)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing_zyx)[sr]
    return max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))


def _ball(shape, centre, radius_vox):
    zz, yy, xx = np.indices(shape)
    return ((zz - centre[0]) / radius_vox[0]) ** 2 + ((yy - centre[1]) / radius_vox[1]) ** 2 + (
        (xx - centre[2]) / radius_vox[2]
    ) ** 2 <= 1


@pytest.mark.parametrize(
    ("pred", "ref", "spacing"),
    [
        # two overlapping ellipsoids, anisotropic voxels
        (_ball((24, 40, 40), (12, 20, 20), (6, 12, 12)), _ball((24, 40, 40), (13, 18, 21), (5, 10, 13)),
         (2.5, 0.8, 0.8)),
        # two lesions against one, at the array's border (the surface includes the border voxels)
        (
            _ball((16, 32, 32), (3, 8, 8), (4, 6, 6)) | _ball((16, 32, 32), (10, 24, 24), (3, 5, 5)),
            _ball((16, 32, 32), (0, 9, 8), (5, 7, 6)),
            (1.0, 1.0, 1.0),
        ),
        (np.random.default_rng(3).random((12, 20, 20)) > 0.7, np.random.default_rng(4).random((12, 20, 20)) > 0.8,
         (3.0, 1.5, 0.7)),
    ],
)  # fmt: skip
def test_hd95_equals_the_distance_transform_definition(pred, ref, spacing):
    assert metrics.hd95(pred, ref, spacing) == pytest.approx(_hd95_by_distance_transforms(pred, ref, spacing), rel=1e-5)


def test_a_lesion_touching_itself_at_a_corner_is_one_lesion_in_evaluation_and_in_the_findings():
    """Two blocks meeting only at a corner voxel: one lesion for the metrics, one component for the reader."""
    from types import SimpleNamespace

    from radlens.inference.postprocess import segment
    from radlens.training.validation import model_grid_prepared

    mask = np.zeros((12, 16, 16), bool)
    mask[2:5, 2:5, 2:5] = True
    mask[5:8, 5:8, 5:8] = True  # touches the first block at one corner only
    counts = metrics.lesion_detection(mask, mask)
    assert (counts["lesions"], counts["components"]) == (1, 1)
    assert len(metrics.lesion_dice(mask, mask, (1, 1, 1))) == 1

    image = np.zeros(mask.shape, np.float32)
    logits = np.stack([np.where(mask, -4.0, 4.0), np.where(mask, 4.0, -4.0)]).astype(np.float32)
    prep = model_grid_prepared(SimpleNamespace(image=image, spacing_zyx=(1.0, 1.0, 1.0)))
    (seg,) = segment(logits, prep, "m", ["lesion"])
    assert len(seg.components) == 1 and seg.components[0].volume_ml == pytest.approx(54 / 1000)


def test_per_lesion_counts_and_lesion_dice():
    ref = np.zeros((10, 20, 20), bool)
    ref[2:5, 2:5, 2:5] = True  # lesion 1 (27 voxels)
    ref[2:5, 12:15, 12:15] = True  # lesion 2, missed
    pred = np.zeros_like(ref)
    pred[2:5, 2:5, 2:4] = True  # finds lesion 1 (18 voxels)
    pred[7:9, 15:17, 2:4] = True  # a false component
    m = metrics.lesion_detection(pred, ref)
    assert (m["lesions"], m["lesions_found"], m["components"], m["components_true"]) == (2, 1, 2, 1)
    assert m["sensitivity"] == 0.5 and m["precision"] == 0.5 and m["f1"] == 0.5
    # 27 voxels of 1 mm³: a sphere of the same volume is 3.72 mm wide.
    lesions = metrics.lesion_dice(pred, ref, (1, 1, 1))
    assert [round(d["dice"], 4) for d in lesions] == [round(2 * 18 / 45, 4), 0.0]
    assert metrics.lesion_dice(pred, ref, (1, 1, 1), min_diameter_mm=4.0) == []
    v = metrics.volume_error(pred, ref, (1, 1, 1))
    assert v["ref_ml"] == pytest.approx(0.054) and v["pred_ml"] == pytest.approx(0.026)


def _made_up_scans():
    scan_a = (
        [
            Candidate((1, 1, 1), 0.9),  # hits nodule 1
            Candidate((2, 0, 0), 0.8),  # hits nodule 1 again: counted once, never a false positive
            Candidate((100, 0, 0), 0.7),  # false positive
            Candidate((52, 0, 0), 0.6),  # hits nodule 2 (radius 3 mm)
        ],
        [Nodule((0, 0, 0), 10.0), Nodule((50, 0, 0), 6.0)],
    )
    scan_b = (
        [Candidate((30, 0, 0), 0.95), Candidate((0, 3, 0), 0.5)],  # a false positive, then a hit (radius 4)
        [Nodule((0, 0, 0), 8.0)],
    )
    return [scan_a, scan_b]


def test_froc_with_the_luna16_hit_rule():
    f = metrics.froc(_made_up_scans(), threshold=0.6)
    assert f["nodules"] == 3 and f["scans"] == 2
    # Thresholds: 0.95 → (0, 0.5 FP/scan); 0.9 → (1/3, 0.5); 0.7 → (1/3, 1); 0.6 → (2/3, 1); 0.5 → (1, 1).
    # The curve keeps the points where sensitivity rises (0.8 and 0.7 only add false positives or repeat hits).
    points = [(p["threshold"], round(p["sensitivity"], 4), p["fps_per_scan"]) for p in f["curve"]]
    assert points == [(0.95, 0.0, 0.5), (0.9, 0.3333, 0.5), (0.6, 0.6667, 1.0), (0.5, 1.0, 1.0)]
    s = f["sensitivity_at_fps"]
    assert s["0.125"] == 0.0 and s["0.25"] == 0.0
    assert s["0.5"] == pytest.approx(1 / 3)
    assert s["1.0"] == s["2.0"] == s["4.0"] == s["8.0"] == 1.0
    assert f["cpm"] == pytest.approx((1 / 3 + 4) / 7)
    at = f["at_threshold"]
    assert at["sensitivity"] == pytest.approx(2 / 3) and at["fps_per_scan"] == 1.0
    assert at["precision"] == pytest.approx(0.5)  # 2 nodules found, 2 false positives
    assert at["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_froc_leaves_small_nodules_out_without_counting_hits_on_them_as_false_positives():
    f = metrics.froc(_made_up_scans(), min_diameter_mm=7.0)
    assert f["nodules"] == 2  # the 6 mm nodule is left out
    fps_at_lowest = f["curve"][-1]["fps_per_scan"]
    assert fps_at_lowest == 1.0  # still two false positives in two scans: the hit on the 6 mm nodule is neither
    assert f["curve"][-1]["sensitivity"] == 1.0
