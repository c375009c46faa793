"""``radlens pacs nodes|echo|find|get|send`` (docs/architecture.md, "Command line").

NODE is a node's name in pacs.json, or an ad-hoc ``AET@HOST:PORT`` (DIMSE) or DICOMweb URL.
"""

from __future__ import annotations

import argparse
import json

# --option → the DICOM keyword it matches (which keyword a level uses is chosen in _query_keys)
FILTERS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "date": "StudyDate",
    "accession": "AccessionNumber",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs", help="query, retrieve from and send to a PACS (DIMSE or DICOMweb)")
    actions = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="the nodes file (default: the user's pacs.json)")

    a = actions.add_parser("nodes", parents=[common], help="the configured nodes and where they are kept")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_nodes)

    a = actions.add_parser("echo", parents=[common], help="check that a node answers (C-ECHO or QIDO-RS)")
    a.add_argument("node", metavar="NODE")
    a.set_defaults(func=run_echo)

    a = actions.add_parser("find", parents=[common], help="find patients, studies, series or instances")
    a.add_argument("node", metavar="NODE")
    a.add_argument("--level", choices=("patient", "study", "series", "image"), default="study")
    a.add_argument("--patient-id", metavar="ID")
    a.add_argument("--patient-name", metavar="NAME", help="wildcards * and ? allowed")
    a.add_argument("--study", metavar="UID", help="StudyInstanceUID (needed for --level series and image)")
    a.add_argument("--series", metavar="UID", help="SeriesInstanceUID (needed for --level image)")
    a.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]")
    a.add_argument("--modality", metavar="MOD")
    a.add_argument("--accession", metavar="NUMBER")
    a.add_argument("--json", action="store_true", help="one JSON object per match")
    a.set_defaults(func=run_find)

    a = actions.add_parser("get", parents=[common], help="retrieve a study or series into OUT/<study>/<series>/")
    a.add_argument("node", metavar="NODE")
    a.add_argument("--study", required=True, metavar="UID")
    a.add_argument("--series", metavar="UID", help="only this series")
    a.add_argument("--out", required=True, metavar="DIR")
    a.add_argument("--via", choices=("get", "move", "wado"), help="C-GET, C-MOVE or WADO-RS (default: the node's own)")
    a.set_defaults(func=run_get)

    a = actions.add_parser("send", parents=[common], help="send files or folders (C-STORE or STOW-RS)")
    a.add_argument("node", metavar="NODE")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument(
        "--no-check",
        action="store_true",
        help="send results even when the node does not hold the series they reference",
    )
    a.set_defaults(func=run_send)


def _config(args):
    from radlens.pacs.nodes import read_config

    return read_config(args.config)


def run_nodes(args: argparse.Namespace) -> int:
    from radlens.pacs.nodes import config_path

    config = _config(args)
    if args.json:
        print(json.dumps(config.to_json()))
        return 0
    local = config.local
    print(f"{args.config or config_path()}: RadLens is {local.ae_title}, C-MOVE to {local.host}:{local.port}")
    for node in config.nodes:
        via = "DICOMweb" if node.kind == "dicomweb" else f"DIMSE, retrieve by C-{node.retrieve.upper()}"
        print(f"  {node.name}: {node.address} ({via})")
    if not config.nodes:
        print("  no nodes configured")
    return 0


def run_echo(args: argparse.Namespace) -> int:
    from radlens.pacs.client import echo

    config = _config(args)
    print(echo(config.node(args.node), config.local))
    return 0


def run_find(args: argparse.Namespace) -> int:
    from radlens.pacs.client import find
    from radlens.pacs.query import RETURN_KEYS, Query

    config = _config(args)
    keys = {keyword: getattr(args, option) for option, keyword in FILTERS.items()}
    if args.modality:
        keys["Modality" if args.level in ("series", "image") else "ModalitiesInStudy"] = args.modality
    matches = find(config.node(args.node), config.local, Query(args.level, keys))
    if args.json:
        for m in matches:
            print(json.dumps(m))
        return 0
    columns = RETURN_KEYS[args.level]
    widths = [max([len(c), *(len(m[c]) for m in matches)]) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for m in matches:
        print("  ".join(m[c].ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    return 0


def run_get(args: argparse.Namespace) -> int:
    from radlens.imaging.progress import run_with_progress
    from radlens.pacs.client import iter_retrieve

    config = _config(args)
    node = config.node(args.node)
    job = iter_retrieve(node, config.local, args.study, args.out, series_uid=args.series, method=args.via)
    for folder in run_with_progress(job, f"retrieve from {node.name}"):
        print(folder)
    return 0


def run_send(args: argparse.Namespace) -> int:
    from radlens.imaging.progress import run_with_progress
    from radlens.pacs.client import iter_send

    config = _config(args)
    node = config.node(args.node)
    sent = run_with_progress(iter_send(node, config.local, args.paths, check=not args.no_check), f"send to {node.name}")
    print(f"{node}: {sent} instance{'' if sent == 1 else 's'} stored")
    return 0
