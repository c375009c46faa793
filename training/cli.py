"""``radlens train``, ``radlens evaluate`` and ``radlens ensemble`` (docs/architecture.md, "Command line")."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from radlens.inference.metadata import BLENDS, CROPS, DEFAULT_BLEND, DEFAULT_OVERLAP
from radlens.training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model bundle from a labelled folder")
    p.add_argument("task", choices=("detect", "segment", "classify"))
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--out", required=True, metavar="BUNDLE")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, metavar="N", help="iterations per epoch")
    p.add_argument("--channels", type=int, nargs="+", metavar="C", help="network channels per level")
    p.add_argument("--res-units", type=int, metavar="N", help="residual units per level (default 1; 0 is faster)")
    p.add_argument("--val-every", type=int, metavar="N", help="validate every N epochs (default 1)")
    p.add_argument("--val-fraction", type=float, metavar="F", help="share of cases held out (default 0.2)")
    p.add_argument(
        "--mirror-axes",
        type=int,
        nargs="+",
        choices=(0, 1, 2),
        metavar="A",
        help="test-time mirroring on these image axes (0 = z, 1 = y, 2 = x) in the bundle: 2^n passes, steadier scores",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=DEFAULT_OVERLAP,
        metavar="F",
        help=f"sliding-window overlap for the final validation and in the bundle (default {DEFAULT_OVERLAP}; "
        "nnU-Net uses 0.5)",
    )
    p.add_argument(
        "--blend",
        choices=BLENDS,
        default=DEFAULT_BLEND,
        help=f"how overlapping windows are averaged (default {DEFAULT_BLEND}; gaussian, as nnU-Net and MONAI do it, "
        "lets a window's centre count most)",
    )
    p.add_argument(
        "--clip",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="CT: a fixed window in HU the input is clipped to and scaled to [0, 1] (default: the 0.5/99.5 "
        "percentiles of the labelled voxels, nnU-Net's rule; a wide window such as -1000 400 keeps ground glass)",
    )
    p.add_argument(
        "--crop",
        choices=(*CROPS, "none"),
        help="CT: what the input is cropped to first (default body; lungs for a lung model: no findings "
        "outside them and fewer voxels to run on)",
    )
    p.add_argument(
        "--two-stage",
        action="store_true",
        help="detect: train the classifier of the two-stage detector (shape-based candidates, then a 3D CNN on "
        "two views of each): what the shipped chest detector is",
    )
    p.add_argument(
        "--init",
        metavar="BUNDLE",
        help="fine-tune this bundle (a folder or an installed name): its network, input spacing, patch and "
        "normalisation, and its weights to start from (with --two-stage: a two-stage detector's classifier)",
    )
    p.add_argument(
        "--context",
        type=int,
        default=0,
        metavar="N",
        help="classify: the CNN sees N neighbouring slices on each side as channels (2.5D; default 0)",
    )
    p.add_argument(
        "--positive",
        metavar="LABEL",
        help="classify: the label the model scores (default: of two labels, the one not named normal, "
        "negative, healthy, absent or no-*)",
    )
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "classification-set",
        help="a folder of label maps (nnU-Net layout) as a classification folder: label present or absent",
    )
    p.add_argument("source", metavar="DATASET")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--label", default="lesion", help="the name of the present class (absent: no-LABEL)")
    p.add_argument(
        "--slab-mm",
        type=float,
        metavar="MM",
        help="cut each case into slabs this thick (z) where the body fills the slices: healthy slabs give "
        "negatives from cases that all have lesions",
    )
    p.add_argument(
        "--min-area-mm2",
        type=float,
        default=10.0,
        metavar="A",
        help="a slice is positive from this lesion area; a smaller sliver is unknown (default 10)",
    )
    p.set_defaults(func=run_classification_set)

    p = sub.add_parser("evaluate", help="evaluate a bundle on a dataset's held-out cases")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--out", metavar="metrics.json")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--record", action="store_true", help="also store the metrics in the bundle's metadata.json")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("ensemble", help="average several bundles of one recipe (e.g. seeds) into one bundle")
    p.add_argument("members", nargs="+", metavar="MEMBER", help="bundle folders or names, at least two")
    p.add_argument("--out", required=True, metavar="BUNDLE")
    p.add_argument(
        "--calibrate",
        metavar="DATASET",
        help="detectors: choose the score threshold (≤ 1 FP/scan) on this dataset's held-out cases",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=run_ensemble)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config from ``radlens train``'s options; an option not given keeps the config's default."""
    options = vars(args)
    given = {f.name: options[f.name] for f in fields(TrainConfig) if options[f.name] is not None}
    given["dataset"], given["out"] = Path(given["dataset"]), Path(given["out"])
    if "init" in given:
        given["init"] = Path(given["init"])
    for name in ("patch", "spacing", "channels", "mirror_axes", "clip"):
        if name in given:
            given[name] = tuple(given[name])
    return TrainConfig(**given)


def run_train(args: argparse.Namespace) -> int:
    if args.task == "classify":
        from radlens.training import classify
        from radlens.training.config import command_line

        return classify.train_command(args, command_line())
    if args.two_stage:
        from radlens.training import two_stage
        from radlens.training.config import command_line
        from radlens.training.errors import TrainingError

        if args.task != "detect":
            raise TrainingError("--two-stage: the two-stage model is a detector (radlens train detect)")
        return two_stage.train_command(args, command_line())
    from radlens.training.console import train_command

    return train_command(train_config(args))


def run_classification_set(args: argparse.Namespace) -> int:
    from radlens.training.classify_data import classification_set_command

    return classification_set_command(args)


def run_evaluate(args: argparse.Namespace) -> int:
    from radlens.training.evaluate import evaluate_command

    return evaluate_command(args)


def run_ensemble(args: argparse.Namespace) -> int:
    from radlens.training.ensemble import ensemble_command

    return ensemble_command(args)
