"""``imaging.load``: whatever the user points at (a series, a file, a folder, a DICOMDIR, a volume file).

A folder or DICOMDIR must hold exactly one series; otherwise the error lists what is there so the
user can pick one (``imaging.scan`` gives the ``SeriesInfo`` objects to pass instead).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings as pywarnings
from collections.abc import Generator

from radlens.imaging.dicom import SlicePreview, iter_load_series
from radlens.imaging.errors import ImagingError
from radlens.imaging.progress import Progress, check_cancel, run_to_end
from radlens.imaging.series import SeriesInfo
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import is_volume_file, read_volume

Source = SeriesInfo | str | os.PathLike


def load(source: Source) -> Volume:
    """Load ``source`` into a Volume (see :func:`iter_load`)."""
    with pywarnings.catch_warnings():  # pydicom's complaints about odd headers; our errors say what matters
        pywarnings.simplefilter("ignore")
        return run_to_end(iter_load(source))


def iter_load(source: Source, cancel: threading.Event | None = None) -> Generator[Progress, None, Volume]:
    """Load ``source`` as a job: the first Progress carrying a ``SlicePreview`` is the middle slice."""
    if isinstance(source, SeriesInfo):
        return (yield from _iter_load_series(source, cancel, None))
    path = os.fspath(source)
    if not os.path.exists(path):
        raise ImagingError(path, "no such file or folder")
    from radlens.imaging.discovery import iter_scan

    result = yield from iter_scan(path, cancel)
    check_cancel(cancel, "load")
    if not result.series:
        if os.path.isfile(path) and len(result.skipped) == 1:
            raise ImagingError(path, result.skipped[0].reason)
        reasons = "; ".join(f"{os.path.basename(s.path)}: {s.reason}" for s in result.skipped[:3])
        more = f" ({len(result.skipped)} files skipped: {reasons}{'; ...' if len(result.skipped) > 3 else ''})"
        raise ImagingError(path, "no images found" + (more if result.skipped else ""))
    if len(result.series) > 1:
        listed = "; ".join(_series_line(s) for s in result.series[:8])
        rest = f"; and {len(result.series) - 8} more" if len(result.series) > 8 else ""
        raise ImagingError(path, f"holds {len(result.series)} series, open one of them: {listed}{rest}")
    return (yield from _iter_load_series(result.series[0], cancel, path))


def _iter_load_series(series: SeriesInfo, cancel, source: str | None) -> Generator[Progress, None, Volume]:
    if series.files and is_volume_file(series.files[0]):
        check_cancel(cancel, "load")
        part = series.parts[0] if series.parts else series
        volume = read_volume(part.files[0], part.volume_index)
        if part.uid != part.files[0]:  # a later 3D volume of a 4D file: named as the part it is
            volume = dataclasses.replace(volume, series_uid=part.uid, description=part.description)
        volume = dataclasses.replace(volume, warnings=tuple(dict.fromkeys((*series.warnings, *volume.warnings))))
        mid = volume.shape_zyx[0] // 2
        yield Progress(1, 1, "loaded", preview=SlicePreview(mid, volume.array[mid].copy(), volume.shape_zyx[0]))
        return volume
    return (yield from iter_load_series(series, cancel, source=source))


def _series_line(s: SeriesInfo) -> str:
    shape = "×".join(str(n) for n in s.shape_zyx)
    return f"{s.modality} {s.description or '(no description)'} {shape} [{s.uid or 'no uid'}]"
