"""Validation: the epoch metric (mean Dice or FROC CPM) with inference's own sliding windows and
decoder, and a single-label segmenter's operating point chosen on the validation split."""

from __future__ import annotations

import math

import numpy as np

from radlens.training.cache import CachedCase, CaseCache
from radlens.training.plan import EPOCH_VALIDATION_OVERLAP, Plan

# A single-label segmenter's operating point is chosen on the validation split from these grids.
PROBABILITY_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
MIN_COMPONENT_DIAMETER_GRID_MM = (0.0, 3.0, 4.0, 5.0)  # equal-volume sphere diameters


def predict_volume(network, image: np.ndarray, plan: Plan, device: str, final: bool = True) -> np.ndarray:
    """The network over a whole cached volume with inference's own sliding windows: (C, Z, Y, X) numpy.

    ``final``: exactly as the bundle will run (the plan's overlap, blend and mirroring). Otherwise
    the cheap way epochs are compared (as nnU-Net does): no mirroring (2ⁿ times fewer passes) and at
    most :data:`EPOCH_VALIDATION_OVERLAP` (overlap 0.5 has about 3× the windows of 0.25).
    """
    from radlens.imaging.progress import run_to_end
    from radlens.inference.engine import sliding_windows

    windows = sliding_windows(
        network,
        image,
        plan.patch_zyx,
        device=device,
        mirror_axes=plan.mirror_axes if final else (),
        overlap=plan.overlap if final else min(plan.overlap, EPOCH_VALIDATION_OVERLAP),
        blend=plan.blend,
    )
    out, _ = run_to_end(windows)
    return out.numpy()


def validate(network, cache: CaseCache, plan: Plan, device: str, final: bool = True) -> tuple[float, dict]:
    """The validation metric (mean Dice or FROC CPM) on the validation split, and its details.

    ``final``: the bundle's own validation, windows run as the bundle runs them; otherwise an
    epoch's cheaper comparison (:func:`predict_volume`).
    """
    from radlens.training import metrics

    network.eval()
    if plan.task == "segment":
        dices = {}
        for cid in plan.validation_cases:
            c = cache.cases[cid]
            pred = predict_volume(network, c.image, plan, device, final).argmax(0)
            per = [metrics.dice(pred == i, c.label == i) for i in range(1, len(plan.labels) + 1)]
            dices[cid] = float(np.mean(per))
        network.train()
        return float(np.mean(list(dices.values()))), {"dice_per_case": dices}
    scans = []
    for cid in plan.validation_cases:
        c = cache.cases[cid]
        out = predict_volume(network, c.image, plan, device, final)
        scans.append(detection_scan(out, c))
    network.train()
    result = metrics.froc(scans)
    return result["cpm"], result


def choose_operating_point(network, cache: CaseCache, plan: Plan, device: str) -> tuple[dict, dict]:
    """A single-label segmenter's probability threshold and minimum component size, from validation.

    The threshold is the one with the best mean validation Dice; then the minimum component size
    (as a sphere diameter) with the best pooled per-lesion F1 at that threshold, so the specks a
    reader would have to step through go only when that does not cost real lesions. Ties keep the
    threshold nearest 0.5 and the smallest size. Returns (thresholds, the table behind the choice).
    """
    import torch

    from radlens.inference.postprocess import drop_small_components
    from radlens.training import metrics

    network.eval()
    fg, ref = {}, {}
    for cid in plan.validation_cases:
        c = cache.cases[cid]
        out = torch.as_tensor(predict_volume(network, c.image, plan, device)).float()
        fg[cid], ref[cid] = torch.softmax(out, dim=0)[1].numpy(), c.label == 1
    network.train()
    dice_at = {t: float(np.mean([metrics.dice(fg[c] >= t, ref[c]) for c in fg])) for t in PROBABILITY_GRID}
    threshold = max(PROBABILITY_GRID, key=lambda t: (round(dice_at[t], 4), -abs(t - 0.5)))
    voxel_mm3 = float(np.prod(plan.spacing_zyx))
    by_size = {}
    for d in MIN_COMPONENT_DIAMETER_GRID_MM:
        min_mm3 = math.pi / 6 * d**3
        masks = {c: drop_small_components(fg[c] >= threshold, min_mm3 / voxel_mm3) for c in fg}
        counts = [metrics.lesion_detection(masks[c], ref[c]) for c in fg]
        found, lesions = sum(k["lesions_found"] for k in counts), sum(k["lesions"] for k in counts)
        true, comps = sum(k["components_true"] for k in counts), sum(k["components"] for k in counts)
        sens = found / lesions if lesions else 1.0
        prec = true / comps if comps else 1.0
        by_size[d] = {
            "min_component_ml": round(min_mm3 / 1000, 5),
            "lesion_f1": 2 * sens * prec / (sens + prec) if sens + prec else 0.0,
            "lesion_sensitivity": sens,
            "lesion_precision": prec,
            "dice_mean": float(np.mean([metrics.dice(masks[c], ref[c]) for c in fg])),
        }
    size = max(MIN_COMPONENT_DIAMETER_GRID_MM, key=lambda d: (round(by_size[d]["lesion_f1"], 4), -d))
    thresholds = {"probability": threshold, "min_component_ml": by_size[size]["min_component_ml"]}
    table = {
        "dice_mean_by_probability": {f"{t:g}": v for t, v in dice_at.items()},
        "by_min_component_diameter_mm": {f"{d:g}": v for d, v in by_size.items()},
        "chosen": {**thresholds, "min_component_diameter_mm": size, **by_size[size]},
    }
    return thresholds, table


def model_grid_prepared(c: CachedCase):
    """A Prepared whose input grid is the model grid itself (origin 0, identity direction): decoded
    detections then come back in model voxels, and their ``center_lps`` in millimetres on that grid."""
    from radlens.imaging.volume import Volume
    from radlens.inference.preprocess import Prepared

    grid = Volume(c.image, spacing_zyx=c.spacing_zyx)
    return Prepared(c.image, grid, (0, 0, 0, *grid.shape_zyx), grid, grid)


def detection_scan(output: np.ndarray, c: CachedCase):
    """Decode a detector's output with inference's decoder into FROC candidates and references, in mm."""
    from radlens.inference.postprocess import decode_detections
    from radlens.training.metrics import Candidate, Nodule

    dets = decode_detections(output, model_grid_prepared(c), "validation", "nodule")
    spacing = np.asarray(c.spacing_zyx)
    candidates = [Candidate(tuple(d.center_lps), float(d.score)) for d in dets]
    nodules = [
        Nodule(tuple(ctr[::-1] * spacing[::-1]), float(np.mean(ext * spacing)))
        for ctr, ext in zip(c.centers_zyx, c.extents_zyx, strict=True)
    ]
    return candidates, nodules
