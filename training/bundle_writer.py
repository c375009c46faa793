"""The trained network, its plan and its validation as a bundle ``radlens infer`` runs."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from radlens.training.cache import CaseCache
from radlens.training.checkpoint import CHECKPOINTS, load_checkpoint
from radlens.training.config import TASKS
from radlens.training.datasets import Dataset
from radlens.training.froc import froc_at_threshold, suggest_threshold
from radlens.training.plan import Plan
from radlens.training.validation import choose_operating_point, validate


def provenance(ds: Dataset, command: str, seed: int) -> dict:
    """The ``training`` fields every bundle starts with: its data, the commands that made and trained it."""
    return {
        "dataset": str(ds.root),
        "dataset_name": ds.name,
        "layout": ds.layout,
        "synthetic": ds.synthetic,
        "data_command": ds.data_command,
        "command": command,
        "seed": seed,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def data_sources(ds: Dataset) -> list[dict]:
    """A bundle's ``data_sources``: the dataset it learned from."""
    return [{"dataset": ds.name, "synthetic": ds.synthetic, "command": ds.data_command, "path": str(ds.root)}]


def write_bundle(out: Path, ds: Dataset, plan: Plan, network, cache: CaseCache, device: str, history, commands) -> None:
    """The best checkpoint's network as a bundle, with its validation and the operating point chosen on it."""
    from radlens.inference.bundle import save_bundle

    best_path = out / CHECKPOINTS / "best.safetensors"
    if best_path.is_file():
        load_checkpoint(best_path, network)
    evaluation: dict = {}
    thresholds: dict = {}
    if plan.validation_cases:
        metric, details = validate(network, cache, plan, device)
        if plan.task == "detect":
            thresholds["score"] = suggest_threshold(details)
            at = froc_at_threshold(details, thresholds["score"])
            evaluation["validation"] = {"cases": len(plan.validation_cases), "cpm": metric, "froc": details, **at}
        else:
            evaluation["validation"] = {"cases": len(plan.validation_cases), "dice_mean": metric, **details}
            if len(plan.labels) == 1:
                thresholds, table = choose_operating_point(network, cache, plan, device)
                evaluation["validation"]["operating_point"] = table
    if plan.task == "detect":
        thresholds.setdefault("score", 0.5)
    else:
        thresholds.setdefault("probability", 0.5)
    name = out.resolve().name
    kind = "synthetic phantoms" if ds.synthetic else f"the dataset {ds.name}"
    meta = {
        "name": name,
        "version": "1.0.0",
        "task": TASKS[plan.task],
        "description": f"{plan.arch} {TASKS[plan.task]} of {', '.join(plan.labels)} ({ds.modality}), "
        f"trained by radlens train on {kind}",
        "labels": plan.labels,
        "arch": plan.arch,
        "arch_kwargs": plan.arch_kwargs,
        "input": plan.input_block(),
        "thresholds": thresholds,
        "training": {
            **provenance(ds, commands[0], plan.seed),
            "resumed_with": commands[1:],
            "epochs": plan.epochs,
            "iterations_per_epoch": plan.iterations,
            "batch": plan.batch,
            "lr": plan.lr,
            "split": {"train": plan.train_cases, "validation": plan.validation_cases},
            "final_loss": history[-1]["loss"] if history else None,
            **({"init": plan.init} if plan.init else {}),
        },
        "data_sources": data_sources(ds),
        "evaluation": evaluation,
    }
    save_bundle(out, network, meta)
