"""DICOM pixels → one ``Volume`` (design section 2): modality values, LPS geometry, middle slice first.

The series' files are decoded into one preallocated ``(z, y, x)`` array, slice by slice, so the
peak memory stays near the volume's own size. Plain little-endian monochrome data (the common case,
and what bench/load.py measures) skips pydicom's Dataset and decoders: :mod:`imaging.dicom_native`
finds where the pixels start and they are ``readinto`` their slice of the array; the integer
rescale is then applied once, in place, over the whole array (a fractional one goes straight into
float32, slice by slice). Everything else (big endian, deflate, JPEG, JPEG-LS, JPEG 2000, RLE, odd
bit depths, colour, palette) goes through pydicom's pixel handlers: the pylibjpeg plugins, pydicom's
own, Pillow, and GDCM last (it aborts the process on some corrupt streams).

The middle slice is read first and handed out as a :class:`SlicePreview` so that a viewer shows
something at once; the rest fills in while the job yields ``Progress`` and checks its cancel event.
Geometry (order, spacing from positions, gaps, shear) comes from :mod:`imaging.dicom_headers`,
the same code discovery uses.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radlens.imaging.dicom_headers import frame_geometry, stack_geometry, study_info
from radlens.imaging.dicom_native import NativeHeader, read_native_header
from radlens.imaging.errors import GeometryError, ImagingError, NotAnImageError, RadlensError, UnsupportedError
from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.series import SeriesInfo
from radlens.imaging.volume import Volume, Window

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Refuse volumes that cannot fit in memory before allocating them (a lying header must not kill us).
_MEMORY_FRACTION = 0.6


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
    files = tuple(str(f) for f in series.files)
    if not files:
        raise ImagingError(series.uid or "series", "no files in the series")
    what = f"loading {series.description or series.uid or files[0]}"
    try:
        if len(files) == 1:
            result = yield from _load_multiframe(files[0], cancel, what)
        else:
            result = yield from _load_stack(files, cancel, what)
    except RadlensError:
        raise
    except Exception as err:  # a corrupt value pydicom only trips over late: still the file's fault, one line
        where = files[0] if len(files) == 1 else f"{source or os.path.dirname(files[0])} ({len(files)} files)"
        raise ImagingError(where, f"unreadable DICOM: {type(err).__name__}: {_one_line(err)}") from None
    array, geometry, ds, invert, files_in_order, warnings = result
    windows = _windows(ds)
    study = series.study if series.study.study_uid or series.study.patient_name else study_info(ds)
    return Volume(
        array=array,
        spacing_zyx=geometry.spacing_zyx,
        origin_lps=geometry.origin_lps,
        direction=geometry.direction,
        modality=(series.modality or str(ds.get("Modality", "") or "OT")).upper(),
        series_uid=series.uid or str(ds.get("SeriesInstanceUID", "") or ""),
        description=series.description or " ".join(str(ds.get("SeriesDescription", "") or "").split()),
        study=study,
        windows=windows,
        invert=invert,
        source=str(source if source is not None else files[0]),
        files=files_in_order,
        warnings=_unique((*series.warnings, *warnings)),
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

    Plain uncompressed slices are read straight into the array (:mod:`imaging.dicom_native`);
    any other file goes through pydicom, so one odd file does not slow the rest down.
    """
    n = len(files)
    mid = n // 2
    layout = read_native_header(files[mid])
    if layout is not None and layout.frames != 1:
        layout = None
    slab: _Slab | None = None
    geometries: list[_SliceGeometry | None] = [None] * n

    def read(z: int, path: str) -> Dataset | None:
        nonlocal slab
        header = read_native_header(path) if layout is not None else None
        if header is not None and header.layout == layout.layout:
            if slab is None:
                slab = _Slab.for_native(path, header, n)
            slab.read_native(z, path, header)
            geometries[z] = _SliceGeometry(
                header.orientation, header.position, header.instance, header.fallback_spacing_z
            )
            return None
        ds = read_dataset(path)
        if _frames(path, ds) != 1:
            raise GeometryError(path, "a multi-frame image inside a stack of single-frame slices")
        _check_header_size(path, ds, n)
        frame = _to_display_colour(_decode_frames(path, ds)[0])
        if slab is None:
            slab = _Slab.allocate(path, frame, n)
        slab.put(z, frame, path, _slope_intercept(ds))
        g = frame_geometry(_header_only(ds), path, 1)
        position = None if g.positions is None else tuple(float(v) for v in g.positions[0])
        number = _int_or_none(ds.get("InstanceNumber"))
        geometries[z] = _SliceGeometry(g.orientation, position, number, g.fallback_spacing_z, g.warnings)
        return ds

    header_ds = read(mid, files[mid])
    if header_ds is None:  # read natively: pydicom reads this one header for windows, names, study
        header_ds = _read_header_dataset(files[mid])
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


def _read_header_dataset(path: str) -> Dataset:
    """The header of one file for what the Volume carries besides pixels (windows, study, names)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        _convert_all(ds)
        return ds
    except Exception as err:  # it parsed a moment ago; a file changing underneath us is still the file's fault
        raise ImagingError(path, f"unreadable DICOM: {_one_line(err)}") from None


def _is_monochrome1(ds: Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"


def _load_multiframe(path: str, cancel, what: str):
    """One file: a single image, a classic multi-frame or an enhanced CT/MR with functional groups.

    Plain uncompressed frames are read from the file straight into their slices (the pixel bytes
    are never held twice); other encodings are decoded frame by frame by pydicom.
    """
    located = _header_with_pixel_location(path)
    ds = located[0] if located is not None else read_dataset(path)
    native = located[1] if located is not None else None
    n = _frames(path, ds)
    geometry = frame_geometry(ds, path, n)
    stack = stack_geometry(geometry.orientation, geometry.positions, [None] * n, geometry.fallback_spacing_z, "frames")
    order = list(stack.order)
    rescales = _frame_rescales(ds, n)
    mid_z = n // 2
    mid_frame = order[mid_z]
    z_of = {frame: z for z, frame in enumerate(order)}
    if native is not None:
        slab = _Slab.for_native(path, native, n, rescales)
        slab.read_native(mid_z, path, native, frame=mid_frame, rescale=rescales[mid_frame])
    else:
        _check_header_size(path, ds, n)
        first = _to_display_colour(_decode_frames(path, ds, index=mid_frame)[0])
        slab = _Slab.allocate(path, first, n)
        slab.put(mid_z, first, path, rescales[mid_frame])
    yield Progress(1, n, what, preview=SlicePreview(mid_z, slab.modality_slice(mid_z), n))

    step = max(1, n // 100)
    done = 1
    frames = range(n) if native is not None else enumerate(_iter_decoded(path, ds, n))
    for item in frames:
        check_cancel(cancel, what)
        i, frame = (item, None) if native is not None else item
        if i == mid_frame:
            continue
        if native is not None:
            slab.read_native(z_of[i], path, native, frame=i, rescale=rescales[i])
        else:
            slab.put(z_of[i], _to_display_colour(frame), path, rescales[i])
        done += 1
        if done % step == 0 or done == n:
            yield Progress(done, n, what)
    check_cancel(cancel, what)
    grid = _grid(stack, geometry.pixel_spacing)
    array = slab.finish()
    return array, grid, ds, _is_monochrome1(ds) and array.ndim == 3, (path,), [*geometry.warnings, *stack.warnings]


def _header_with_pixel_location(path: str) -> tuple[Dataset, NativeHeader] | None:
    """The header of a file whose pixels are plain little-endian monochrome, and where they start.

    None for anything else (compressed, big endian, deflated, colour, float): pydicom decodes those.
    """
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            force = not (len(head) == 132 and head[128:132] == b"DICM")
            if force and head[:2] not in (b"\x08\x00", b"\x02\x00"):
                return None
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=force)
            at = fp.tell()
            element = fp.read(12)
        _convert_all(ds)
    except Exception:  # read_dataset reads it again and words the error
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) or len(element) < 8:
        return None
    if struct.unpack_from("<HH", element) != (0x7FE0, 0x0010):
        return None
    if syntax == ExplicitVRLittleEndian:
        if element[4:6] not in (b"OB", b"OW") or len(element) < 12:
            return None
        (length,) = struct.unpack_from("<I", element, 8)
        offset = at + 12
    else:
        (length,) = struct.unpack_from("<I", element, 4)
        offset = at + 8
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        rows, columns, allocated = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", allocated) or allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (AttributeError, TypeError, ValueError):
        return None
    if length == 0xFFFFFFFF or samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    if allocated not in (8, 16) or not 0 < stored <= allocated or rows < 1 or columns < 1:
        return None
    frames = _frames(path, ds)
    header = NativeHeader(
        rows=rows,
        columns=columns,
        frames=frames,
        bits_allocated=allocated,
        bits_stored=stored,
        signed=signed,
        monochrome1=photometric == "MONOCHROME1",
        slope=1.0,
        intercept=0.0,
        position=None,
        orientation=None,
        pixel_spacing=None,
        instance=None,
        fallback_spacing_z=None,
        pixel_offset=offset,
        pixel_length=length,
    )
    return ds, header


def _grid(stack, pixel_spacing) -> _Grid:
    sy, sx = pixel_spacing if pixel_spacing is not None else (1.0, 1.0)
    return _Grid((float(stack.spacing_z), float(sy), float(sx)), stack.origin_lps, stack.direction)


# -- the array being filled --------------------------------------------------------------------


class _Slab:
    """The preallocated stored values plus each slice's rescale; finished into modality values once.

    Monochrome slices keep their stored integers until :meth:`finish`, which applies the rescale
    in place (int16 when that is lossless) or into float32. Colour slices are final RGB uint8.
    """

    def __init__(self, array: np.ndarray, rows: int, columns: int):
        self.array = array
        self.rows, self.columns = rows, columns
        n = array.shape[0]
        self.slopes = np.ones(n)
        self.intercepts = np.zeros(n)
        self.lows = np.zeros(n)
        self.highs = np.zeros(n)
        self.colour = array.ndim == 4
        self.scratch: np.ndarray | None = None

    @classmethod
    def allocate(cls, path: str, frame: np.ndarray, n: int) -> _Slab:
        """Room for ``n`` slices like ``frame`` (colour: RGB uint8; floats: float32; integers: as stored)."""
        shape = (n, *frame.shape)
        if frame.ndim == 3:
            dtype = np.dtype(np.uint8)
        elif frame.dtype.kind == "f":
            dtype = np.dtype(np.float32)
        else:
            dtype = frame.dtype.newbyteorder("=")
        _check_fits_memory(path, shape, max(dtype.itemsize, 1 if frame.ndim == 3 else 2))
        return cls(np.empty(shape, dtype=dtype), frame.shape[0], frame.shape[1])

    @classmethod
    def for_native(cls, path: str, header: NativeHeader, n: int, rescales=()) -> _Slab:
        """Room for ``n`` plain slices: their stored integers, or float32 when a rescale is fractional.

        With a fractional slope or intercept (MR, PET) each slice is read into a one-slice scratch
        buffer and rescaled into the float32 array at once, so the stored values never exist twice.
        """
        stored = np.dtype(f"{'i' if header.signed else 'u'}{header.bits_allocated // 8}")
        shape = (n, header.rows, header.columns)
        values = [v for pair in (*rescales, (header.slope, header.intercept)) for v in pair]
        fractional = not all(float(v).is_integer() for v in values)
        dtype = np.dtype(np.float32) if fractional else stored
        _check_fits_memory(path, shape, max(dtype.itemsize, 2))
        slab = cls(np.empty(shape, dtype=dtype), header.rows, header.columns)
        if fractional:
            slab.scratch = np.empty(shape[1:], dtype=stored)
        return slab

    def read_native(
        self, z: int, path: str, header: NativeHeader, frame: int = 0, rescale: tuple[float, float] | None = None
    ) -> None:
        """Read frame ``frame`` of a plain file from disk straight into slice ``z``."""
        target = self.array[z] if self.scratch is None else self.scratch
        nbytes = target.nbytes
        if header.pixel_length < nbytes * (frame + 1):
            raise ImagingError(
                path,
                f"pixel data is shorter than Rows×Columns×Frames ({header.pixel_length} of "
                f"{nbytes * header.frames} bytes)",
            )
        view = memoryview(target).cast("B")
        got = 0
        try:
            with open(path, "rb", buffering=0) as fp:
                fp.seek(header.pixel_offset + frame * nbytes)
                while got < nbytes:
                    count = fp.readinto(view[got:])
                    if not count:
                        break
                    got += count
        except OSError as err:
            raise ImagingError(path, f"cannot read: {err.strerror or err}") from None
        if got < nbytes:
            raise ImagingError(path, f"truncated: pixel data needs {nbytes} bytes, the file holds {got} of them")
        if sys.byteorder != "little":
            target.byteswap(inplace=True)
        if header.bits_stored < header.bits_allocated:
            shift = header.bits_allocated - header.bits_stored
            np.left_shift(target, shift, out=target)
            np.right_shift(target, shift, out=target)
        slope, intercept = rescale if rescale is not None else (header.slope, header.intercept)
        if self.scratch is not None:
            np.multiply(target, np.float32(slope), out=self.array[z], casting="unsafe")
            self.array[z] += np.float32(intercept)
            slope, intercept = 1.0, 0.0
        self.slopes[z], self.intercepts[z] = slope, intercept
        self.lows[z], self.highs[z] = float(target.min()), float(target.max())

    def put(self, z: int, frame: np.ndarray, path: str, rescale: tuple[float, float]) -> None:
        if frame.shape[:2] != (self.rows, self.columns) or (frame.ndim == 3) != self.colour:
            size = "×".join(str(v) for v in frame.shape)
            want = "×".join(str(v) for v in self.array.shape[1:])
            raise GeometryError(path, f"slice of {size} pixels in a stack of {want} (mixed sizes)")
        if not self.colour:
            kind = self.array.dtype.kind
            if frame.dtype.kind == "f" and kind != "f":
                self.array = self.array.astype(np.float32)
            elif kind != "f" and not np.can_cast(frame.dtype, self.array.dtype, "safe"):
                self.array = self.array.astype(np.result_type(frame.dtype, self.array.dtype))
            self.slopes[z], self.intercepts[z] = rescale
            self.lows[z], self.highs[z] = float(frame.min()), float(frame.max())
        self.array[z] = frame

    def modality_slice(self, z: int) -> np.ndarray:
        image = self.array[z]
        if self.colour:
            return image.copy()
        return _rescaled(image, self.slopes[z], self.intercepts[z])

    def reorder(self, order: list[int]) -> None:
        """Put the slices in ``order`` (only when the given file order contradicts the positions)."""
        self.array = self.array[order]
        for name in ("slopes", "intercepts", "lows", "highs"):
            setattr(self, name, getattr(self, name)[order])

    def finish(self) -> np.ndarray:
        """The modality values: the rescale applied in place (int16 when lossless), else float32."""
        a = self.array
        if self.colour:
            return a
        slopes, intercepts = self.slopes, self.intercepts
        out_lo = np.minimum(self.lows * slopes, self.highs * slopes) + intercepts
        out_hi = np.maximum(self.lows * slopes, self.highs * slopes) + intercepts
        integral = (
            a.dtype.kind in "iu"
            and np.all(slopes == slopes[0])
            and float(slopes[0]).is_integer()
            and np.all(np.mod(intercepts, 1) == 0)
            and out_lo.min() >= -32768
            and out_hi.max() <= 32767
        )
        if integral:
            if a.dtype.itemsize == 2 and (a.dtype.kind == "i" or self.highs.max() <= 32767):
                a = a.view(np.int16)  # uint16 below 32768 reads the same as int16: rescale in place
            slope = int(slopes[0])
            if a.dtype != np.int16:
                out = np.empty(a.shape, dtype=np.int16)
                for z in range(a.shape[0]):
                    out[z] = a[z].astype(np.int32) * slope + int(intercepts[z])
                return out
            if slope != 1:
                np.multiply(a, slope, out=a)
            if np.all(intercepts == intercepts[0]):
                if intercepts[0]:
                    np.add(a, int(intercepts[0]), out=a)
            else:
                a += intercepts.astype(np.int16)[:, None, None]
            return a
        if a.dtype == np.float32 and np.all(slopes == 1) and np.all(intercepts == 0):
            return a
        out = np.empty(a.shape, dtype=np.float32)
        chunk = max(1, (1 << 22) // max(1, a[0].size))
        for z0 in range(0, a.shape[0], chunk):
            z1 = min(a.shape[0], z0 + chunk)
            np.multiply(a[z0:z1], slopes[z0:z1, None, None].astype(np.float32), out=out[z0:z1], casting="unsafe")
            out[z0:z1] += intercepts[z0:z1, None, None].astype(np.float32)
        return out


def _rescaled(image: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if float(slope).is_integer() and float(intercept).is_integer() and image.dtype.kind in "iu":
        out = image.astype(np.int32) * int(slope) + int(intercept)
        if out.min() >= -32768 and out.max() <= 32767:
            return out.astype(np.int16)
        return out.astype(np.float32)
    return (image.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _check_header_size(path: str, ds: Dataset, n: int) -> None:
    """Refuse what the header says is too big before a decoder tries to allocate it."""
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise ImagingError(path, f"invalid Rows/Columns {ds.get('Rows')!r}×{ds.get('Columns')!r}") from None
    if rows < 1 or columns < 1:
        raise ImagingError(path, f"invalid image size {rows}×{columns}")
    _check_fits_memory(path, (n, rows, columns, samples), 4)


def _check_fits_memory(path: str, shape: tuple[int, ...], itemsize: int) -> None:
    need = int(np.prod(shape, dtype=np.int64)) * itemsize
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > _MEMORY_FRACTION * total:
        dims = "×".join(str(v) for v in shape)
        raise ImagingError(path, f"image of {dims} pixels needs {need / 2**30:.1f} GiB, more than this machine has")


# -- one file ----------------------------------------------------------------------------------


def read_dataset(path: str) -> Dataset:
    """The whole data set of one file, with a transfer syntax even when the file meta is missing."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            force = not (len(head) == 132 and head[128:132] == b"DICM")
            if force and head[:2] not in (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02"):
                raise NotAnImageError(path, "not a DICOM file")
            fp.seek(0)
            ds = pydicom.dcmread(fp, force=force)
            _convert_all(ds)
    except ImagingError:
        raise
    except OSError as err:
        raise ImagingError(path, f"cannot read: {err.strerror or err}") from None
    except InvalidDicomError:
        raise NotAnImageError(path, "not a DICOM file") from None
    except Exception as err:  # pydicom raises many kinds on broken files; each is the file's fault
        raise ImagingError(path, f"unreadable DICOM: {_one_line(err)}") from None
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if ds.get("Rows") and ds.get("Columns"):
            raise ImagingError(path, "no pixel data (truncated file?)")
        raise NotAnImageError(path, "no image in this DICOM file")
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if not meta.get("TransferSyntaxUID"):
        implicit, little = getattr(ds, "original_encoding", (False, True))
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def _convert_all(ds: Dataset) -> None:
    """Convert every element now: pydicom converts lazily, and a corrupt value would otherwise raise
    wherever it is first read, far from the file's name."""
    ds.walk(lambda _ds, _elem: None)


def _header_only(ds: Dataset) -> Dataset:
    """Drop the pixel bytes of a data set once its slice is in the slab (keeps the peak memory low)."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    return ds


def _frames(path: str, ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        number = float(value)
        if not number.is_integer() or number < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ImagingError(path, f"invalid NumberOfFrames {str(value)!r}") from None
    return int(number)


def _int_or_none(value) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))


def _native_frames(path: str, ds: Dataset, frames: int) -> np.ndarray | None:
    """All frames as a (frames, rows, columns) view on the PixelData bytes, for plain monochrome data.

    None when the data needs pydicom's decoder (compressed, colour, float, odd bit depths).
    """
    ts = _transfer_syntax(ds)
    if ts.is_compressed or "PixelData" not in ds:
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        allocated = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", allocated) or allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    except (AttributeError, TypeError, ValueError):
        return None
    if samples != 1 or allocated not in (8, 16, 32) or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    if not 0 < stored <= allocated or rows < 1 or columns < 1:
        return None
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder("<" if ts.is_little_endian else ">")
    count = rows * columns * frames
    data = ds.PixelData
    if len(data) < count * dtype.itemsize:
        raise ImagingError(
            path,
            f"pixel data is shorter than Rows×Columns×Frames ({len(data)} of {count * dtype.itemsize} bytes)",
        )
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(frames, rows, columns)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    if stored < allocated:
        array = np.array(array)  # writable copy: clear the unused high bits (sign-extending signed data)
        shift = allocated - stored
        np.left_shift(array, shift, out=array)
        np.right_shift(array, shift, out=array)
    return array


def _decode_frames(path: str, ds: Dataset, index: int | None = None) -> np.ndarray:
    """Frames of one file as (frames, rows, columns[, 3]); the native fast path when it applies."""
    if index is None:
        native = _native_frames(path, ds, _frames(path, ds))
        if native is not None:
            return native
    array = _decode_with_plugins(path, ds, _transfer_syntax(ds), index)
    colour = int(ds.get("SamplesPerPixel", 1) or 1) == 3
    frame_ndim = 3 if colour else 2
    if array.ndim == frame_ndim:
        array = array[np.newaxis]
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR" and not colour:
        try:
            array = np.stack([_palette(f, ds) for f in array])
        except Exception as err:
            raise ImagingError(path, f"cannot apply the palette colour table: {_one_line(err)}") from None
    return array


# GDCM goes last, and only when no other plugin can decode the syntax at all: on a corrupt stream it
# throws a C++ exception that aborts the whole process instead of raising (found by fuzzing).
_PLUGIN_ORDER = ("pylibjpeg", "pydicom", "pillow", "gdcm")


def _decode_with_plugins(path: str, ds: Dataset, ts: UID, index: int | None) -> np.ndarray:
    """pydicom's decoders, one plugin at a time, so that a broken stream never reaches GDCM."""
    name = ts.name or str(ts)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedError(path, f"unknown transfer syntax {str(ts)!r}") from None
    if not ts.is_encapsulated:
        try:
            return decoder.as_array(ds, index=index)[0]
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as err:
            raise ImagingError(path, f"cannot read pixel data ({name}): {_one_line(err)}") from None
    available = decoder.available_plugins
    if not available:
        raise UnsupportedError(path, f"cannot decode {name}: no decoder for it is installed")
    plugins = sorted(available, key=lambda p: _PLUGIN_ORDER.index(p) if p in _PLUGIN_ORDER else len(_PLUGIN_ORDER))
    failures: list[tuple[str, BaseException]] = []
    for plugin in plugins:
        if plugin == "gdcm" and not all(_unsupported(err) for _, err in failures):
            break  # another decoder read the stream and found it broken: do not hand it to GDCM
        try:
            return decoder.as_array(ds, index=index, decoding_plugin=plugin)[0]
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as err:  # plugins raise anything on a broken stream; Rust ones panic
            failures.append((plugin, err))
    text = "; ".join(f"{plugin}: {_one_line(err)}" for plugin, err in failures)
    if all(_unsupported(err) for _, err in failures):
        raise UnsupportedError(path, f"cannot decode {name}: {text}")
    raise ImagingError(path, f"cannot decode pixel data ({name}): {text}")


def _unsupported(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, NotImplementedError) or "not support" in text or "unsupported" in text


def _iter_decoded(path: str, ds: Dataset, n: int):
    """Every frame of a compressed (or otherwise non-native) file, in file order."""
    ts = _transfer_syntax(ds)
    if not ts.is_encapsulated:
        yield from _decode_frames(path, ds)
        return
    for i in range(n):
        yield _decode_frames(path, ds, index=i)[0]


def _palette(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    return _rgb8(apply_color_lut(frame, ds))


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    high = 16 if rgb.max(initial=0) > 255 else 8
    return (rgb >> (high - 8)).astype(np.uint8) if high > 8 else rgb.astype(np.uint8)


def _to_display_colour(frame: np.ndarray) -> np.ndarray:
    """Colour frames become RGB uint8; monochrome frames pass unchanged."""
    return _rgb8(frame) if frame.ndim == 3 else frame


def _slope_intercept(item: Dataset | None) -> tuple[float, float]:
    if item is None:
        return 1.0, 0.0
    try:
        slope = float(item.get("RescaleSlope", 1) or 1)
        intercept = float(item.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return 1.0, 0.0
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(intercept):
        return 1.0, 0.0
    return slope, intercept


def _frame_rescales(ds: Dataset, n: int) -> list[tuple[float, float]]:
    """Per-frame rescale of enhanced images (PixelValueTransformationSequence), else the top level's."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    shared_item = _first(shared.get("PixelValueTransformationSequence")) if shared is not None else None
    default = _slope_intercept(shared_item) if shared_item is not None else _slope_intercept(ds)
    if len(per_frame) != n:
        return [default] * n
    out = []
    for item in per_frame:
        transform = _first(item.get("PixelValueTransformationSequence"))
        out.append(_slope_intercept(transform) if transform is not None else default)
    return out


def _windows(ds: Dataset) -> tuple[Window, ...]:
    """The VOI windows in the header (top level, else the enhanced FrameVOILUTSequence)."""
    sources = [ds]
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        item = _first(ds.get(group))
        if item is not None:
            sources.append(_first(item.get("FrameVOILUTSequence")))
    for src in sources:
        if src is None or src.get("WindowCenter") is None or src.get("WindowWidth") is None:
            continue
        try:
            centres = _as_list(src.WindowCenter)
            widths = _as_list(src.WindowWidth)
        except (TypeError, ValueError):
            continue
        windows = tuple(Window(w, c) for c, w in zip(centres, widths, strict=False) if w > 0)
        if windows:
            return windows
    return ()


def _as_list(value) -> list[float]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [float(value)]
    return [float(v) for v in value]


def _first(seq):
    return seq[0] if seq else None


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _one_line(err: BaseException) -> str:
    """An exception as one short line (pydicom embeds whole tracebacks in some messages: cut them)."""
    text = " ".join(str(err).split("Traceback (most recent call last)")[0].split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
