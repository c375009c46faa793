"""What is in a file, a folder or a DICOMDIR: series found from headers only, and what was skipped why.

``iter_scan`` is the long job (yields ``Progress``, honours a cancel event); ``scan`` runs it to the
end; ``describe`` is one line of ``radlens info --json`` (docs/architecture.md, "Command line") and never raises.
How headers become series (stacks, 4D sets, kinds) is :mod:`radlens.imaging.grouping`.
"""

from __future__ import annotations

import os
import threading
import warnings as pywarnings
from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pydicom

from radlens.imaging.dicom_headers import Header, read_header
from radlens.imaging.dicom_native import SNIFF_BYTES, sniff
from radlens.imaging.errors import ImagingError, RadlensError
from radlens.imaging.grouping import Skipped, group_series
from radlens.imaging.kinds import SET_4D, volume_file_kind
from radlens.imaging.progress import Progress, check_cancel, run_to_end, run_with_progress
from radlens.imaging.series import SeriesInfo
from radlens.imaging.volume import StudyInfo
from radlens.imaging.volume_io import is_volume_file, volume_header
from radlens.imaging.volume_nibabel import DATA_FILE_OF

# Header reads are handed to threads in chunks; bench/info.py measured what pays (see its docstring).
CHUNK = 32
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class ScanResult:
    series: tuple[SeriesInfo, ...]
    skipped: tuple[Skipped, ...]


def scan(path: str | os.PathLike, workers: int | None = None) -> list[SeriesInfo]:
    """The series under ``path`` (headers only); an ``ImagingError`` when there are none."""
    with pywarnings.catch_warnings():  # pydicom's complaints about odd files; the skip reasons say it
        pywarnings.simplefilter("ignore")
        result = run_to_end(iter_scan(path, workers=workers))
    if not result.series:
        raise ImagingError(path, _no_images_reason(path, result))
    return list(result.series)


def iter_scan(
    path: str | os.PathLike, cancel: threading.Event | None = None, workers: int | None = None
) -> Generator[Progress, None, ScanResult]:
    """Scan a folder (recursively), a DICOMDIR, a DICOM file or a volume file into series.

    ``workers`` threads read headers (default: ``default_workers()``; 1 reads in this thread).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImagingError(path, "no such file or folder")
    skipped: list[Skipped] = []
    if os.path.isdir(path):
        files = []

        def unreadable(err: OSError) -> None:
            skipped.append(Skipped(err.filename or path, f"cannot list: {err.strerror or err}"))

        for root, dirs, names in os.walk(path, onerror=unreadable):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                if os.path.isfile(full):
                    files.append(full)
                else:  # a FIFO or a device would block the reader; a dangling link has nothing to read
                    skipped.append(Skipped(full, "not a regular file"))
            check_cancel(cancel, "scan")
        yield Progress(0, len(files), "listing files")
    elif _is_dicomdir(path):
        files, missing = _dicomdir_files(path)
        skipped.extend(missing)
    else:
        files = [path]

    volumes = [f for f in files if is_volume_file(f)]
    # The .raw/.zraw beside a .mhd or .nhdr belongs to that volume: not a file to try as DICOM.
    data_files = {d for v in volumes for d in _volume_data_files(v)}
    dicoms = [f for f in files if not is_volume_file(f) and os.path.abspath(f) not in data_files]
    headers: list[Header] = []
    done = 0
    for chunk in _read_headers(dicoms, cancel, workers):
        for item in chunk:
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                headers.append(item)
        done += len(chunk)
        yield Progress(done, len(files), "reading headers")
        check_cancel(cancel, "scan")

    series: list[SeriesInfo] = []
    for f in volumes:
        try:
            series.append(_volume_series(f))
        except ImagingError as err:
            skipped.append(Skipped(f, err.reason))
        done += 1
        yield Progress(done, len(files), "reading headers")
        check_cancel(cancel, "scan")

    dicom_series, dropped = group_series(headers)
    series.extend(dicom_series)
    skipped.extend(dropped)
    series.sort(key=_series_sort_key)
    return ScanResult(tuple(series), tuple(sorted(skipped, key=lambda s: s.path)))


def describe(path: str | os.PathLike) -> dict:
    """One ``radlens info --json`` line for ``path``; reports every failure as ``ok: false``, never raises."""
    text = os.fspath(path)
    try:
        with pywarnings.catch_warnings():  # pydicom's complaints about odd files; the skip reasons say it
            pywarnings.simplefilter("ignore")
            result = run_with_progress(iter_scan(text), desc=f"info {os.path.basename(text) or text}")
    except ImagingError as err:
        return {"path": text, "ok": False, "error": err.reason}
    except RadlensError as err:
        return {"path": text, "ok": False, "error": str(err)}
    except Exception as err:  # a bug must not stop `radlens info` before the next PATH
        return {"path": text, "ok": False, "error": f"unexpected {type(err).__name__}: {' '.join(str(err).split())}"}
    if not result.series:
        return {"path": text, "ok": False, "error": _no_images_reason(text, result)}
    return {
        "path": text,
        "ok": True,
        "series": [s.to_json() for s in result.series],
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
    }


def default_workers() -> int:
    """Threads for header reads. Parsing (dicom_native's walker, or pydicom) holds the GIL, so threads
    only hide disk waits: bench/info.py on 2 shared cores measured them ~45 % faster from a cold page
    cache and 5-10 % slower from a warm one; a folder is usually scanned cold, so threads it is."""
    return min(8, 2 * (os.cpu_count() or 1))


# -- reading -----------------------------------------------------------------------------------


def _read_headers(
    files: list[str], cancel: threading.Event | None, workers: int | None
) -> Iterable[list[Header | Skipped]]:
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield [_read_one(f) for f in chunk]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="radlens-scan")
    try:
        for result in pool.map(_read_chunk, chunks):
            yield result
            if cancel is not None and cancel.is_set():
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_chunk(files: list[str]) -> list[Header | Skipped]:
    return [_read_one(f) for f in files]


def _read_one(path: str) -> Header | Skipped:
    try:
        return read_header(path)
    except ImagingError as err:
        return Skipped(path, err.reason)
    except Exception as err:  # any other failure on one file skips that file, never the scan
        return Skipped(path, f"unreadable: {type(err).__name__}: {' '.join(str(err).split())[:200]}")


def _is_dicomdir(path: str) -> bool:
    if os.path.basename(path).upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as fp:
            if sniff(fp.read(SNIFF_BYTES)) is not False:  # no preamble: read_file_meta_info needs one
                return False
        meta = pydicom.filereader.read_file_meta_info(path)
        return str(meta.get("MediaStorageSOPClassUID", "")) == _DIRECTORY_SOP_CLASS
    except Exception:  # not readable as DICOM: read_header gives the reason later
        return False


def _dicomdir_files(path: str) -> tuple[list[str], list[Skipped]]:
    """The image files a DICOMDIR lists (relative to its folder), and those it lists but are missing."""
    try:
        ds = pydicom.dcmread(path)
        records = ds.DirectoryRecordSequence
    except Exception as err:
        raise ImagingError(path, f"unreadable DICOMDIR: {' '.join(str(err).split())[:200]}") from None
    root = os.path.dirname(os.path.abspath(path))
    files, missing, seen = [], [], set()
    for record in records:
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(p) for p in ref] if not isinstance(ref, str) else [p for p in ref.split("\\") if p]
        candidate = os.path.join(root, *parts)
        if not os.path.isfile(candidate) and os.path.isfile(os.path.join(root, *(p.lower() for p in parts))):
            candidate = os.path.join(root, *(p.lower() for p in parts))
        if candidate in seen:
            continue
        seen.add(candidate)
        if os.path.isfile(candidate):
            files.append(candidate)
        else:
            missing.append(Skipped(candidate, "listed in the DICOMDIR but missing"))
    return files, missing


def _volume_data_files(path: str) -> list[str]:
    """The detached data file a MetaImage (.mhd) or NRRD (.nhdr) header names, or the data file
    beside a PAR, AFNI HEAD or Analyze header, as absolute paths."""
    lower = path.lower()
    for suffix, data_suffixes in DATA_FILE_OF.items():
        if lower.endswith(suffix):
            stem = path[: -len(suffix)]
            return [os.path.abspath(stem + d) for d in data_suffixes if os.path.isfile(stem + d)]
    if not lower.endswith((".mhd", ".nhdr")):
        return []
    try:
        with open(path, "rb") as fp:
            text = fp.read(64 * 1024).decode("latin-1")
    except OSError:
        return []
    for line in text.splitlines():
        key, sep, value = line.partition("=" if lower.endswith(".mhd") else ":")
        key = key.strip().lower()
        if sep and key in ("elementdatafile", "data file", "datafile"):
            name = value.strip()
            if name and name.upper() not in ("LOCAL", "LIST") and "%" not in name:
                return [os.path.abspath(os.path.join(os.path.dirname(path), name))]
    return []


def _volume_series(path: str) -> SeriesInfo:
    """A volume file as one series (a 4D file as a 4D set of its 3D volumes), from its header only."""
    h = volume_header(path)
    name = os.path.basename(path)
    info = SeriesInfo(
        uid=path,
        modality=h.modality,
        description=name,
        study=StudyInfo(),
        files=(path,),
        shape_zyx=h.shape_zyx,
        spacing_zyx=h.spacing_zyx,
        origin_lps=h.origin_lps,
        direction=h.direction,
        warnings=h.warnings,
        kind=volume_file_kind(h.shape_zyx[0]),
    )
    if h.count <= 1:
        return info
    parts = tuple(
        replace(info, uid=path if t == 0 else f"{path}#{t + 1}", volume_index=t, description=f"{name} [{t + 1}]")
        for t in range(h.count)
    )
    note = f"4D set: {h.count} volumes of {'×'.join(map(str, h.shape_zyx))} along the fourth dimension"
    return replace(
        info,
        kind=SET_4D,
        warnings=(note, *h.warnings),
        parts=parts,
        dimension="volume",
        part_labels=tuple(f"volume {t + 1}" for t in range(h.count)),
    )


def _series_sort_key(s: SeriesInfo) -> tuple:
    return (
        s.study.patient_id,
        s.study.study_date,
        s.study.study_uid,
        s.number if s.number is not None else 1 << 30,
        s.uid,
    )


def _no_images_reason(path: str | os.PathLike, result: ScanResult) -> str:
    if os.path.isfile(path) and len(result.skipped) == 1:
        return result.skipped[0].reason
    return f"no images found ({len(result.skipped)} files skipped)"
