"""``radlens infer`` and ``radlens models``: the engine for batch users, the tests and the viewer's logic."""

from __future__ import annotations

import argparse
import json
import os
import sys

from radlens.imaging.progress import run_with_progress
from radlens.imaging.volume import Volume
from radlens.inference.bundle import BundleInfo, bundle_info, find_bundle, list_bundles
from radlens.inference.errors import BundleError


def load_study(path: str) -> Volume:
    """The study at ``path`` as one Volume (a file, a series folder, DICOMDIR, NIfTI/NRRD/MHA), with a bar."""
    from radlens.imaging.loading import iter_load

    return run_with_progress(iter_load(path), desc="loading")


def bundles_for(volume: Volume, models: list[str] | None) -> list[BundleInfo]:
    """The named bundles, or every installed bundle for the volume's modality."""
    if models:
        return [bundle_info(find_bundle(m)) for m in models]
    found = list_bundles(volume.modality)
    if not found:
        installed = ", ".join(f"{b.name} ({b.modality})" for b in list_bundles()) or "none"
        raise BundleError(
            volume.source or "study",
            f"no model bundle for modality {volume.modality!r} (installed: {installed}); name one with --model",
        )
    return found


def infer_command(args: argparse.Namespace) -> int:
    from radlens.inference.engine import iter_infer, select_device
    from radlens.inference.findings import write_findings

    devices = [d.strip() for d in args.device.split(",") if d.strip()] or ["auto"]
    for d in devices:
        select_device(d)  # an unknown name is refused before anything runs
    if os.path.isdir(args.path):
        from radlens.imaging.discovery import scan

        series = scan(args.path)
        if len(series) > 1 or args.nnunet_names or len(devices) > 1 or args.shard:
            from radlens.inference.batch import parse_shard, run_batch

            shard = parse_shard(args.shard) if args.shard else (0, 1)
            return run_batch(
                series,
                args.out,
                models=args.model,
                devices=devices,
                nnunet_names=args.nnunet_names,
                dicom=args.dicom,
                shard=shard,
            )
    volume = load_study(args.path)
    if args.dicom:  # a NIfTI study is refused before any model runs
        from radlens.inference.dicom_source import source_series

        source_series(volume)
    bundles = bundles_for(volume, args.model)
    _, note = select_device(args.device)
    if note:
        print(f"radlens: warning: {note}", file=sys.stderr)
    # No GUI to keep responsive here: every core works.
    job = iter_infer(volume, bundles, device=args.device, threads=os.cpu_count() or 1)
    findings = run_with_progress(job, desc="radlens infer")
    path = write_findings(findings, args.out)
    for m in findings.models:
        print(f"{m.name} {m.version}: {m.task}, {m.seconds:.1f} s on {findings.device}")
        for warning in m.warnings:
            print(f"radlens: warning: {m.name}: {warning}", file=sys.stderr)
    for c in findings.classifications:
        peak = f", highest on slice {c.per_slice.index(max(c.per_slice))}" if c.per_slice else ""
        print(f"{c.model}: {c.label} {c.probability:.3f} (study){peak}")
    print(f"{len(findings.detections)} detection candidate(s), {len(findings.segmentations)} segmentation(s), "
          f"{len(findings.classifications)} classification(s) → {path}")
    if args.dicom:
        from radlens.inference.dicom_export import write_dicom_results

        for written in write_dicom_results(findings, volume, os.path.join(args.out, "dicom")):
            print(written)
    return 0


def models_command(args: argparse.Namespace) -> int:
    errors: list[BundleError] = []
    bundles = list_bundles(errors=errors)
    if args.json:
        for b in bundles:
            print(json.dumps(b.to_json()))
    elif not bundles:
        print("no model bundles installed")
    else:
        rows = [(b.name, b.version, b.task, b.modality, b.description, str(b.path)) for b in bundles]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + f"  {r[4]}\n    {r[5]}")
    for err in errors:
        print(f"radlens: warning: skipped {err}", file=sys.stderr)
    return 0


def import_command(args: argparse.Namespace) -> int:
    from radlens.inference.monai_bundle import import_monai_bundle, is_monai_bundle
    from radlens.inference.nnunet_import import import_nnunet, is_nnunet_folder

    if is_nnunet_folder(args.path):
        folder = import_nnunet(args.path, args.out, folds=args.folds, checkpoint=args.checkpoint, name=args.name)
    elif is_monai_bundle(args.path):
        folder = import_monai_bundle(args.path, args.out, name=args.name)
    else:
        raise BundleError(
            args.path,
            "neither an nnU-Net v2 results folder (dataset.json, plans.json, fold_N/) "
            "nor a MONAI bundle (configs/metadata.json, configs/inference.json, models/model.pt)",
        )
    info = bundle_info(folder)
    print(f"imported {info.name} ({info.version}, {info.modality}) → {folder}")
    return 0
