"""A detector's operating point read off a FROC curve (:func:`radlens.training.metrics.froc`'s result)."""

from __future__ import annotations


def froc_at_threshold(froc_result: dict, threshold: float) -> dict:
    """The operating point of a FROC curve at ``threshold`` (its sensitivity and FPs per scan)."""
    points = [p for p in froc_result["curve"] if p["threshold"] >= threshold]
    if not points:
        return {"threshold": threshold, "sensitivity": 0.0, "fps_per_scan": 0.0}
    p = min(points, key=lambda q: q["threshold"])
    return {"threshold": threshold, "sensitivity": p["sensitivity"], "fps_per_scan": p["fps_per_scan"]}


def suggest_threshold(froc_result: dict, fps_per_scan: float = 1.0) -> float:
    """The lowest score threshold whose false positives per scan stay within ``fps_per_scan``."""
    ok = [p["threshold"] for p in froc_result["curve"] if p["fps_per_scan"] <= fps_per_scan]
    return round(float(min(ok)), 4) if ok else 0.5
