"""``radlens ensemble MEMBER MEMBER... --out BUNDLE [--calibrate DATASET]``: one bundle averaging several.

Why: a small detector trained twice with different seeds (another validation split, another
initialisation) can differ by more than most recipe changes do; averaging the members' outputs
removes part of that spread, as nnU-Net does with its five folds. The members must share a recipe
(task, labels, architecture, spacing, patch, windows); they may differ in their CT window, which
each measured on its own split (see :class:`radlens.inference.networks.Ensemble`).

An average of scores is on no single member's scale, so a detector ensemble's score threshold is
chosen again with ``--calibrate DATASET``: the lowest threshold with at most one false positive
per scan on that dataset's held-out cases (use a folder none of the members trained on). Without
it the threshold is the mean of the members' thresholds, and the command says so.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from radlens.imaging.progress import run_with_progress
from radlens.inference.bundle import LoadedBundle, bundle_info, find_bundle, load_bundle, save_bundle, update_metadata
from radlens.inference.metadata import InputSpec
from radlens.training.config import command_line
from radlens.training.errors import TrainingError
from radlens.training.froc import froc_at_threshold, suggest_threshold

# What every member's input must agree on: all of it but the CT window.
SHARED_INPUT = tuple(f for f in InputSpec.__dataclass_fields__ if f != "normalization")
# What the members must agree on and the ensemble keeps as it is: how the network's output is used
# (a two-stage detector's candidates and scoring rule) and what the model is for.
CARRIED = ("pipeline", "scoring", "applicability")


def ensemble_normalization(members: list[LoadedBundle]) -> dict:
    """The bundle's normalisation: the members' own if they agree; for CT windows, the first member's
    widened to hold every member's window (so each member's input can be recovered exactly)."""
    norms = [m.input.normalization.to_json() for m in members]
    if all(n == norms[0] for n in norms):
        return norms[0]
    if any(n["kind"] != "ct-clip" for n in norms):
        raise TrainingError("the members normalise their input differently and not all by a CT window")
    return {**norms[0], "clip": [min(n["clip"][0] for n in norms), max(n["clip"][1] for n in norms)]}


def mismatches(members: list[LoadedBundle]) -> list[str]:
    """Every way the members differ where an ensemble needs them equal (empty: they fit together)."""
    first = members[0]
    fields = {
        "task": lambda m: m.metadata.task,
        "labels": lambda m: m.labels,
        "arch": lambda m: m.metadata.arch,
        "arch_kwargs": lambda m: m.metadata.arch_kwargs,
        **{k: (lambda m, k=k: m.metadata.document.get(k)) for k in CARRIED},
        **{f"input.{k}": (lambda m, k=k: m.input.to_json()[k]) for k in SHARED_INPUT},
    }
    problems = [
        f"{name} {get(m)!r} in {m.info.path} differs from {get(first)!r} in {first.info.path}"
        for name, get in fields.items()
        for m in members[1:]
        if get(m) != get(first)
    ]
    if first.metadata.arch == "ensemble":
        problems.append(f"{first.info.path} is already an ensemble")
    return problems


def _member_record(m: LoadedBundle) -> dict:
    t = m.metadata.training
    keep = ("dataset", "synthetic", "data_command", "command", "seed", "split")
    return {"bundle": str(m.info.path), "name": m.name, "sha256": m.sha256, **{k: t.get(k) for k in keep}}


def ensemble_metadata(members: list[LoadedBundle], name: str) -> dict:
    """metadata.json of the ensemble: the shared recipe, the members' training records, and a split
    whose validation cases are those no member trained on (what ``radlens evaluate`` then scores)."""
    first = members[0].metadata
    task = first.task
    normalization = ensemble_normalization(members)
    records = [_member_record(m) for m in members]
    datasets = {r["dataset"] for r in records}
    trained = set().union(*[set((r["split"] or {}).get("train") or []) for r in records])
    unseen = set.intersection(*[set((r["split"] or {}).get("validation") or []) for r in records])
    key = "score" if task == "detection" else "probability"
    thresholds = {key: round(sum(m.info.threshold or 0.5 for m in members) / len(members), 4)}
    if task == "segmentation":
        thresholds["min_component_ml"] = round(sum(m.info.min_component_ml for m in members) / len(members), 4)
    return {
        "name": name,
        "version": "1.0.0",
        "task": task,
        "description": f"mean of {len(members)} members: {first.description}",
        "labels": list(first.labels),
        **{k: first.document[k] for k in CARRIED if k in first.document},
        "arch": "ensemble",
        "arch_kwargs": {
            "member_arch": first.arch,
            "member_arch_kwargs": first.arch_kwargs,
            "members": len(members),
            "normalization": normalization,
            "member_normalizations": [m.input.normalization.to_json() for m in members],
        },
        "input": {**first.input.to_json(), "normalization": normalization},
        "thresholds": thresholds,
        "training": {
            "dataset": datasets.pop() if len(datasets) == 1 else None,
            "synthetic": any(r["synthetic"] for r in records),
            "data_command": records[0]["data_command"],
            "command": command_line(),
            "seed": [r["seed"] for r in records],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "split": {"train": sorted(trained), "validation": sorted(unseen)},
            "ensemble_of": records,
        },
        "evaluation": {},
    }


def build_ensemble(member_paths: list[str], out: str | Path) -> Path:
    """Write the ensemble bundle of ``member_paths`` to ``out``; refuses members that do not fit together."""
    from radlens.inference.networks import build_network

    if len(member_paths) < 2:
        raise TrainingError("an ensemble needs at least two member bundles")
    members = [load_bundle(p) for p in member_paths]
    if any(m.metadata.task == "classification" for m in members):
        raise TrainingError("study-level classifiers are not averaged (their network gives two outputs); "
                            "train one with more steps instead")  # fmt: skip
    problems = mismatches(members)
    if problems:
        raise TrainingError(f"these bundles cannot be averaged: {'; '.join(problems)}")
    meta = ensemble_metadata(members, Path(out).resolve().name)
    network = build_network("ensemble", **meta["arch_kwargs"])
    for slot, member in zip(network.members, members, strict=True):
        slot.load_state_dict(member.network.state_dict(), strict=True)
    return save_bundle(out, network, meta)


def calibrate(bundle: Path, dataset: str, device: str = "auto") -> dict:
    """Choose a detector bundle's score threshold on ``dataset`` (≤ 1 FP/scan) and record how in its metadata."""
    from radlens.training.evaluate import evaluate

    doc = run_with_progress(evaluate(str(bundle), dataset, device), "calibrating")
    threshold = suggest_threshold(doc["froc"])
    calibration = {
        "rule": "the lowest score threshold with at most 1 false positive per scan",
        **{k: doc[k] for k in ("dataset", "synthetic", "data_command", "cases_from", "cases", "date", "command")},
        "min_diameter_mm": doc["summary"]["min_diameter_mm"],
        "cpm": doc["froc"]["cpm"],
        "sensitivity_at_fps": doc["froc"]["sensitivity_at_fps"],
        **froc_at_threshold(doc["froc"], threshold),
    }

    def record(meta: dict) -> None:
        meta["thresholds"]["score"] = threshold
        meta["evaluation"]["calibration"] = calibration

    update_metadata(bundle, record)
    return calibration


def ensemble_command(args: argparse.Namespace) -> int:
    if args.calibrate and bundle_info(find_bundle(args.members[0])).task != "detection":
        raise TrainingError("--calibrate chooses a detector's score threshold; these members are segmenters")
    out = build_ensemble(args.members, args.out)
    if args.calibrate:
        c = calibrate(out, args.calibrate, args.device)
        print(
            f"threshold {c['threshold']}: sensitivity {c['sensitivity']:.3f} at {c['fps_per_scan']:.2f} FP/scan "
            f"on {c['cases']} cases of {c['dataset']} (CPM {c['cpm']:.3f})",
            file=sys.stderr,
        )
    else:
        print("threshold: the mean of the members' (calibrate it with --calibrate DATASET)", file=sys.stderr)
    print(f"bundle written: {out}", file=sys.stderr)
    return 0
