"""How fast imaging.load reads a 300×512×512 CT series, against SimpleITK and a plain pydicom loop.

Writes (once, then reuses) a SYNTHETIC int16 CT series of 300 slices of 512×512 with
imaging.dicom_write (the chest phantom of imaging.phantom when it is available, otherwise
random HU), warms the page cache, then times in one process, alternating, ``--rounds`` rounds of:

- ``imaging_load``: ``imaging.load(folder)`` (discovery's header scan + pixels, the user's path)
- ``imaging_load_series``: ``imaging.load(series_info)`` (pixels only; discovery already done)
- ``sitk``: SimpleITK ``ImageSeriesReader`` with ``GetGDCMSeriesFileNames`` + ``GetArrayFromImage``
- ``pydicom``: dcmread + pixel_array + rescale per file, sorted by position along the normal

plus the time to the first slice (the ``SlicePreview`` yield of ``iter_load``, from the folder and
from a SeriesInfo) and, in a fresh subprocess each, the peak memory of ``imaging.load`` relative to
the volume's ``nbytes`` (tracemalloc peak, and the growth of the resident set's high-water mark). Prints one JSON
object. Run: ``.venv/bin/python bench/load.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.discovery import scan
from radlens.imaging.loading import iter_load, load
from radlens.imaging.volume import Volume

SHAPE_ZYX = (300, 512, 512)
SPACING_ZYX = (1.0, 0.7, 0.7)
GOALS = {"load_over_sitk": 0.5, "first_slice_s": 0.15, "peak_over_volume": 1.3}


def make_series(folder: Path) -> tuple[list[Path], str]:
    """The synthetic series, written once; returns its files and what made it."""
    done = folder.parent / (folder.name + ".complete")
    if done.exists():
        return sorted(folder.glob("*.dcm")), done.read_text().strip()
    try:
        from radlens.imaging.phantom import make_chest_ct

        volume = make_chest_ct(0, shape_zyx=SHAPE_ZYX).volume
        made_by = "radlens.imaging.phantom.make_chest_ct(0) (synthetic)"
    except ImportError:
        rng = np.random.default_rng(0)
        array = rng.integers(-1024, 2000, SHAPE_ZYX, dtype=np.int16)
        volume = Volume(array, spacing_zyx=SPACING_ZYX, modality="CT", description="synthetic bench CT")
        made_by = "random HU (synthetic)"
    write_dicom_series(volume, folder, instance_number_order="shuffled")
    done.write_text(made_by + "\n")
    return sorted(folder.glob("*.dcm")), made_by


def warm(files: list[Path]) -> None:
    for f in files:
        f.read_bytes()


def run_sitk(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def run_pydicom(folder: Path) -> np.ndarray:
    """What a plain script does: read every file, sort by position along the normal, rescale."""
    slices = []
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        where = float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal))
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((where, hu))
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices])


def first_slice_seconds(source) -> float:
    start = time.perf_counter()
    job = iter_load(source)
    try:
        for progress in job:
            if progress.preview is not None:
                return time.perf_counter() - start
    finally:
        job.close()
    raise RuntimeError("no preview was yielded")


PEAK_SCRIPT = """
import json, sys, tracemalloc
import radlens.imaging.loading, radlens.imaging.discovery, radlens.imaging.dicom  # imports are not the load's memory
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
if {traced!r}:
    tracemalloc.start()
before = status("VmRSS")
volume = radlens.imaging.loading.load({folder!r})
if {traced!r}:
    peak = tracemalloc.get_traced_memory()[1]
else:
    peak = status("VmHWM") - before
print(json.dumps({{"nbytes": volume.nbytes, "peak": peak}}))
"""


def peak_memory(folder: Path, traced: bool) -> tuple[int, int]:
    """(volume bytes, peak bytes) of one imaging.load in a fresh interpreter.

    ``traced``: tracemalloc's peak of Python and numpy allocations (its own bookkeeping is not
    counted, but it slows the load, so the two are measured in separate processes); otherwise the
    growth of the resident set's high-water mark (VmHWM) over the resident set before the load.
    """
    code = PEAK_SCRIPT.format(folder=str(folder), traced=traced)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["nbytes"], result["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "radlens-bench-load" / "ct300")
    args = parser.parse_args()

    folder = args.cache
    folder.parent.mkdir(parents=True, exist_ok=True)
    files, made_by = make_series(folder)
    warm(files)
    series = scan(folder)[0]

    reference = load(folder)
    assert reference.shape_zyx == SHAPE_ZYX, reference.shape_zyx
    assert np.array_equal(run_sitk(folder), reference.array), "SimpleITK and imaging.load disagree"
    assert np.array_equal(run_pydicom(folder), reference.array), "pydicom and imaging.load disagree"
    del reference

    runs = {
        "imaging_load": lambda: load(folder),
        "imaging_load_series": lambda: load(series),
        "sitk": lambda: run_sitk(folder),
        "pydicom": lambda: run_pydicom(folder),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    first_path, first_series = [], []
    for _ in range(args.rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            del result
        first_path.append(first_slice_seconds(folder))
        first_series.append(first_slice_seconds(series))

    medians = {name: statistics.median(t) for name, t in times.items()}
    traced = [peak_memory(folder, traced=True) for _ in range(3)]
    resident = [peak_memory(folder, traced=False) for _ in range(3)]
    nbytes = traced[0][0]
    peak_tm = statistics.median(p for _, p in traced) / nbytes
    peak_rss = statistics.median(p for _, p in resident) / nbytes
    report = {
        "series": {"shape_zyx": list(SHAPE_ZYX), "dtype": "int16", "files": len(files), "made_by": made_by},
        "rounds": args.rounds,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "ratio_load_over_sitk": round(medians["imaging_load"] / medians["sitk"], 3),
        "ratio_load_over_pydicom": round(medians["imaging_load"] / medians["pydicom"], 3),
        "ratio_load_series_over_sitk": round(medians["imaging_load_series"] / medians["sitk"], 3),
        "first_slice_s": {
            "from_path": round(statistics.median(first_path), 4),
            "from_series_info": round(statistics.median(first_series), 4),
        },
        "peak_memory_over_volume": {"tracemalloc": round(peak_tm, 3), "resident_high_water": round(peak_rss, 3)},
        "volume_mib": round(nbytes / 2**20, 1),
        "goals": GOALS,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
