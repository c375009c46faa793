"""How fast discovery reads a folder of 1,000 real-size DICOM files, against pydicom run plainly.

Writes (once, then reuses) 10 synthetic CT series of 100 slices of 512×512 int16 with
imaging.dicom_write, warms the page cache, then times in one process, alternating, ``--rounds``
rounds of:

- ``scan``: imaging.discovery.iter_scan with its default thread count (headers only, grouped)
- ``scan_1_thread``: the same in one thread (does the thread pool pay on this machine?)
- ``pydicom_headers``: a plain loop of dcmread(stop_before_pixels=True) (all tags, no grouping)
- ``pydicom_full``: a plain loop of dcmread (what a naive viewer does before it knows the series)
- ``scan_cold`` / ``scan_1_thread_cold``: the scan after evicting the files from the page cache
  (posix_fadvise DONTNEED, Linux; no root needed), where threads can overlap the disk reads

and once ``radlens info --json`` as a subprocess (interpreter start-up included). Prints one JSON
object with the medians, files per second and ratios. Run: ``.venv/bin/python bench/info.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.discovery import default_workers, iter_scan
from radlens.imaging.progress import run_to_end
from radlens.imaging.volume import Volume

SERIES, SLICES, SIZE = 10, 100, 512


def make_study(folder: Path) -> list[Path]:
    """The synthetic study, written once; its files in listing order."""
    done = folder.parent / (folder.name + ".complete")  # beside it, so that the scan sees only DICOM
    if not done.exists():
        rng = np.random.default_rng(0)
        for k in range(SERIES):
            array = rng.integers(-1024, 2000, (SLICES, SIZE, SIZE), dtype=np.int16)
            vol = Volume(array, spacing_zyx=(1.25, 0.7, 0.7), origin_lps=(0.0, 0.0, -k * 200.0), modality="CT")
            write_dicom_series(
                vol,
                folder / f"series{k:02d}",
                series_description=f"synthetic bench series {k}",
                series_number=k + 1,
                study_uid="1.2.826.0.1.3680043.8.498.1",
                instance_number_order="shuffled",
            )
        done.write_text("ok\n")
    return sorted(p for p in folder.rglob("*.dcm"))


def _scan(folder: Path, workers: int | None) -> int:
    result = run_to_end(iter_scan(folder, workers=workers))
    assert len(result.series) == SERIES and not result.skipped, result.skipped[:3]
    return sum(len(s.files) for s in result.series)


def _pydicom_loop(files: list[Path], **kwargs) -> int:
    n = 0
    for f in files:
        ds = pydicom.dcmread(f, **kwargs)
        if not kwargs:
            ds.PixelData  # noqa: B018 - a full read means the pixel bytes are in memory
        n += 1
    return n


def evict(files: list[Path]) -> None:
    """Drop these files' pages from the page cache, so that the next read comes from the disk."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "radlens-bench-info"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(args.folder)
    files = make_study(folder)
    assert len(files) == SERIES * SLICES, f"{folder} holds {len(files)} files, expected {SERIES * SLICES}"
    _pydicom_loop(files)  # warm the page cache

    runs = {
        "scan": lambda: _scan(folder, None),
        "scan_1_thread": lambda: _scan(folder, 1),
        "pydicom_headers": lambda: _pydicom_loop(files, stop_before_pixels=True),
        "pydicom_full": lambda: _pydicom_loop(files),
    }
    if hasattr(os, "posix_fadvise"):
        runs["scan_cold"] = runs["scan"]
        runs["scan_1_thread_cold"] = runs["scan_1_thread"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            if name.endswith("_cold"):
                evict(files)
            t0 = time.perf_counter()
            count = run()
            times[name].append(time.perf_counter() - t0)
            assert count == len(files), (name, count)

    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "radlens", "info", "--json", str(folder)], capture_output=True, text=True
    )
    cli_seconds = time.perf_counter() - t0
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and len(report["series"]) == SERIES, proc.stderr[-500:]

    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        json.dumps(
            {
                "files": len(files),
                "slice": f"{SIZE}x{SIZE} int16",
                "rounds": args.rounds,
                "threads": default_workers(),
                "cpu_count": os.cpu_count(),
                "seconds": round(med["scan"], 3),
                "files_per_second": round(len(files) / med["scan"]),
                "median_seconds": {name: round(s, 3) for name, s in med.items()},
                "radlens_info_cli_seconds": round(cli_seconds, 3),
                "ratio_scan_to_pydicom_full": round(med["scan"] / med["pydicom_full"], 3),
                "ratio_scan_to_pydicom_headers": round(med["scan"] / med["pydicom_headers"], 3),
                "ratio_threads_to_1_thread": round(med["scan"] / med["scan_1_thread"], 3),
                "ratio_threads_to_1_thread_cold": (
                    round(med["scan_cold"] / med["scan_1_thread_cold"], 3) if "scan_cold" in med else None
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
