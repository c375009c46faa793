"""The first stage of the two-stage detector: blobs of every size and density in the lung, by shape."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.inference import candidates  # noqa: E402
from radlens.inference.candidates import PATCH, find_candidates, merge_across_scales, patches  # noqa: E402

AIR, LUNG = 0.0, 0.11  # the detector's window: (HU + 1000) / 1400, lung parenchyma about -850 HU


def hu(value: float) -> float:
    return (value + 1000.0) / 1400.0


def lung_block(shape=(96, 96, 96)) -> np.ndarray:
    """A SYNTHETIC block of aerated lung (normalised), with noise."""
    rng = np.random.default_rng(0)
    return (np.full(shape, LUNG, dtype=np.float32) + rng.normal(0, 0.004, shape)).astype(np.float32)


def add_ball(img, centre, diameter_mm, value):
    z, y, x = np.indices(img.shape, dtype=np.float32)
    d = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    # Partial volume at the edge, as a scanner sees it.
    frac = np.clip(diameter_mm / 2 + 0.5 - d, 0, 1)
    img[:] = img * (1 - frac) + value * frac


def hit(cands, centre, diameter_mm) -> int:
    """Rank of the first candidate within the nodule's radius (LUNA16's rule), or -1."""
    d = np.linalg.norm(cands.centers_zyx - np.asarray(centre), axis=1)
    where = np.flatnonzero(d <= max(diameter_mm / 2, 1.0))
    return int(where[0]) if len(where) else -1


@pytest.mark.parametrize(
    ("diameter", "value_hu"),
    [(3.0, 40.0), (5.0, -550.0), (12.0, 40.0), (20.0, -600.0), (45.0, 30.0)],
)
def test_nodules_of_every_size_and_density_are_candidates(diameter, value_hu):
    img = lung_block((112, 112, 112))
    centre = (56.0, 56.0, 56.0)
    add_ball(img, centre, diameter, hu(value_hu))
    cands = find_candidates(img)
    assert hit(cands, centre, diameter) == 0  # the strongest candidate


def test_a_ball_ranks_above_a_vessel_of_its_calibre():
    img = lung_block()
    img[:, 30:34, 28:32] = hu(40.0)  # a 4 mm vessel running through the block along z
    add_ball(img, (48.0, 64.0, 64.0), 5.0, hu(40.0))
    cands = find_candidates(img)
    assert hit(cands, (48.0, 64.0, 64.0), 5.0) == 0
    on_vessel = np.abs(cands.centers_zyx[:, 2] - 29.5) < 3
    assert on_vessel.any() and cands.blobness[on_vessel].max() < cands.blobness[0]


def test_faint_ground_glass_ranks_above_the_junctions_of_solid_vessels():
    """Ground glass has a third of a solid vessel's density over the lung: by shape it must still come
    first, or the candidate limit drops it on a chest with a thousand vessel junctions."""
    img = lung_block()
    for y in (20, 40, 60, 80):  # a grid of 3 mm solid vessels, crossing in junctions
        img[:, y : y + 3, 14:17] = hu(40.0)
        img[:, y : y + 3, 76:79] = hu(40.0)
        img[30:33, y : y + 3, :] = hu(40.0)
    add_ball(img, (66.0, 48.0, 48.0), 6.0, hu(-600.0))
    cands = find_candidates(img)
    assert hit(cands, (66.0, 48.0, 48.0), 6.0) == 0


def test_the_lung_gate_keeps_only_what_it_is_asked_to():
    img = lung_block()
    add_ball(img, (48.0, 30.0, 30.0), 8.0, hu(40.0))
    add_ball(img, (48.0, 70.0, 70.0), 8.0, hu(40.0))
    cands = find_candidates(img, lambda c, d: c[:, 2] < 50)
    assert hit(cands, (48.0, 30.0, 30.0), 8.0) >= 0
    assert hit(cands, (48.0, 70.0, 70.0), 8.0) == -1


def test_a_blob_inside_solid_tissue_far_from_air_is_not_a_candidate():
    img = np.full((96, 96, 96), hu(40.0), dtype=np.float32)
    add_ball(img, (48.0, 48.0, 48.0), 8.0, hu(300.0))  # bright, but deep in soft tissue: not a lung nodule
    assert hit(find_candidates(img), (48.0, 48.0, 48.0), 8.0) == -1


def test_one_object_seen_at_several_scales_is_one_candidate():
    img = lung_block()
    add_ball(img, (48.0, 48.0, 48.0), 14.0, hu(40.0))
    cands = merge_across_scales(find_candidates(img))
    near = np.linalg.norm(cands.centers_zyx - 48.0, axis=1) < 3.0
    assert near.sum() == 1


@pytest.mark.parametrize("value_hu", [40.0, -600.0])  # solid, and ground glass traced at its own level
def test_boxes_on_the_rim_of_a_large_nodule_are_that_nodule_and_its_neighbours_stay_apart(value_hu):
    img = lung_block()
    add_ball(img, (48.0, 40.0, 40.0), 22.0, hu(value_hu))
    add_ball(img, (48.0, 40.0, 68.0), 5.0, hu(40.0))  # a small nodule 28 mm away, 11 mm clear of it
    img[:, 70:73, 20:23] = hu(40.0)  # a vessel
    centres = np.array([
        [48.0, 40.0, 42.0],  # the strongest box, off the centre (a 13 mm scale)
        [48.0, 31.0, 40.0], [41.0, 40.0, 34.0], [55.0, 46.0, 44.0],  # rim boxes, 8-10 mm out
        [48.0, 40.0, 68.0],  # the small nodule
        [44.0, 71.0, 21.0], [54.0, 71.0, 21.0],  # two boxes on one vessel, 10 mm apart: weaker than the nodules
    ])  # fmt: skip
    diameters = np.array([13.0, 5.0, 5.0, 7.0, 5.0, 3.0, 3.0])
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.5, 0.4])
    kept, sizes = candidates.one_per_object(img, centres, diameters, scores)
    assert kept[:2].tolist() == [0, 4]
    assert set(kept.tolist()) == {0, 4, 5}  # one box on the vessel: its own object too
    # The nodule's box takes its object's size; the vessel's object runs out of the box, so its box stays.
    assert sizes[0] == pytest.approx(22.0, abs=2.5) and sizes[1] == pytest.approx(5.0, abs=1.5)
    assert sizes[kept.tolist().index(5)] == 3.0


def test_views_are_centred_on_the_candidate_at_two_scales():
    img = np.zeros((80, 80, 80), dtype=np.float32)
    img[40, 41, 42] = 1.0
    views = patches(img, np.array([[40.0, 41.0, 42.0], [0.0, 0.0, 0.0]]))
    assert views.shape == (2, 2, PATCH, PATCH, PATCH)
    assert np.unravel_index(np.argmax(views[0, 0]), views[0, 0].shape) == (PATCH // 2,) * 3
    peak = np.unravel_index(np.argmax(views[0, 1]), views[0, 1].shape)
    assert all(abs(p - PATCH // 2) <= 1 for p in peak)
    assert views[1, 0, : PATCH // 2].max() == 0  # outside the image: its minimum


def test_views_cut_batch_by_batch_classify_exactly_as_all_at_once():
    import torch

    from radlens.imaging.progress import run_to_end
    from radlens.inference.candidates import CandidateViews, classify

    rng = np.random.default_rng(0)
    img = rng.normal(size=(50, 60, 70)).astype(np.float32)
    centres = rng.uniform(0, 50, size=(11, 3))
    lazy = CandidateViews(img, centres)
    assert len(lazy) == 11
    assert np.array_equal(np.concatenate([lazy[0:4], lazy[4:8], lazy[8:11]]), patches(img, centres))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 2, 3), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    in_batches = run_to_end(classify(net, lazy, batch=4))
    at_once = run_to_end(classify(net, patches(img, centres), batch=11))
    assert in_batches.shape == (11,) and np.allclose(in_batches, at_once, atol=1e-6)
    assert len(np.unique(in_batches)) == 11  # each candidate its own score, in its own place


def test_a_mirrored_classifier_scores_a_candidate_alike_whichever_way_up_it_lies():
    """With every axis mirrored, a candidate's score does not depend on which way it faces; an untrained
    classifier on its own does. Mirroring one axis averages the logits of the two passes."""
    from radlens.imaging.progress import run_to_end
    from radlens.inference.candidates import classify

    rng = np.random.default_rng(3)
    views = rng.normal(size=(6, 2, PATCH, PATCH, PATCH)).astype(np.float32)
    turned = np.ascontiguousarray(views[:, :, ::-1, :, ::-1])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(2, 2, 3), torch.nn.AdaptiveMaxPool3d(2), torch.nn.Flatten(), torch.nn.Linear(16, 1)
    )
    plain, plain_turned = run_to_end(classify(net, views)), run_to_end(classify(net, turned))
    assert not np.allclose(plain, plain_turned, atol=1e-4)
    every = (0, 1, 2)
    np.testing.assert_allclose(
        run_to_end(classify(net, views, mirror_axes=every)),
        run_to_end(classify(net, turned, mirror_axes=every)),
        atol=1e-5,
    )
    with torch.inference_mode():
        x = torch.from_numpy(views)
        logits = (net(x) + net(x.flip(4)))[:, 0] / 2
    np.testing.assert_allclose(run_to_end(classify(net, views, mirror_axes=(2,))), torch.sigmoid(logits), atol=1e-6)


def test_a_two_stage_bundle_runs_in_the_engine_and_its_boxes_lie_in_the_lungs(tmp_path):
    from inference_helpers import sphere_ct, two_stage_bundle

    from radlens.imaging.progress import run_to_end
    from radlens.inference.engine import run_bundle
    from radlens.inference.lungs import find_lungs

    bundle = two_stage_bundle(tmp_path / "b")
    volume = sphere_ct(((30, 60, 50),), radius_mm=4.0, shape_zyx=(60, 120, 120), spacing_zyx=(1.5, 1.2, 1.2))
    findings = run_to_end(run_bundle(volume, bundle))
    assert findings.models[0].name == "two-stage" and findings.detections
    lungs = find_lungs(volume)
    dets = findings.detections
    assert lungs.touches([d.center_lps for d in dets], [d.diameter_mm for d in dets]).all()
    nodule = np.asarray(volume.index_to_lps((30, 60, 50)))
    assert min(np.linalg.norm(np.asarray(d.center_lps) - nodule) for d in findings.detections) <= 4.0


def test_a_step_note_shows_only_while_its_step_runs(tmp_path):
    """ "finding candidates" is the first stage's note: the classifier's windows after it, and the next
    model's, do not carry it on."""
    from inference_helpers import sphere_ct, two_stage_bundle

    from radlens.imaging.progress import run_showing
    from radlens.inference.engine import iter_infer

    bundles = [two_stage_bundle(tmp_path / "b", seed=0), two_stage_bundle(tmp_path / "c", seed=1)]  # two weights
    volume = sphere_ct(((30, 60, 50),), radius_mm=4.0, shape_zyx=(60, 120, 120), spacing_zyx=(1.5, 1.2, 1.2))
    messages = []
    run_showing(iter_infer(volume, bundles, device="cpu"), lambda p: messages.append(p.message))
    windows = [m for m in messages if ": window " in m]
    assert sum("finding candidates" in m for m in windows) == 2  # once per model, while it runs
    assert all("finding candidates" not in m for m in windows if ": window 0/" not in m)


def test_the_shape_scoring_lets_a_weak_blob_rank_below_a_strong_one_the_classifier_likes_as_much():
    probabilities = np.array([0.9, 0.9, 0.2], dtype=np.float32)
    shape = np.array([0.05, candidates.SHAPE_FULL * 2, candidates.SHAPE_FULL], dtype=np.float32)
    assert np.array_equal(candidates.final_scores("classifier", probabilities, shape), probabilities)
    fused = candidates.final_scores("classifier×shape", probabilities, shape)
    assert fused[1] == pytest.approx(0.9) and fused[2] == pytest.approx(0.2)  # a full-strength blob keeps p
    assert fused[0] == pytest.approx(0.09) and fused[0] < fused[2] < fused[1]


def test_a_bundle_with_an_unknown_scoring_is_refused(tmp_path):
    from inference_helpers import metadata

    from radlens.inference.errors import BundleError
    from radlens.inference.metadata import BundleMetadata

    meta = metadata("two-stage", "detection", "nodule-classifier3d", {}, pipeline="candidates", scoring="vote")
    with pytest.raises(BundleError, match="scoring 'vote' is not one of"):
        BundleMetadata.from_json(meta, "b/metadata.json")
