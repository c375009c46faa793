"""Metrics for segmentation and detection, with the edge cases decided once and written down.

Segmentation: Dice per label (both empty → 1.0, exactly one empty → 0.0), HD95 in millimetres
(both empty → 0.0, exactly one empty → None: there is no surface to measure to), per-lesion
sensitivity/precision/F1 on connected components (a lesion counts as found when a predicted
component overlaps it by at least one voxel), and volume error.

Detection: FROC with the LUNA16 hit rule — a candidate whose centre lies within the radius of a
nodule's centre hits it; several hits on one nodule count once (its best score) and are never
false positives; a candidate that hits no nodule is a false positive.

Classification: ROC AUC (the Mann–Whitney statistic, ties counted half) with a percentile bootstrap
confidence interval over cases, the confusion counts and their rates at a threshold, and a
reliability table (predicted probability against the observed rate, in equal-width bins) with its
expected calibration error. An AUC needs both classes: with one, it is None.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.inference.postprocess import label_components

FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


# -- segmentation ---------------------------------------------------------------------------------


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two binary masks; both empty → 1.0 (nothing to find, nothing found), one empty → 0.0."""
    p = np.asarray(pred, dtype=bool)
    r = np.asarray(ref, dtype=bool)
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
    return {int(v): dice(pred == v, ref == v) for v in labels}


def hd95(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float]) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance between mask surfaces, in mm: MONAI's
    ``compute_hausdorff_distance(percentile=95)``, the larger of the two directions' 95th percentile
    of distances from one surface's voxels to the other surface (which crops to the masks first)."""
    from monai.metrics import compute_hausdorff_distance

    p = np.asarray(pred, dtype=bool)
    r = np.asarray(ref, dtype=bool)
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return None
    with warnings.catch_warnings():  # MONAI 1.6 trips its own deprecation of an argument it passes itself
        warnings.filterwarnings("ignore", "monai.metrics.utils get_mask_edges:always_return_as_numpy", FutureWarning)
        spacing = [float(s) for s in spacing_zyx]
        distance = compute_hausdorff_distance(p[None, None], r[None, None], include_background=True, percentile=95,
                                              spacing=spacing)  # fmt: skip
    return float(distance)


def lesion_detection(pred: np.ndarray, ref: np.ndarray) -> dict[str, float | int]:
    """Per-lesion counts on connected components (inference's :func:`label_components`, so a lesion is
    one lesion here as in the findings): found lesions, true/false predicted components."""
    ref_cc, n_ref = label_components(np.asarray(ref, dtype=bool))
    pred_cc, n_pred = label_components(np.asarray(pred, dtype=bool))
    overlap = (ref_cc > 0) & (pred_cc > 0)
    found = len(np.unique(ref_cc[overlap]))
    true_pred = len(np.unique(pred_cc[overlap]))
    sens = found / n_ref if n_ref else 1.0
    prec = true_pred / n_pred if n_pred else (1.0 if n_ref == 0 else 0.0)
    f1 = 2 * sens * prec / (sens + prec) if sens + prec else 0.0
    return {
        "lesions": n_ref,
        "lesions_found": found,
        "components": n_pred,
        "components_true": true_pred,
        "sensitivity": sens,
        "precision": prec,
        "f1": f1,
    }


def lesion_dice(
    pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float], min_diameter_mm: float = 0.0
) -> list[dict]:
    """Dice of each reference lesion (connected component) against the predicted components touching it.

    Lesions smaller than ``min_diameter_mm`` (diameter of the sphere of equal volume) are left out, so
    a goal such as "Dice ≥ 0.85 for nodules ≥ 6 mm" can be measured per lesion.
    """
    ref_cc, _ = label_components(np.asarray(ref, dtype=bool))
    pred_cc, _ = label_components(np.asarray(pred, dtype=bool))
    voxel = float(np.prod(spacing_zyx))
    out = []
    for i, sl in enumerate(ndimage.find_objects(ref_cc), start=1):
        r = ref_cc == i
        diameter = float((6.0 * r.sum() * voxel / np.pi) ** (1.0 / 3.0))
        if diameter < min_diameter_mm:
            continue
        touching = np.unique(pred_cc[r & (pred_cc > 0)])
        p = np.isin(pred_cc, touching) if touching.size else np.zeros_like(r)
        out.append({"center_zyx": [float((s.start + s.stop - 1) / 2) for s in sl], "diameter_mm": diameter,
                    "dice": dice(p, r)})  # fmt: skip
    return out


def volume_error(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float]) -> dict[str, float | None]:
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    vp = float(np.count_nonzero(pred)) * voxel_ml
    vr = float(np.count_nonzero(ref)) * voxel_ml
    return {
        "pred_ml": vp,
        "ref_ml": vr,
        "abs_error_ml": abs(vp - vr),
        "rel_error": (vp - vr) / vr if vr > 0 else None,
    }


def segmentation_case_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float], labels: Sequence[int]
) -> dict:
    """All segmentation metrics of one case, per foreground label value."""
    out = {}
    for v in labels:
        p, r = pred == v, ref == v
        out[str(int(v))] = {
            "dice": dice(p, r),
            "hd95_mm": hd95(p, r, spacing_zyx),
            "lesions": lesion_detection(p, r),
            "volume": volume_error(p, r, spacing_zyx),
        }
    return out


def summarize_segmentation(cases: dict[str, dict], labels: Sequence[int]) -> dict:
    """Mean Dice / HD95 (over cases where it is defined), pooled per-lesion counts, mean |volume error|."""
    summary = {}
    for v in labels:
        key = str(int(v))
        per = [c[key] for c in cases.values()]
        hds = [m["hd95_mm"] for m in per if m["hd95_mm"] is not None]
        n_ref = sum(m["lesions"]["lesions"] for m in per)
        found = sum(m["lesions"]["lesions_found"] for m in per)
        n_pred = sum(m["lesions"]["components"] for m in per)
        true_pred = sum(m["lesions"]["components_true"] for m in per)
        sens = found / n_ref if n_ref else 1.0
        prec = true_pred / n_pred if n_pred else (1.0 if n_ref == 0 else 0.0)
        summary[key] = {
            "dice_mean": float(np.mean([m["dice"] for m in per])) if per else None,
            "dice_median": float(np.median([m["dice"] for m in per])) if per else None,
            "hd95_mm_mean": float(np.mean(hds)) if hds else None,
            "hd95_undefined_cases": sum(m["hd95_mm"] is None for m in per),
            "lesion_sensitivity": sens,
            "lesion_precision": prec,
            "lesion_f1": 2 * sens * prec / (sens + prec) if sens + prec else 0.0,
            "volume_abs_error_ml_mean": float(np.mean([m["volume"]["abs_error_ml"] for m in per])) if per else None,
        }
    return summary


# -- detection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nodule:
    center_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass(frozen=True)
class Candidate:
    center_mm: tuple[float, float, float]
    score: float


def match_scan(
    candidates: Sequence[Candidate], nodules: Sequence[Nodule], min_diameter_mm: float = 0.0
) -> tuple[np.ndarray, list[float]]:
    """LUNA16 rule for one scan → (best hit score per counted nodule, −inf if missed; false-positive scores).

    Nodules smaller than ``min_diameter_mm`` are left out as LUNA16 leaves out its excluded findings:
    a candidate on one is neither a hit nor a false positive.
    """
    counted = np.asarray([n.diameter_mm >= min_diameter_mm for n in nodules], dtype=bool)
    best = np.full(len(nodules), -np.inf)
    fps: list[float] = []
    if nodules:
        centres = np.asarray([n.center_mm for n in nodules], dtype=float)
        radii = np.asarray([n.diameter_mm / 2 for n in nodules], dtype=float)
    for c in candidates:
        if nodules:
            d = np.linalg.norm(centres - np.asarray(c.center_mm, dtype=float), axis=1)
            hits = d <= radii
        else:
            hits = np.zeros(0, dtype=bool)
        if hits.any():
            best[hits] = np.maximum(best[hits], c.score)
        else:
            fps.append(float(c.score))
    return best[counted], fps


def froc(
    scans: Sequence[tuple[Sequence[Candidate], Sequence[Nodule]]],
    threshold: float | None = None,
    min_diameter_mm: float = 0.0,
) -> dict:
    """FROC over scans: the curve (its frontier), sensitivity at 1/8…8 FPs/scan, CPM, the operating point.

    Sensitivity at a rate is the best sensitivity reached with at most that many FPs per scan (a
    step function, no interpolation beyond measured points), so the figure is never optimistic.
    """
    n_scans = len(scans)
    hit_scores: list[float] = []
    fp_scores: list[float] = []
    for candidates, nodules in scans:
        best, fps = match_scan(candidates, nodules, min_diameter_mm)
        hit_scores.extend(best.tolist())
        fp_scores.extend(fps)
    n_nodules = len(hit_scores)
    hits = np.sort(np.asarray(hit_scores, dtype=float))
    fps = np.sort(np.asarray(fp_scores, dtype=float))
    thresholds = np.unique(np.concatenate([hits[np.isfinite(hits)], fps]))[::-1]

    def at(t: float) -> tuple[float, float]:
        tp = int(np.count_nonzero(hits >= t))
        fp = int(np.count_nonzero(fps >= t))
        return (tp / n_nodules if n_nodules else 1.0), (fp / n_scans if n_scans else 0.0)

    # Keep the points where sensitivity rises (each at its fewest FPs): the rest are dominated and
    # change none of the figures below, and a detector's curve stays small enough for its metadata.
    curve = []
    for t in thresholds:
        s, f = at(t)
        if not curve or s > curve[-1][1]:
            curve.append((float(t), s, f))
    sens_at = {}
    for rate in FROC_FP_RATES:
        ok = [s for _, s, f in curve if f <= rate]
        sens_at[str(rate)] = max(ok) if ok else 0.0
    result = {
        "min_diameter_mm": float(min_diameter_mm),
        "scans": n_scans,
        "nodules": n_nodules,
        "curve": [{"threshold": t, "sensitivity": s, "fps_per_scan": f} for t, s, f in curve],
        "sensitivity_at_fps": sens_at,
        "cpm": float(np.mean(list(sens_at.values()))),
    }
    if threshold is not None:
        sens, fpr = at(threshold)
        tp = int(np.count_nonzero(hits >= threshold))
        fp = int(np.count_nonzero(fps >= threshold))
        precision = tp / (tp + fp) if tp + fp else (1.0 if n_nodules == 0 else 0.0)
        result["at_threshold"] = {
            "threshold": float(threshold),
            "sensitivity": sens,
            "recall": sens,
            "fps_per_scan": fpr,
            "precision": precision,
            "f1": 2 * sens * precision / (sens + precision) if sens + precision else 0.0,
        }
    return result


# -- classification -------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC as the Mann–Whitney U over its maximum (ties half); None without both classes."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: Sequence[float], labels: Sequence[int], max_points: int = 60) -> list[dict]:
    """The ROC (threshold, sensitivity, specificity), highest threshold first; at most ``max_points``
    thresholds, spread over the scores' quantiles (thousands of slices stay a small table)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    thresholds = np.unique(s)
    if len(thresholds) > max_points:
        thresholds = np.unique(np.quantile(thresholds, np.linspace(0, 1, max_points), method="nearest"))
    out = []
    for t in thresholds[::-1]:
        r = binary_at(s, y, float(t))
        out.append({"threshold": float(t), "sensitivity": r["sensitivity"], "specificity": r["specificity"]})
    return out


def bootstrap_auc_ci(
    scores: Sequence[float], labels: Sequence[int], n: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of the AUC (cases resampled with replacement; resamples that lose
    a class are drawn again). None without both classes."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if roc_auc(s, y) is None:
        return None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    while len(values) < n:
        idx = rng.integers(0, len(s), len(s))
        auc = roc_auc(s[idx], y[idx])
        if auc is not None:
            values.append(auc)
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def binary_at(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict:
    """Confusion counts and rates with ``score >= threshold`` called positive; a rate with no denominator is None."""
    s = np.asarray(scores, dtype=float) >= threshold
    y = np.asarray(labels, dtype=bool)
    tp, fp = int(np.sum(s & y)), int(np.sum(s & ~y))
    fn, tn = int(np.sum(~s & y)), int(np.sum(~s & ~y))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    sens, prec = ratio(tp, tp + fn), ratio(tp, tp + fp)
    f1 = 2 * sens * prec / (sens + prec) if sens is not None and prec is not None and sens + prec else None
    return {
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "accuracy": ratio(tp + tn, len(y)),
        "sensitivity": sens, "recall": sens,
        "specificity": ratio(tn, tn + fp),
        "precision": prec,
        "f1": f1,
    }  # fmt: skip


def youden_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The threshold that maximises sensitivity + specificity (Youden's J); 0.5 without both classes."""
    best, chosen = -1.0, 0.5
    for point in roc_curve(scores, labels):
        if point["sensitivity"] is None or point["specificity"] is None:
            return 0.5
        j = point["sensitivity"] + point["specificity"]
        if j > best:
            best, chosen = j, point["threshold"]
    return float(chosen)


def reliability(scores: Sequence[float], labels: Sequence[int], bins: int = 10) -> dict:
    """The reliability diagram's table (per equal-width bin: count, mean predicted, observed rate) and
    the expected calibration error (the bins' gaps weighted by their counts)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    which = np.minimum((s * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        k = int(inside.sum())
        if not k:
            continue
        predicted, observed = float(s[inside].mean()), float(y[inside].mean())
        ece += k / len(s) * abs(predicted - observed)
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": k,
                      "predicted": predicted, "observed": observed})  # fmt: skip
    return {"bins": table, "ece": float(ece)}


def classification_summary(scores: Sequence[float], labels: Sequence[int], threshold: float, seed: int = 0) -> dict:
    """What a bundle's evaluation records for one level (studies or slices): counts, AUC with its 95 %
    interval, the figures at ``threshold``, the reliability table and the ROC's corners."""
    y = np.asarray(labels, dtype=int)
    ci = bootstrap_auc_ci(scores, y, seed=seed)
    return {
        "cases": len(y),
        "positive": int(y.sum()),
        "negative": int(len(y) - y.sum()),
        "auc": roc_auc(scores, y),
        "auc_ci95": list(ci) if ci is not None else None,
        "at_threshold": binary_at(scores, y, threshold),
        "reliability": reliability(scores, y),
        "roc": roc_curve(scores, y),
    }
