"""``radlens evaluate BUNDLE DATASET``: run a bundle exactly as ``radlens infer`` does and score it.

Each test case goes through :func:`radlens.inference.engine.run_bundle` (the same preprocessing, sliding
windows and decoding the viewer uses), and the findings are compared with the references on the
input grid: FROC (LUNA16 rule) for detectors, Dice/HD95/per-lesion metrics for segmenters, ROC AUC
with its interval, the figures at the threshold and calibration per study and per slice for
classifiers (:mod:`radlens.training.classify`). Writes
metrics.json and a PNG plot beside it; ``--record`` also stores the metrics in the bundle's
metadata (the weights and their sha256 are untouched).

Which cases: the dataset's own test set (imagesTs + labelsTs) when it has one; otherwise, when the
dataset is the one the bundle was trained on, its validation split; otherwise every case (a
separate held-out folder).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import atomic_path, write_json
from radlens.imaging.progress import Progress, check_cancel, run_to_end, run_with_progress
from radlens.inference.metadata import BundleMetadata
from radlens.training import metrics
from radlens.training.config import command_line
from radlens.training.datasets import Case, Dataset, load_image, load_label, nodules_from_instances, read_dataset
from radlens.training.errors import TrainingError

# The goals of the shipped bundles are stated for nodules of at least these sizes.
DETECTION_MIN_DIAMETER_MM = 4.0
SEGMENTATION_MIN_DIAMETER_MM = 6.0


def select_cases(ds: Dataset, meta: BundleMetadata) -> tuple[list[Case], str]:
    if ds.test_cases:
        return ds.test_cases, "the dataset's test set (imagesTs/labelsTs)"
    training = meta.training
    same = training.get("dataset") and Path(training["dataset"]).resolve() == ds.root.resolve()
    if same:
        val = set((training.get("split") or {}).get("validation") or [])
        if not val:
            raise TrainingError(f"{ds.root}: the bundle was trained on every case here; nothing is held out")
        return [c for c in ds.cases if c.case_id in val], "the bundle's validation split"
    return list(ds.cases), "every case (a folder the bundle did not train on)"


def _reference_label_map(case: Case, ds: Dataset, labels: list[str]) -> np.ndarray:
    """The case's label map with the bundle's label numbering (1..K in the bundle's label order)."""
    ref = np.asarray(load_label(case.label).array)
    if len(labels) == 1 and len(ds.labels) <= 1:
        return (ref > 0).astype(np.uint8)  # one label: an instance map counts as that label
    by_name = {name: value for value, name in ds.labels.items()}
    out = np.zeros(ref.shape, dtype=np.uint8)
    for i, name in enumerate(labels, start=1):
        if name in by_name:
            out[ref == by_name[name]] = i
    return out


def evaluate(
    bundle_path: str, dataset_path: str, device: str = "auto", cancel: threading.Event | None = None
) -> Generator[Progress, None, dict]:
    """Score a bundle on a dataset's held-out cases; returns the metrics document."""
    from radlens.inference.applicability import REFUSED
    from radlens.inference.bundle import load_bundle
    from radlens.inference.engine import run_bundle, select_device

    bundle = load_bundle(bundle_path)
    meta = bundle.metadata
    task = {"detection": "detect", "segmentation": "segment", "classification": "classify"}[meta.task]
    ds = read_dataset(dataset_path, task)
    cases, source = select_cases(ds, meta)
    dev, _ = select_device(device)
    labels = bundle.labels or ["lesion"]
    per_case: dict[str, dict] = {}
    refused: dict[str, str] = {}  # cases the bundle would not run on, and why (they score as found nothing)
    scans = []
    threshold = bundle.info.threshold
    for k, case in enumerate(cases):
        check_cancel(cancel, "evaluation")
        yield Progress(k, len(cases), f"{case.case_id}")
        volume = load_image(case.image)
        findings = run_to_end(run_bundle(volume, bundle, device=dev, cancel=cancel))
        if why := [w for w in findings.models[0].warnings if w.startswith(REFUSED)]:
            refused[case.case_id] = why[0]
        if task == "classify":
            found = findings.classifications[0] if findings.classifications else None
            per_case[case.case_id] = {
                "label": int(case.class_label == labels[0]),
                "probability": found.probability if found else None,
                "per_slice": [round(v, 4) for v in found.per_slice] if found else [],
                "slice_labels": case.slice_labels,
                "warnings": list(findings.models[0].warnings),
            }
        elif task == "detect":
            nodules = case.nodules if case.nodules is not None else nodules_from_instances(load_label(case.label))
            cands = [metrics.Candidate(tuple(d.center_lps), float(d.score)) for d in findings.detections]
            refs = [metrics.Nodule(tuple(n.center_lps), float(n.diameter_mm)) for n in nodules]
            scans.append((cands, refs))
            best, _ = metrics.match_scan(cands, refs)
            per_case[case.case_id] = {
                "nodules": len(refs),
                "candidates": len(cands),
                # What a reader sees at the threshold, boxes on one nodule included (LUNA16's rule forgives them).
                "boxes_at_threshold": sum(c.score >= threshold for c in cands) if threshold is not None else None,
                # Which nodules the detector found, and how surely: the misses are what to look at.
                "nodule_hits": [
                    {
                        "center_lps": [round(v, 2) for v in n.center_mm],
                        "diameter_mm": round(n.diameter_mm, 2),
                        "best_score": float(b) if np.isfinite(b) else None,
                    }
                    for n, b in zip(refs, best.tolist(), strict=True)
                ],
            }
        else:
            pred = np.zeros(volume.shape_zyx, dtype=np.uint8)
            for seg in findings.segmentations:
                pred[np.asarray(seg.mask, dtype=bool)] = seg.label_value
            ref = _reference_label_map(case, ds, labels)
            values = list(range(1, len(labels) + 1))
            m = metrics.segmentation_case_metrics(pred, ref, volume.spacing_zyx, values)
            for v in values:
                m[str(v)]["lesion_dice"] = metrics.lesion_dice(
                    pred == v, ref == v, volume.spacing_zyx, SEGMENTATION_MIN_DIAMETER_MM
                )
            per_case[case.case_id] = m
    yield Progress(len(cases), len(cases), "scoring")
    doc: dict = {
        "schema": "radlens.metrics/1",
        "bundle": {
            "name": bundle.name,
            "version": bundle.info.version,
            "sha256": bundle.sha256,
            "path": str(bundle_path),
        },
        "dataset": str(ds.root),
        "synthetic": ds.synthetic,
        "data_command": ds.data_command,
        "cases_from": source,
        "cases": len(cases),
        "device": dev,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command_line(),
        "task": meta.task,
        "refused": refused,
        "per_case": per_case,
    }
    if task == "classify":
        doc["summary"] = _classification_summary(per_case, bundle.info.threshold)
    elif task == "detect":
        doc["froc_all"] = metrics.froc(scans, threshold=threshold)
        doc["froc"] = metrics.froc(scans, threshold=threshold, min_diameter_mm=DETECTION_MIN_DIAMETER_MM)
        doc["summary"] = {
            "min_diameter_mm": DETECTION_MIN_DIAMETER_MM,
            "cpm": doc["froc"]["cpm"],
            "sensitivity_at_1_fp": doc["froc"]["sensitivity_at_fps"]["1.0"],
            "at_threshold": doc["froc"].get("at_threshold"),
        }
        if threshold is not None and per_case:
            boxes = [c["boxes_at_threshold"] for c in per_case.values()]
            doc["summary"]["boxes_per_scan_at_threshold"] = round(float(np.mean(boxes)), 2)
    else:
        values = list(range(1, len(labels) + 1))
        summary = metrics.summarize_segmentation(per_case, values)
        for v in values:
            key = str(v)
            lesion = [d["dice"] for c in per_case.values() for d in c[key]["lesion_dice"]]
            summary[key]["label"] = labels[v - 1]
            summary[key][f"lesion_dice_mean_ge_{SEGMENTATION_MIN_DIAMETER_MM:g}mm"] = (
                float(np.mean(lesion)) if lesion else None
            )
            summary[key][f"lesions_ge_{SEGMENTATION_MIN_DIAMETER_MM:g}mm"] = len(lesion)
        doc["summary"] = summary
    return doc


def _classification_summary(per_case: dict, threshold: float | None) -> dict:
    """Study and slice figures of a classifier (slices with a known label only); a study the bundle refused
    to run on is counted apart, not scored."""
    from radlens.training.classify import summarize

    scored = [c for c in per_case.values() if c["probability"] is not None]
    slices = [(np.asarray(c["per_slice"]), np.asarray(c["slice_labels"])) for c in scored if c["slice_labels"]]
    slices = [(p, y) for p, y in slices if len(p) == len(y)]
    out = summarize(
        np.asarray([c["probability"] for c in scored]),
        np.asarray([c["label"] for c in scored]),
        [p for p, _ in slices],
        [y for _, y in slices],
        0.5 if threshold is None else threshold,
    )
    out["not_run"] = len(per_case) - len(scored)
    return out


def plot(doc: dict, path: Path) -> Path:
    """FROC curve (detectors), Dice per case (segmenters) or ROC and reliability (classifiers) as a PNG."""
    if doc["task"] == "classification":
        from radlens.training.classify import plot as classification_plot

        source = " — synthetic" if doc["synthetic"] else ""
        title = f"{doc['bundle']['name']} on {Path(doc['dataset']).name} ({doc['cases']} studies){source}"
        return classification_plot(doc["summary"], title, path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    title = f"{doc['bundle']['name']} on {Path(doc['dataset']).name} ({doc['cases']} cases)"
    if doc["synthetic"]:
        title += " — synthetic"
    if "froc" in doc:
        f = doc["froc"]
        curve = f["curve"]
        # The curve holds the frontier only (the points where sensitivity rises): it stays flat after
        # its last point, out to the plot's edge.
        edge = 16.0
        fps = [p["fps_per_scan"] for p in curve] + ([edge] if curve else [])
        sens = [p["sensitivity"] for p in curve] + ([curve[-1]["sensitivity"]] if curve else [])
        ax.step(fps, sens, where="post")
        ax.set_xscale("log", base=2)
        ax.set_xlim(1 / 16, edge)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positives per scan")
        ax.set_ylabel(f"sensitivity (nodules ≥ {f['min_diameter_mm']:g} mm)")
        ax.set_title(f"{title}\nFROC, CPM {f['cpm']:.3f}", fontsize=9)
        for rate, s in f["sensitivity_at_fps"].items():
            ax.plot(float(rate), s, "o", color="C1", markersize=3)
    else:
        ids = sorted(doc["per_case"])
        for v in sorted(doc["summary"], key=int):
            ax.bar(
                np.arange(len(ids)) + 0.8 * (int(v) - 1) / len(doc["summary"]),
                [doc["per_case"][c][v]["dice"] for c in ids],
                width=0.8 / len(doc["summary"]),
                label=doc["summary"][v]["label"],
            )
        ax.set_xticks(np.arange(len(ids)), ids, rotation=60, fontsize=6)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("Dice")
        ax.legend(fontsize=7)
        ax.set_title(f"{title}\nDice per case", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def generator_of(command: str | None) -> str | None:
    """The phantom kind a ``radlens phantom`` command made (None for data from elsewhere)."""
    match = re.search(r"radlens phantom .*--kind (\S+)", command or "")
    return match.group(1) if match else None


def is_same_source(training: dict, dataset_root: str, data_command: str | None) -> bool:
    """Whether a dataset comes from what made the bundle's training data: the same folder, or the same
    phantom generator (any of its kinds). Only then is a figure in-generator; any other is cross-source."""
    from radlens.imaging.phantom import GENERATOR

    def made(command: str | None) -> str | None:
        kind = generator_of(command)
        return GENERATOR.get(kind, kind) if kind is not None else None

    members = training.get("ensemble_of") or [training]
    made_by = {made(m.get("data_command")) for m in members} | {made(training.get("data_command"))}
    same_folder = any(
        m.get("dataset") and Path(m["dataset"]).resolve() == Path(dataset_root).resolve() for m in members
    )
    return same_folder or (made(data_command) is not None and made(data_command) in made_by)


def record_in_bundle(bundle_path: str, doc: dict) -> str:
    """Put the metrics (without per-case detail) into the bundle's metadata.json, apart by source:
    ``evaluation.held_out`` for the generator that made the training data, ``evaluation.cross_source``
    (one entry per dataset, with its case count) for anything else. Returns which it was."""
    from radlens.inference.bundle import read_metadata, update_metadata

    same = is_same_source(read_metadata(bundle_path).training, doc["dataset"], doc["data_command"])
    figures = {k: v for k, v in doc.items() if k not in ("per_case", "bundle", "schema")}
    figures["source"] = "in-generator" if same else "cross-source"

    def record(meta: dict) -> None:
        evaluation = meta.setdefault("evaluation", {})
        if same:
            evaluation["held_out"] = figures
            if doc["task"] == "detection" and "at_threshold" in doc["froc"]:
                evaluation["held_out_at_threshold"] = doc["froc"]["at_threshold"]
        else:
            name = generator_of(doc["data_command"]) or Path(doc["dataset"]).name
            evaluation.setdefault("cross_source", {})[name] = figures

    update_metadata(bundle_path, record)
    return figures["source"]


def evaluate_command(args: argparse.Namespace) -> int:
    doc = run_with_progress(evaluate(args.bundle, args.dataset, args.device), "evaluating")
    out = Path(args.out or "metrics.json")
    write_json(out, doc)
    png = plot(doc, out.with_suffix(".png"))
    if args.record:
        source = record_in_bundle(args.bundle, doc)
        print(f"recorded in {args.bundle} as a {source} figure ({doc['cases']} cases)", file=sys.stderr)
    print(json.dumps(doc["summary"], indent=1))
    if doc["refused"]:
        first = next(iter(doc["refused"].values()))
        print(f"the bundle refused {len(doc['refused'])} of {doc['cases']} cases ({first})", file=sys.stderr)
    print(f"metrics: {out}; plot: {png}", file=sys.stderr)
    return 0
