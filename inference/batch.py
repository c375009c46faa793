"""``radlens infer`` on a folder of studies: one result folder per series, resumable, one worker per device.

Why: the users of nnU-Net and MONAI run their models over a whole cohort. Each series found under
PATH gets OUT/NAME/ (findings.json and masks, written atomically, so an interrupted run leaves whole
folders only); a folder whose findings.json already holds every requested model's run is skipped,
so a rerun finishes what is left. With several devices (``--device cuda:0,cuda:1``) the series are
dealt round-robin to one spawned process per device. Across machines, each ``radlens infer`` takes its
share with ``--shard K/N`` (torchrun's RANK/WORLD_SIZE, a SLURM array's task id and count): every
K-th of the series in a fixed order, so N runs cover the cohort once without talking to each other.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from radlens.imaging.series import SeriesInfo

NNUNET_CHANNEL = re.compile(r"_\d{4}$")  # nnU-Net's channel suffix: CASE_0000.nii.gz is channel 0 of CASE


@dataclass(frozen=True)
class Job:
    name: str  # the result folder's name under OUT
    series: SeriesInfo


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def result_name(series: SeriesInfo, nnunet_names: bool) -> str:
    """A result folder name: nnU-Net's case identifier (the image file's name without ``_0000``), or a
    readable one (the file's stem; for DICOM the patient, modality, series number and UID tail)."""
    single_file = len(series.files) == 1 and not series.files[0].lower().endswith(".dcm")
    if nnunet_names:
        return NNUNET_CHANNEL.sub("", _stem(series.files[0])) if single_file else series.uid
    if single_file:
        return _stem(series.files[0])
    parts = [
        series.study.patient_id,
        series.modality,
        f"s{series.number}" if series.number is not None else "",
        series.uid[-8:],
    ]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(p for p in parts if p)).strip("-") or "series"


def jobs_in(series: list[SeriesInfo], nnunet_names: bool) -> list[Job]:
    """One job per series, names made unique by a numeric suffix."""
    seen: dict[str, int] = {}
    jobs = []
    for s in series:
        name = result_name(s, nnunet_names)
        seen[name] = seen.get(name, 0) + 1
        jobs.append(Job(name if seen[name] == 1 else f"{name}-{seen[name]}", s))
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` → (K, N), 0 ≤ K < N; anything else is refused with the reason."""
    from radlens.inference.errors import BundleError

    k, _, n = str(text).partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise BundleError(f"--shard {text}", "expected K/N with 0 ≤ K < N (e.g. 0/4 for the first of four)")
    return int(k), int(n)


def is_done(folder: Path, names: list[str]) -> bool:
    """Whether ``folder`` holds a findings.json with a run of every named model (any model when none are named)."""
    try:
        doc = json.loads((folder / "findings.json").read_text())
    except (OSError, ValueError):
        return False
    ran = {m.get("name") for m in doc.get("models", []) if isinstance(m, dict)}
    return all(n in ran for n in names) if names else bool(ran)


def run_jobs(jobs: list[Job], out: Path, models: list[str] | None, device: str, threads: int, dicom: bool) -> int:
    """Run the jobs one after another on one device; returns how many failed (each failure is one line)."""
    from radlens.imaging.errors import RadlensError
    from radlens.imaging.loading import load
    from radlens.imaging.progress import run_to_end
    from radlens.inference.engine import iter_infer
    from radlens.inference.findings import write_findings
    from radlens.inference.run import bundles_for

    failed = 0
    for job in jobs:
        folder = out / job.name
        try:
            volume = load(job.series)
            findings = run_to_end(iter_infer(volume, bundles_for(volume, models), device=device, threads=threads))
            write_findings(findings, folder)
            if dicom:
                from radlens.inference.dicom_export import write_dicom_results

                write_dicom_results(findings, volume, folder / "dicom")
            shown = ", ".join(f"{m.name} {m.seconds:.1f} s" for m in findings.models)
            print(f"{job.name}: {shown} on {findings.device} → {folder}", flush=True)
        except RadlensError as err:
            failed += 1
            print(f"radlens: error: {job.name}: {err}", file=sys.stderr, flush=True)
    return failed


def _worker(args) -> int:
    jobs, out, models, device, threads, dicom = args
    return run_jobs(jobs, Path(out), models, device, threads, dicom)


def run_batch(
    series: list[SeriesInfo],
    out: str | os.PathLike,
    *,
    models: list[str] | None,
    devices: list[str],
    nnunet_names: bool = False,
    dicom: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> int:
    """Every series of the shard into OUT/NAME/, skipping finished ones; the exit status (1 if any failed)."""
    from radlens.inference.bundle import bundle_info, find_bundle

    out = Path(out)
    # Once, here: a foreign model folder is imported before any worker starts, and workers get bundle folders.
    models = [str(find_bundle(m)) for m in models] if models else None
    names = [bundle_info(m).name for m in models or ()]
    k, n = shard
    jobs = jobs_in(series, nnunet_names)[k::n]
    todo = [j for j in jobs if not is_done(out / j.name, names)]
    skipped = len(jobs) - len(todo)
    share = f" (shard {k}/{n})" if n > 1 else ""
    print(f"{len(jobs)} series{share}: {skipped} done already, {len(todo)} to run on {', '.join(devices)}", flush=True)
    if not todo:
        return 0
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    if len(devices) == 1:
        return int(run_jobs(todo, out, models, devices[0], threads, dicom) > 0)
    shares = [(todo[i :: len(devices)], str(out), models, d, threads, dicom) for i, d in enumerate(devices)]
    with multiprocessing.get_context("spawn").Pool(len(devices)) as pool:
        failed = sum(pool.map(_worker, [s for s in shares if s[0]]))
    return int(failed > 0)
