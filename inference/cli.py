"""``radlens infer`` and ``radlens models`` (docs/architecture.md, "Command line")."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer", help="run AI models on a study (or each series of a folder); write findings.json and masks"
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--model", action="append", metavar="NAME|DIR", help="default: every bundle for the modality")
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEV[,DEV...]",
        help="auto, cpu, cuda, cuda:N or mps; several: one worker each",
    )
    p.add_argument(
        "--nnunet-names",
        action="store_true",
        help="a folder of studies: name each result folder as nnU-Net names cases",
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="a folder of studies: only every N-th series from the K-th (one of N machines; K from 0)",
    )
    p.add_argument("--dicom", action="store_true", help="also write DICOM SEG + SR + key images into DIR/dicom/")
    p.set_defaults(func=run_infer)

    p = sub.add_parser("import", help="import an nnU-Net v2 results folder or a MONAI bundle as a model bundle")
    p.add_argument("path", metavar="PATH", help="nnU-Net: dataset.json, plans.json, fold_N/; MONAI: configs/, models/")
    p.add_argument("--out", metavar="BUNDLE", help="default: the user's model folder, named after the dataset")
    p.add_argument("--folds", nargs="+", metavar="F", help="nnU-Net: default every fold_* (an ensemble)")
    p.add_argument("--checkpoint", metavar="FILE", help="nnU-Net: default checkpoint_final.pth, else _best")
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
