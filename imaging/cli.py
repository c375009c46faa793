"""``radlens info`` and ``radlens phantom`` (docs/architecture.md, "Command line")."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from radlens.imaging.phantom import KINDS

    p = sub.add_parser("info", help="list the series in files or folders (headers only)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON line per PATH")
    p.set_defaults(func=run_info)

    p = sub.add_parser("phantom", help="write synthetic studies with their labels (for demos and tests)")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--cases", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("dicom", "nifti"), default="nifti")
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=None,
        help="grid size (default: the kind's clinical-like size)",
    )
    p.add_argument(
        "--lesion-free",
        type=float,
        default=0.0,
        metavar="F",
        help="brain-mr kinds: the share of cases made without lesions (negatives for a classifier; default 0)",
    )
    p.add_argument(
        "--fluid-lesions",
        type=float,
        default=0.0,
        metavar="F",
        help="brain-mr-varied, -sequences: the share of lesions as bright (or dark) as the fluid, as on T2 (default 0)",
    )
    p.set_defaults(func=run_phantom)


def run_info(args: argparse.Namespace) -> int:
    from radlens.imaging.discovery import describe

    failed = False
    for path in args.paths:
        report = describe(path)
        failed |= not report["ok"]
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print(_info_text(report), flush=True)
    return 1 if failed else 0


def _info_text(report: dict) -> str:
    if not report["ok"]:
        return f"{report['path']}: error: {report['error']}"
    lines = [f"{report['path']}: {len(report['series'])} series"]
    for s in report["series"]:
        shape = "×".join(str(n) for n in s["shape_zyx"])
        spacing = "×".join(f"{v:.3g}" for v in s["spacing_zyx"])
        kind = f"4D set of {s['parts']} by {s['dimension']}" if s.get("parts") else s["kind"]
        lines.append(
            f"  {s['modality']:<3} {s['description'] or '(no description)'}: {shape} voxels (z×y×x), "
            f"{spacing} mm, {s['files']} files, {kind}  [{s['uid']}]"
        )
        lines.extend(f"    warning: {w}" for w in s["warnings"])
    for skipped in report["skipped"]:
        lines.append(f"  skipped {skipped['path']}: {skipped['reason']}")
    return "\n".join(lines)


def run_phantom(args: argparse.Namespace) -> int:
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_with_progress

    job = iter_write_phantoms(
        args.out, kind=args.kind, cases=args.cases, seed=args.seed, fmt=args.format, shape_zyx=args.shape,
        lesion_free=args.lesion_free, fluid_lesions=args.fluid_lesions,
    )
    dataset = run_with_progress(job, desc=f"phantom {args.kind}")
    print(f"wrote {args.cases} synthetic {args.kind} case(s) to {dataset}", file=sys.stderr)
    return 0
