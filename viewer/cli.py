"""``radlens view`` (the default subcommand) and ``radlens export`` (docs/architecture.md, "Command line")."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="open the application (the default subcommand)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="file, folder, DICOMDIR, NIfTI/NRRD/MHA")
    p.add_argument("--demo", action="store_true", help="open the synthetic demo studies with AI overlays")
    p.set_defaults(func=run_view)

    p = sub.add_parser("export", help="render a slice with its overlays to PNG (or DICOM), headless")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--out", required=True, metavar="FILE.png|FILE.dcm")
    p.add_argument("--findings", metavar="DIR", help="folder holding findings.json (from radlens infer)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--slice", type=int, metavar="N")
    where.add_argument("--finding", type=int, metavar="ID")
    p.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial")
    p.add_argument("--preset", metavar="NAME")
    p.add_argument("--window", type=float, metavar="W")
    p.add_argument("--level", type=float, metavar="L")
    p.add_argument("--overlays", default="all", metavar="all|none|MODEL,...")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="output size in pixels")
    p.add_argument("--anonymize", action="store_true", help="no patient identifiers in text or metadata")
    p.add_argument("--dicom", action="store_true", help="write DICOM Secondary Capture (FILE.dcm) instead of PNG")
    p.set_defaults(func=run_export)


def run_view(args: argparse.Namespace) -> int:
    from radlens.viewer.app import main

    return main(args.paths, demo=args.demo)


def run_export(args: argparse.Namespace) -> int:
    from radlens.viewer.export import export_command

    return export_command(args)
