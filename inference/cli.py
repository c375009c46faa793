"""``radlens infer`` and ``radlens models`` (docs/architecture.md, "Command line")."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="run AI models on a study; write findings.json and masks")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--model", action="append", metavar="NAME|DIR", help="default: every bundle for the modality")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dicom", action="store_true", help="also write DICOM SEG + SR + key images into DIR/dicom/")
    p.set_defaults(func=run_infer)

    p = sub.add_parser("import", help="import an nnU-Net v2 results folder as a model bundle")
    p.add_argument("path", metavar="PATH", help="the trained-model folder (dataset.json, plans.json, fold_N/)")
    p.add_argument("--out", metavar="BUNDLE", help="default: the user's model folder, named after the dataset")
    p.add_argument("--folds", nargs="+", metavar="F", help="default: every fold_* with a checkpoint (an ensemble)")
    p.add_argument("--checkpoint", metavar="FILE", help="default: checkpoint_final.pth, else checkpoint_best.pth")
    p.add_argument("--name", help="the bundle's name (default: DATASET-CONFIGURATION)")
    p.set_defaults(func=run_import)

    p = sub.add_parser("models", help="list the installed model bundles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_models)


def run_infer(args: argparse.Namespace) -> int:
    from radlens.inference.run import infer_command

    return infer_command(args)


def run_models(args: argparse.Namespace) -> int:
    from radlens.inference.run import models_command

    return models_command(args)


def run_import(args: argparse.Namespace) -> int:
    from radlens.inference.run import import_command

    return import_command(args)
