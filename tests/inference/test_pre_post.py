"""Pre-processing (what the network sees) and post-processing (what the reader gets back, on the input grid)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference_helpers import ct_input, sphere_ct  # noqa: E402

from radlens.imaging.volume import Volume  # noqa: E402
from radlens.inference.metadata import InputSpec, Normalization  # noqa: E402
from radlens.inference.postprocess import decode_detections, segment  # noqa: E402
from radlens.inference.preprocess import CropToBody, NormalizeIntensity, Preprocess  # noqa: E402


def test_ct_window_clips_then_scales_to_unit_range():
    norm = NormalizeIntensity(Normalization(kind="ct-clip", clip=(-1000, 400)))
    out = norm(np.array([-3000, -1000, -300, 400, 2000], dtype=np.int16))
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
    assert out.dtype == np.float32


def test_mr_zscore_uses_the_foreground_only():
    a = np.zeros((4, 10, 10), np.float32)
    a[:, 2:8, 2:8] = np.linspace(100, 300, 36).reshape(6, 6)
    out = NormalizeIntensity(Normalization(kind="zscore"))(a)
    fg = out[:, 2:8, 2:8]
    assert fg.mean() == pytest.approx(0, abs=1e-5) and fg.std() == pytest.approx(1, abs=1e-4)
    assert out[0, 0, 0] == pytest.approx(fg.min())  # background sits at the foreground's low end


def test_body_crop_keeps_the_body_and_drops_the_air():
    volume = sphere_ct(shape_zyx=(20, 80, 80), spacing_zyx=(2.0, 1.0, 1.0), body_fraction=0.3)
    box = CropToBody(margin_mm=4)(volume)
    body = np.argwhere(volume.array > -500)
    assert (body.min(0) >= box[:3]).all() and (body.max(0) < box[3:]).all()
    assert box[4] - box[1] < 80 and box[5] - box[2] < 80
    assert Preprocess(InputSpec.from_json(ct_input()))(volume).crop_zyx == CropToBody()(volume)


def _prepared():
    volume = sphere_ct(
        shape_zyx=(20, 64, 60), spacing_zyx=(2.5, 1.0, 1.0), origin_lps=(5.0, -3.0, 40.0), body_fraction=0.25
    )
    return volume, Preprocess(InputSpec.from_json(ct_input()))(volume)


def test_a_heatmap_peak_becomes_a_box_around_the_same_place_on_the_input_grid():
    volume, prep = _prepared()
    out = torch.full((4, *prep.image.shape), -8.0)
    peak = (5, 12, 14)  # model-grid voxel
    out[0][peak] = 3.0
    out[1:4, peak[0], peak[1], peak[2]] = torch.tensor([3.0, 4.0, 5.0])  # extent in model voxels (2 mm)
    (det,) = decode_detections(out, prep, "m", "nodule")
    expected_centre = volume.lps_to_index(prep.grid.index_to_lps(peak))
    np.testing.assert_allclose(det.center_zyx, expected_centre, atol=1e-6)
    np.testing.assert_allclose(det.center_lps, prep.grid.index_to_lps(peak), atol=1e-6)
    assert det.score == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))))
    z0, y0, x0, z1, y1, x1 = det.box_zyx
    # 6 × 8 × 10 mm on a 2.5 × 1 × 1 mm grid
    assert (z1 - z0, y1 - y0, x1 - x0) in {(2, 8, 10), (3, 8, 10), (2, 9, 11), (3, 9, 11)}
    assert det.diameter_mm == pytest.approx(8.0)


def test_a_nodule_box_over_30_mm_is_reported_as_a_mass_and_a_smaller_one_stays_a_nodule():
    _, prep = _prepared()
    out = torch.full((4, *prep.image.shape), -8.0)
    out[0, 5, 8, 8], out[1:4, 5, 8, 8] = 3.0, 16.0  # 32 mm on the 2 mm model grid
    out[0, 5, 22, 22], out[1:4, 5, 22, 22] = 2.0, 4.0  # 8 mm, far from it
    mass, nodule = decode_detections(out, prep, "m", "nodule")
    assert (mass.label, nodule.label) == ("mass", "nodule")
    assert mass.diameter_mm > 30 > nodule.diameter_mm
    assert [d.label for d in decode_detections(out, prep, "m", "lesion")] == ["lesion", "lesion"]


def test_overlapping_candidates_are_suppressed_and_weak_ones_kept_above_the_floor():
    _, prep = _prepared()
    out = torch.full((4, *prep.image.shape), -8.0)
    out[1:4] = 6.0
    out[0, 5, 10, 10] = 2.0
    out[0, 5, 10, 12] = 1.0  # a second peak inside the first box: suppressed
    out[0, 5, 22, 22] = -2.5  # far away, score 0.076: kept (above the 0.05 floor)
    out[0, 5, 24, 5] = -3.5  # score 0.029: below the floor
    dets = decode_detections(out, prep, "m", "nodule")
    assert [round(d.score, 3) for d in dets] == [0.881, 0.076]
    assert [d.id for d in dets] == [1, 2]


def test_a_large_nodule_draws_one_box_not_one_per_scale_and_its_neighbour_keeps_its_own():
    _, prep = _prepared()
    out = torch.full((4, *prep.image.shape), -8.0)
    out[0, 5, 14, 14], out[1:4, 5, 14, 14] = 4.0, 10.0  # 20 mm nodule, the strongest
    out[0, 5, 16, 15], out[1:4, 5, 16, 15] = 3.0, 3.0  # 6 mm inside it: the same object at a smaller scale
    out[0, 5, 14, 19], out[1:4, 5, 14, 19] = 2.5, 3.0  # 6 mm on its rim, 10 mm from its centre (IoU ~0.01)
    out[0, 5, 14, 25], out[1:4, 5, 14, 25] = 2.0, 3.0  # 6 mm nodule 22 mm away, clear of it: a finding
    dets = decode_detections(out, prep, "m", "nodule")
    assert [round(d.diameter_mm) for d in dets] == [20, 6]
    assert [round(d.score, 3) for d in dets] == [0.982, 0.881]


def test_segmentation_components_have_volume_centre_and_box_on_the_input_grid():
    volume = Volume(np.zeros((10, 40, 40), np.int16), (2.0, 2.0, 2.0), modality="MR")
    prep = Preprocess(InputSpec("MR", (2, 2, 2), (8, 16, 16)))(volume)
    logits = torch.zeros((2, 10, 40, 40))
    logits[1] = -5
    logits[1, 2:5, 5:10, 5:10] = 5  # 75 voxels of 8 µl = 0.6 ml
    logits[1, 6:8, 30:32, 30:32] = 5  # 8 voxels = 0.064 ml
    (seg,) = segment(logits, prep, "m", ["lesion"])
    assert seg.mask.shape == volume.shape_zyx and seg.mask.sum() == 83
    assert seg.volume_ml == pytest.approx(83 * 0.008)
    big, small = seg.components
    assert big.volume_ml == pytest.approx(0.6) and small.volume_ml == pytest.approx(0.064)
    assert big.box_zyx == (2, 5, 5, 5, 10, 10) and small.box_zyx == (6, 30, 30, 8, 32, 32)
    np.testing.assert_allclose(big.center_lps, volume.index_to_lps((3, 7, 7)))
    assert big.mean_probability == pytest.approx(float(torch.sigmoid(torch.tensor(5.0))), abs=1 / 255)


def test_components_below_the_bundles_minimum_size_leave_the_mask_and_the_list():
    volume = Volume(np.zeros((10, 40, 40), np.int16), (2.0, 2.0, 2.0), modality="MR")
    prep = Preprocess(InputSpec("MR", (2, 2, 2), (8, 16, 16)))(volume)
    logits = torch.full((2, 10, 40, 40), -5.0)
    logits[0] = 0
    logits[1, 2:5, 5:10, 5:10] = 5  # 75 voxels = 0.6 ml
    logits[1, 6:8, 30:32, 30:32] = 5  # 8 voxels = 0.064 ml
    logits[1, 1, 35, 35] = 5  # one voxel = 0.008 ml
    (kept,) = segment(logits, prep, "m", ["lesion"], min_component_ml=0.064)
    assert kept.mask.sum() == 83 and [c.volume_ml for c in kept.components] == pytest.approx([0.6, 0.064])
    (big,) = segment(logits, prep, "m", ["lesion"], min_component_ml=0.1)
    assert big.mask.sum() == 75 and not big.mask[6:8, 30:32, 30:32].any()
    assert big.volume_ml == pytest.approx(0.6) and [c.id for c in big.components] == [1]


def test_only_components_a_confirming_box_touches_stay_in_the_mask_and_the_list():
    volume = Volume(np.zeros((10, 40, 40), np.int16), (2.0, 2.0, 2.0), modality="CT")
    prep = Preprocess(InputSpec("CT", (2, 2, 2), (8, 16, 16)))(volume)
    logits = torch.full((2, 10, 40, 40), -5.0)
    logits[0] = 0
    logits[1, 2:5, 5:10, 5:10] = 5  # a nodule the detector boxed
    logits[1, 6:8, 30:32, 30:32] = 5  # a vessel it did not
    box = (3, 8, 8, 7, 14, 14)  # z0 y0 x0 z1 y1 x1: overlaps the first component's corner only
    (seg,) = segment(logits, prep, "m", ["nodule"], confirming_boxes=[box])
    assert seg.mask.sum() == 75 and not seg.mask[6:8, 30:32, 30:32].any()
    assert [c.box_zyx for c in seg.components] == [(2, 5, 5, 5, 10, 10)]
    (none,) = segment(logits, prep, "m", ["nodule"], confirming_boxes=[])
    assert not none.mask.any() and none.components == ()
    (all_,) = segment(logits, prep, "m", ["nodule"])  # no detector asked: nothing dropped
    assert all_.mask.sum() == 83


def test_an_empty_segmentation_is_an_empty_mask_not_an_error():
    volume, prep = _prepared()
    logits = torch.zeros((2, *prep.image.shape))
    logits[1] = -5
    (seg,) = segment(logits, prep, "m", ["nodule"])
    assert seg.mask.shape == volume.shape_zyx and not seg.mask.any()
    assert seg.volume_ml == 0 and seg.components == ()


def test_a_mask_maps_back_through_crop_and_resampling_onto_the_input_grid():
    volume, prep = _prepared()
    assert prep.crop_zyx != (0, 0, 0, *volume.shape_zyx)  # the air around the body was cropped
    body = (prep.grid.array > 100 / 1400).astype(np.uint8)  # above -900 HU on the model grid
    back = prep.to_input_grid(body, is_mask=True).astype(bool)
    truth = volume.array > -900
    assert back.shape == volume.shape_zyx
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert dice > 0.95


def test_sparse_peak_search_matches_the_dense_max_pool():
    from radlens.inference.postprocess import _heatmap_peaks

    logits = torch.randn((12, 20, 24), generator=torch.Generator().manual_seed(0))
    sparse = _heatmap_peaks(logits, 1.0)
    dense = _heatmap_peaks(logits, 1.0, dense_above=0)
    assert len(sparse) > 10
    assert sorted(map(tuple, sparse.tolist())) == sorted(map(tuple, dense.tolist()))
    z, y, x = sparse[0].tolist()
    assert logits[z, y, x] == logits[max(0, z - 1) : z + 2, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
