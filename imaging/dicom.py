"""DICOM pixels → one ``Volume``: modality values, LPS geometry, middle slice first.

The conventions are those of docs/architecture.md, "Conventions".

The series' files are decoded into one preallocated ``(z, y, x)`` array, slice by slice, so the
peak memory stays near the volume's own size. Plain little-endian monochrome data (the common case,
and what bench/load.py measures) skips pydicom's Dataset and decoders: :mod:`radlens.imaging.dicom_native`
finds where the pixels start and they are ``readinto`` their slice of the array; the integer
rescale is then applied once, in place, over the whole array (a fractional one goes straight into
float32, slice by slice). Everything else (big endian, deflate, JPEG, JPEG-LS, JPEG 2000, RLE, odd
bit depths, colour, palette, a Modality LUT Sequence) goes through pydicom's pixel handlers
(:mod:`radlens.imaging.dicom_pixels`); so does everything when the fast path is switched off
(``RADLENS_DICOM_FAST=0``, see :mod:`radlens.imaging.dicom_native`).

The middle slice is read first and handed out as a :class:`SlicePreview` so that a viewer shows
something at once; the rest fills in while the job yields ``Progress`` and checks its cancel event.
Geometry (order, spacing from positions, gaps, shear) comes from :mod:`radlens.imaging.dicom_headers`,
the same code discovery uses. The display's VOI (windows with their VOILUTFunction, and a VOI LUT
Sequence's tables) is carried on the Volume for :mod:`radlens.imaging.windowing`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut

from radlens.imaging.dicom_headers import frame_geometry, study_info
from radlens.imaging.dicom_native import FUNCTIONAL_GROUPS, read_native_header
from radlens.imaging.dicom_pixels import (
    Slab,
    check_header_size,
    decode_frames,
    first,
    frame_count,
    frame_rescales,
    header_only,
    iter_decoded,
    one_line,
    read_dataset,
    slope_intercept,
    to_display_colour,
)
from radlens.imaging.errors import GeometryError, ImagingError, RadlensError
from radlens.imaging.kinds import without_slice_notes
from radlens.imaging.presentation import presentation_of
from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.series import SeriesInfo
from radlens.imaging.stack_geometry import stack_geometry
from radlens.imaging.volume import VoiLut, Volume, Window


@dataclass(frozen=True)
class SlicePreview:
    """The first slice ready for display: slice ``index`` of ``total``, in modality values (a copy)."""

    index: int
    image: np.ndarray
    total: int


def iter_load_series(
    series: SeriesInfo, cancel: threading.Event | None = None, *, source: str | None = None
) -> Generator[Progress, None, Volume]:
    """Decode a series (files in slice order, as discovery gives them) into a Volume.

    Yields a Progress with a :class:`SlicePreview` of the middle slice first, then one per few
    slices; raises ``imaging.progress.Cancelled`` when ``cancel`` is set.
    """
    if series.parts:  # a 4D set: its first part (the viewer offers the others on a slider)
        volume = yield from iter_load_series(series.parts[0], cancel, source=source)
        note = f"4D set of {len(series.parts)} stacks by {series.dimension}: {series.part_labels[0]} shown"
        return dataclasses.replace(volume, warnings=_unique((note, *volume.warnings)))
    files = tuple(str(f) for f in series.files)
    if not files:
        raise ImagingError(series.uid or "series", "no files in the series")
    what = f"loading {series.description or series.uid or files[0]}"
    try:
        if len(files) == 1:
            result = yield from _load_multiframe(files[0], cancel, what, series.frames)
        else:
            result = yield from _load_stack(files, cancel, what)
    except RadlensError:
        raise
    except Exception as err:  # a corrupt value pydicom only trips over late: still the file's fault, one line
        where = files[0] if len(files) == 1 else f"{source or os.path.dirname(files[0])} ({len(files)} files)"
        raise ImagingError(where, f"unreadable DICOM: {type(err).__name__}: {one_line(err)}") from None
    array, geometry, ds, invert, files_in_order, warnings = result
    study = series.study if series.study.study_uid or series.study.patient_name else study_info(ds)
    fg = frame_geometry(ds, files[0], frame_count(files[0], ds))
    presentation = presentation_of(ds, series.kind, array.shape[0], fg)
    return Volume(
        array=array,
        spacing_zyx=geometry.spacing_zyx,
        origin_lps=geometry.origin_lps,
        direction=geometry.direction,
        modality=(series.modality or str(ds.get("Modality", "") or "OT")).upper(),
        series_uid=series.uid or str(ds.get("SeriesInstanceUID", "") or ""),
        description=series.description or " ".join(str(ds.get("SeriesDescription", "") or "").split()),
        study=study,
        windows=_windows(ds),
        voi_luts=_voi_luts(files[0], ds),
        invert=invert,
        source=str(source if source is not None else files[0]),
        files=files_in_order,
        warnings=_unique(without_slice_notes(series.kind, (*series.warnings, *warnings))),
        presentation=presentation,
    )


# -- the two shapes of a series ----------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: np.ndarray


@dataclass(frozen=True)
class _SliceGeometry:
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    instance: int | None
    fallback_spacing_z: float | None
    warnings: tuple[str, ...] = ()


def _load_stack(files: Sequence[str], cancel, what: str):
    """Single-frame files, one per slice, in the given order (verified against positions).

    Plain uncompressed slices are read straight into the array (:mod:`radlens.imaging.dicom_native`);
    any other file goes through pydicom, so one odd file does not slow the rest down.
    """
    n = len(files)
    mid = n // 2
    layout = read_native_header(files[mid])
    if layout is not None and layout.frames != 1:
        layout = None
    slab: Slab | None = None
    geometries: list[_SliceGeometry | None] = [None] * n

    def read(z: int, path: str) -> Dataset | None:
        nonlocal slab
        header = read_native_header(path) if layout is not None else None
        if header is not None and header.layout == layout.layout:
            if slab is None:
                slab = Slab.for_native(path, header, n)
            slab.read_native(z, path, header)
            geometries[z] = _SliceGeometry(
                header.orientation, header.position, header.instance, header.fallback_spacing_z
            )
            return None
        ds = read_dataset(path)
        if frame_count(path, ds) != 1:
            raise GeometryError(path, "a multi-frame image inside a stack of single-frame slices")
        check_header_size(path, ds, n)
        frame = to_display_colour(decode_frames(path, ds)[0])
        if slab is None:
            slab = Slab.allocate(path, frame, n)
        slab.put(z, frame, path, slope_intercept(ds))
        g = frame_geometry(header_only(ds), path, 1)
        position = None if g.positions is None else tuple(float(v) for v in g.positions[0])
        number = _int_or_none(ds.get("InstanceNumber"))
        geometries[z] = _SliceGeometry(g.orientation, position, number, g.fallback_spacing_z, g.warnings)
        return ds

    header_ds = read(mid, files[mid])
    if header_ds is None:  # read natively: pydicom reads this one header for windows, names, study
        header_ds = read_dataset(files[mid], pixels=False)
    preview = SlicePreview(mid, slab.modality_slice(mid), n)
    yield Progress(1, n, what, preview=preview)

    step = max(1, n // 100)
    done = 1
    for z, path in enumerate(files):
        if z == mid:
            continue
        check_cancel(cancel, what)
        read(z, path)
        done += 1
        if done % step == 0 or done == n:
            yield Progress(done, n, what)
    check_cancel(cancel, what)

    orientation = geometries[mid].orientation
    if orientation is not None:
        known = [z for z, g in enumerate(geometries) if g.orientation is not None]
        cosines = np.array([geometries[z].orientation for z in known]).reshape(-1, 6)
        off = np.flatnonzero(np.any(np.abs(cosines - np.asarray(orientation)) > 1e-3, axis=1))
        if len(off):
            raise GeometryError(files[known[off[0]]], "slice orientation differs from the rest of the stack")
    have_positions = all(g.position is not None for g in geometries)
    positions = np.array([g.position for g in geometries]) if have_positions else None
    numbers = [g.instance for g in geometries]
    fallback = next((g.fallback_spacing_z for g in geometries if g.fallback_spacing_z), None)
    stack = stack_geometry(orientation, positions, numbers, fallback)
    order = list(stack.order)
    if order != list(range(n)):
        slab.reorder(order)
        files = [files[i] for i in order]
    grid = _grid(stack, frame_geometry(header_ds, files[0], 1).pixel_spacing)
    warnings = [w for g in geometries for w in g.warnings] + list(stack.warnings)
    array = slab.finish()
    return array, grid, header_ds, _is_monochrome1(header_ds), tuple(files), warnings


def _is_monochrome1(ds: Dataset) -> bool:
    """Shown inverted: MONOCHROME1 (white is the lowest value), or a Presentation LUT Shape INVERSE."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or (photometric == "MONOCHROME2" and shape == "INVERSE")


def _load_multiframe(path: str, cancel, what: str, subset: Sequence[int] = ()):
    """One file: a single image, a classic multi-frame or an enhanced CT/MR with functional groups.

    ``subset``: only these frames (one part of a 4D set), else all. Plain uncompressed frames are
    read from the file straight into their slices (the pixel bytes are never held twice); other
    encodings are decoded frame by frame by pydicom.
    """
    native = read_native_header(path, functional_groups=True)
    ds = read_dataset(path, pixels=native is None)
    total = frame_count(path, ds)
    geometry = frame_geometry(ds, path, total)
    chosen = [f for f in subset if 0 <= f < total] or list(range(total))
    n = len(chosen)
    positions = geometry.positions[chosen] if geometry.positions is not None else None
    stack = stack_geometry(geometry.orientation, positions, [None] * n, geometry.fallback_spacing_z, "frames")
    order = [chosen[i] for i in stack.order]  # file frame numbers in slice order
    rescales = frame_rescales(ds, total)
    mid_z = n // 2
    mid_frame = order[mid_z]
    z_of = {frame: z for z, frame in enumerate(order)}
    if native is not None:
        slab = Slab.for_native(path, native, n, rescales)
        slab.read_native(mid_z, path, native, frame=mid_frame, rescale=rescales[mid_frame])
    else:
        check_header_size(path, ds, n)
        image = to_display_colour(decode_frames(path, ds, index=mid_frame)[0])
        slab = Slab.allocate(path, image, n)
        slab.put(mid_z, image, path, rescales[mid_frame])
    yield Progress(1, n, what, preview=SlicePreview(mid_z, slab.modality_slice(mid_z), n))

    step = max(1, n // 100)
    done = 1
    frames = range(total) if native is not None else enumerate(iter_decoded(path, ds, total, set(chosen)))
    for item in frames:
        check_cancel(cancel, what)
        i, frame = (item, None) if native is not None else item
        if i == mid_frame or i not in z_of:
            continue
        if native is not None:
            slab.read_native(z_of[i], path, native, frame=i, rescale=rescales[i])
        else:
            slab.put(z_of[i], to_display_colour(frame), path, rescales[i])
        done += 1
        if done % step == 0 or done == n:
            yield Progress(done, n, what)
    check_cancel(cancel, what)
    grid = _grid(stack, geometry.pixel_spacing)
    array = slab.finish()
    return array, grid, ds, _is_monochrome1(ds) and array.ndim == 3, (path,), [*geometry.warnings, *stack.warnings]


def _grid(stack, pixel_spacing) -> _Grid:
    sy, sx = pixel_spacing if pixel_spacing is not None else (1.0, 1.0)
    return _Grid((float(stack.spacing_z), float(sy), float(sx)), stack.origin_lps, stack.direction)


def _int_or_none(value) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# -- what the display needs (VOI) --------------------------------------------------------------

_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def _windows(ds: Dataset) -> tuple[Window, ...]:
    """The VOI windows in the header (top level, else the enhanced FrameVOILUTSequence), each with
    the VOILUTFunction that says how to map it (LINEAR when absent or unknown)."""
    sources = [ds]
    for group in FUNCTIONAL_GROUPS:
        item = first(ds.get(group))
        if item is not None:
            sources.append(first(item.get("FrameVOILUTSequence")))
    for src in sources:
        if src is None or src.get("WindowCenter") is None or src.get("WindowWidth") is None:
            continue
        try:
            centres = _as_list(src.WindowCenter)
            widths = _as_list(src.WindowWidth)
        except (TypeError, ValueError):
            continue
        function = str(src.get("VOILUTFunction", "") or "").strip().upper()
        function = function if function in _VOI_FUNCTIONS else "LINEAR"
        windows = tuple(Window(w, c, function) for c, w in zip(centres, widths, strict=False) if w > 0)
        if windows:
            return windows
    return ()


def _voi_luts(path: str, ds: Dataset) -> tuple[VoiLut, ...]:
    """The VOI LUT Sequence's tables, each read by pydicom's ``apply_voi_lut`` over its input range."""
    luts = []
    for index, item in enumerate(ds.get("VOILUTSequence") or ()):
        try:
            count, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
            values = np.arange(first_mapped, first_mapped + (count or 1 << 16))
            table = apply_voi_lut(values, ds, index=index, prefer_lut=True)
        except Exception as err:  # a malformed table is the file's fault, worded in one line
            raise ImagingError(path, f"invalid VOI LUT Sequence item {index + 1}: {one_line(err)}") from None
        explanation = " ".join(str(item.get("LUTExplanation", "") or "").split())
        luts.append(VoiLut(first_mapped, np.asarray(table), bits, explanation))
    return tuple(luts)


def _as_list(value) -> list[float]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [float(value)]
    return [float(v) for v in value]


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
