# Over 500 lines on purpose: reading a tree and grouping its headers into series are one job (Skipped, split rules).
"""What is in a file, a folder or a DICOMDIR: series found from headers only, and what was skipped why.

``iter_scan`` is the long job (yields ``Progress``, honours a cancel event); ``scan`` runs it to the
end; ``describe`` is one line of ``radlens info --json`` (docs/architecture.md, "Command line") and never raises.

A series is one stack on one grid, the unit the loader reads: files of one SeriesInstanceUID are
split into several stacks (uid suffixed ".2", ".3", ...) when orientation, size or pixel spacing
differ, or when the same positions repeat across acquisitions, echoes or temporal positions. Files in
each stack are in slice order along the normal, with spacing and origin from ImagePositionPatient.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings as pywarnings
from collections import Counter
from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pydicom
import SimpleITK as sitk

from radlens.imaging.dicom_headers import Header, StackGeometry, read_header, stack_geometry
from radlens.imaging.dicom_native import SNIFF_BYTES, sniff
from radlens.imaging.errors import ImagingError, RadlensError
from radlens.imaging.progress import Progress, check_cancel, run_to_end, run_with_progress
from radlens.imaging.series import SeriesInfo
from radlens.imaging.volume import StudyInfo
from radlens.imaging.volume_io import _header_modality, is_volume_file

# Header reads are handed to threads in chunks; bench/info.py measured what pays (see its docstring).
CHUNK = 32
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


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
    """The detached data file a MetaImage (.mhd) or NRRD (.nhdr) header names, as an absolute path."""
    lower = path.lower()
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
    """A NIfTI/NRRD/MetaImage file as one series, from its header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "unreadable")
        raise ImagingError(path, f"cannot read volume: {first}") from None
    dim = reader.GetDimension()
    size, spacing, origin = reader.GetSize(), reader.GetSpacing(), reader.GetOrigin()
    direction = np.asarray(reader.GetDirection()).reshape(dim, dim)
    warnings: list[str] = []
    if dim == 2:
        size, spacing, origin = (*size, 1), (*spacing, 1.0), (*origin, 0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    elif dim > 3:
        warnings.append(f"{dim}-D image: only the first 3-D volume is shown (size {'×'.join(map(str, size))})")
        size, spacing, origin = size[:3], spacing[:3], origin[:3]
        direction = direction[:3, :3]
    name = os.path.basename(path)
    return SeriesInfo(
        uid=path,
        modality=_header_modality(reader),
        description=name,
        study=StudyInfo(),
        files=(path,),
        shape_zyx=(int(size[2]), int(size[1]), int(size[0])),
        spacing_zyx=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_lps=tuple(float(v) for v in origin),
        direction=direction,
        warnings=tuple(warnings),
    )


# -- grouping ----------------------------------------------------------------------------------


@dataclass
class _Stack:
    """One grid's worth of headers before it becomes a SeriesInfo."""

    headers: list[Header]
    multiframe: bool = False
    note: str = ""  # what sets this stack apart from its siblings (acquisition 2, echo 1, ...)
    warnings: list[str] = field(default_factory=list)


def group_series(headers: list[Header]) -> tuple[list[SeriesInfo], list[Skipped]]:
    """Group headers into stacks (one SeriesInfo each); duplicates that cannot be placed are skipped.

    Files without a SeriesInstanceUID group by study, modality, series and acquisition number and
    geometry, each such group under a made-up (stable) UID.
    """
    groups: dict[tuple, list[Header]] = {}
    for h in headers:
        key = (
            (h.series_uid,)
            if h.series_uid
            else ("", h.study.study_uid, h.modality, h.series_number, h.acquisition_number)
        )
        groups.setdefault(key, []).append(h)
    out: list[SeriesInfo] = []
    skipped: list[Skipped] = []
    for key, members in groups.items():
        if key[0]:
            parts = [(key[0], members, [])]
        else:
            note = "no SeriesInstanceUID: grouped by study, modality, series and acquisition number and geometry"
            singles = [h for h in members if h.frames == 1 and not h.enhanced]
            pieces = _geometry_clusters(singles) + [[h] for h in members if h.frames > 1 or h.enhanced]
            parts = [(uid := _made_up_uid(key, p), p, [f"{note} (uid {uid} made up)"]) for p in pieces]
        for uid, part, notes in parts:
            infos, dropped = _series_of(uid, part, notes)
            out.extend(infos)
            skipped.extend(dropped)
    return out, skipped


def _series_of(uid: str, members: list[Header], notes: list[str]) -> tuple[list[SeriesInfo], list[Skipped]]:
    """The stacks of one SeriesInstanceUID: the largest keeps the uid, the others get ".2", ".3", ..."""
    stacks: list[_Stack] = []
    clusters = _geometry_clusters([h for h in members if h.frames == 1 and not h.enhanced])
    for cluster in clusters:
        stacks.extend(_split_repeats(cluster))
    stacks.extend(_Stack([h], multiframe=True) for h in members if h.frames > 1 or h.enhanced)
    split_reason = _split_reason(clusters, stacks) if len(stacks) > 1 else ""
    out, skipped = [], []
    for i, stack in enumerate(stacks):
        warnings = list(notes)
        if split_reason:
            warnings.append(f"series {uid} split into {len(stacks)} stacks ({split_reason}); this is stack {i + 1}")
        info, dropped = _stack_to_series(stack, uid if i == 0 else f"{uid}.{i + 1}", warnings)
        out.append(info)
        skipped.extend(dropped)
    return out, skipped


def _geometry_clusters(headers: list[Header]) -> list[list[Header]]:
    """Headers that share orientation (±0.001), size and pixel spacing (±0.1 %), largest cluster first."""
    clusters: list[list[Header]] = []
    for h in headers:
        for cluster in clusters:
            if _same_grid(cluster[0], h):
                cluster.append(h)
                break
        else:
            clusters.append([h])
    clusters.sort(key=lambda c: -len(c))
    return clusters


def _same_grid(a: Header, b: Header) -> bool:
    # Plain Python, not np.allclose: this runs for every file, and numpy's per-call overhead dominated.
    if (a.rows, a.columns) != (b.rows, b.columns):
        return False
    oa, ob = a.geometry.orientation, b.geometry.orientation
    if (oa is None) != (ob is None) or (oa is not None and any(abs(x - y) > 1e-3 for x, y in zip(oa, ob, strict=True))):
        return False
    sa, sb = a.geometry.pixel_spacing, b.geometry.pixel_spacing
    return (sa is None) == (sb is None) and (
        sa is None or all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(sa, sb, strict=True))
    )


def _split_repeats(cluster: list[Header]) -> list[_Stack]:
    """One stack, or several when positions repeat and acquisition/echo/temporal position tell them apart."""
    if not all(h.geometry.positions is not None for h in cluster):
        return [_Stack(cluster)]
    along = _along_normal(cluster)
    if len(np.unique(np.round(along, 3))) == len(cluster):
        return [_Stack(cluster)]
    for label, attr in (
        ("acquisition", "acquisition_number"),
        ("echo", "echo_number"),
        ("temporal position", "temporal_position"),
    ):
        parts: dict[object, list[Header]] = {}
        for h in cluster:
            parts.setdefault(getattr(h, attr), []).append(h)
        if len(parts) > 1 and all(len(np.unique(np.round(_along_normal(p), 3))) == len(p) for p in parts.values()):
            ordered = sorted(parts.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0))
            return [_Stack(p, note=f"{label} {k}") for k, p in ordered]
    return [_Stack(cluster)]


def _along_normal(headers: list[Header]) -> np.ndarray:
    o = headers[0].geometry.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    normal = np.cross(o[:3], o[3:])
    return np.array([h.geometry.positions[0] @ normal for h in headers])


def _split_reason(clusters: list[list[Header]], stacks: list[_Stack]) -> str:
    reasons = []
    heads = [c[0] for c in clusters]
    orientations = list(dict.fromkeys(_orientation_name(h.geometry.orientation) for h in heads))
    if len(orientations) > 3:  # name the kinds only, or the line gets unreadable
        kinds = Counter(name.split(" (")[0] for name in orientations)
        orientations = [kind if n == 1 else f"{n} {kind}" for kind, n in kinds.items()]
    if len(orientations) > 1:
        reasons.append(f"orientations differ: {', '.join(orientations)}")
    sizes = {(h.rows, h.columns) for h in heads}
    if len(sizes) > 1:
        reasons.append("sizes differ: " + ", ".join(f"{r}×{c}" for r, c in sorted(sizes)))
    spacings = {tuple(np.round(h.geometry.pixel_spacing, 4)) if h.geometry.pixel_spacing else None for h in heads}
    if len(spacings) > 1:
        reasons.append(
            "pixel spacings differ: " + ", ".join("none" if s is None else f"{s[0]:g}×{s[1]:g} mm" for s in spacings)
        )
    notes = [s.note for s in stacks if s.note]
    if notes:
        reasons.append("positions repeat across " + ", ".join(notes))
    multiframe = sum(s.multiframe for s in stacks)
    if multiframe:
        reasons.append(f"{multiframe} multi-frame image(s), each its own stack")
    return "; ".join(reasons) or "stacks differ"


def _orientation_name(orientation) -> str:
    """axial / coronal / sagittal within ~8°, else oblique with its row and column cosines."""
    if orientation is None:
        return "no orientation"
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    axis = int(np.argmax(normal))
    if normal[axis] > 0.99:
        return ("sagittal", "coronal", "axial")[axis]
    row = " ".join(f"{round(v, 2) + 0.0:.2f}" for v in orientation[:3])  # + 0.0: no "-0.00"
    col = " ".join(f"{round(v, 2) + 0.0:.2f}" for v in orientation[3:])
    return f"oblique (row {row}, column {col})"


def _stack_to_series(stack: _Stack, uid: str, warnings: list[str]) -> tuple[SeriesInfo, list[Skipped]]:
    first = stack.headers[0]
    g = first.geometry
    skipped: list[Skipped] = []
    if stack.multiframe:
        geo = stack_geometry(g.orientation, g.positions, None, g.fallback_spacing_z, what="frames")
        warnings.extend(g.warnings)
        warnings.extend(geo.warnings)
        if g.positions is not None and list(geo.order) != sorted(geo.order):
            warnings.append("frames are stored out of slice order; they are sorted along the normal when loaded")
        files = (first.path,)
        depth = first.frames
    else:
        headers = stack.headers
        geo, headers, dropped = _order_slices(headers)
        skipped.extend(dropped)
        if dropped:
            warnings.append(
                f"duplicate positions: {len(dropped)} file(s) repeat the position of another slice; "
                "the first file at each position is kept, the others are listed as skipped"
            )
        warnings.extend(geo.warnings)
        files = tuple(headers[i].path for i in geo.order)
        depth = len(files)
    if g.pixel_spacing is None:
        warnings.append("no PixelSpacing in the header: 1 mm pixels assumed")
    spacing_yx = g.pixel_spacing or (1.0, 1.0)
    info = SeriesInfo(
        uid=uid,
        modality=first.modality,
        description=first.description,
        study=first.study,
        files=files,
        shape_zyx=(depth, first.rows, first.columns),
        spacing_zyx=(geo.spacing_z, float(spacing_yx[0]), float(spacing_yx[1])),
        origin_lps=geo.origin_lps,
        direction=geo.direction,
        warnings=tuple(warnings),
        number=first.series_number,
        frames_per_file=first.frames if stack.multiframe else 1,
    )
    return info, skipped


def _order_slices(headers: list[Header]) -> tuple[StackGeometry, list[Header], list[Skipped]]:
    """Order single-frame slices; drop files repeating a position (they would stack twice)."""
    g = headers[0].geometry
    with_position = [h for h in headers if h.geometry.positions is not None]
    positions = np.array([h.geometry.positions[0] for h in headers]) if len(with_position) == len(headers) else None
    numbers = [h.instance_number for h in headers]
    fallback = next((h.geometry.fallback_spacing_z for h in headers if h.geometry.fallback_spacing_z), None)
    geo = stack_geometry(g.orientation, positions, numbers, fallback)
    if positions is None and with_position and len(headers) > 1:
        extra = f"{len(headers) - len(with_position)} of {len(headers)} slices have no ImagePositionPatient"
        geo = StackGeometry(geo.order, geo.spacing_z, geo.origin_lps, geo.direction, (extra, *geo.warnings), ())
    if not geo.duplicates:
        return geo, headers, []
    keep_index = [i for i in geo.order if i not in set(geo.duplicates)]
    position_of = {i: n for n, i in enumerate(geo.order)}
    dropped = []
    for i in geo.duplicates:
        twin = geo.order[position_of[i] - 1]
        while twin in geo.duplicates:
            twin = geo.order[position_of[twin] - 1]
        dropped.append(
            Skipped(headers[i].path, f"same position as {os.path.basename(headers[twin].path)} in its series")
        )
    kept = [headers[i] for i in keep_index]
    geo = stack_geometry(g.orientation, positions[keep_index], [numbers[i] for i in keep_index], fallback)
    return geo, kept, dropped


def _made_up_uid(key: tuple, members: list[Header]) -> str:
    """A stable, valid UID (2.25 root) for files without a SeriesInstanceUID."""
    # From the files' own SOPInstanceUIDs (or names), so that the same files read from another
    # mount point or as a relative path get the same uid.
    first = min(h.sop_instance or os.path.basename(h.path) for h in members)
    digest = hashlib.sha1(repr((key, first)).encode()).hexdigest()
    return f"2.25.{int(digest[:30], 16)}"


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
