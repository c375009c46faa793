"""The pixels of one DICOM file through pydicom, and the array a series is decoded into.

:func:`read_dataset` reads a whole file; :func:`decode_frames` decodes its frames with pydicom's
pixel handlers (the pylibjpeg plugins, pydicom's own, Pillow, and GDCM last and only when installed:
it aborts the process on some corrupt streams), applies a Modality LUT Sequence and a palette, and
:class:`Slab` collects the slices into one preallocated array. Plain monochrome files skip all of
this through :mod:`radlens.imaging.dicom_native` (read by :mod:`radlens.imaging.dicom`).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radlens.imaging.dicom_native import SNIFF_BYTES, NativeHeader, sniff
from radlens.imaging.errors import GeometryError, ImagingError, NotAnImageError, UnsupportedError
from radlens.imaging.gzipped import inflated

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Refuse volumes that cannot fit in memory before allocating them (a lying header must not kill us).
_MEMORY_FRACTION = 0.6


# -- one file ----------------------------------------------------------------------------------


def read_dataset(path: str, pixels: bool = True) -> Dataset:
    """The whole data set of one file (without its pixel data when not ``pixels``), with a transfer
    syntax even when the file meta is missing."""
    try:
        with open(inflated(path), "rb") as fp:
            force = sniff(fp.read(SNIFF_BYTES))
            if force is None:
                raise NotAnImageError(path, "not a DICOM file")
            fp.seek(0)
            ds = pydicom.dcmread(fp, force=force, stop_before_pixels=not pixels)
            convert_all(ds)
    except ImagingError:
        raise
    except OSError as err:
        raise ImagingError(path, f"cannot read: {err.strerror or err}") from None
    except InvalidDicomError:
        raise NotAnImageError(path, "not a DICOM file") from None
    except Exception as err:  # pydicom raises many kinds on broken files; each is the file's fault
        raise ImagingError(path, f"unreadable DICOM: {one_line(err)}") from None
    if pixels and not any(k in ds for k in _PIXEL_KEYWORDS):
        sop_class = str(getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        if (ds.get("Rows") and ds.get("Columns")) or "Image Storage" in (UID(sop_class).name or ""):
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


def convert_all(ds: Dataset) -> None:
    """Convert every element now: pydicom converts lazily, and a corrupt value would otherwise raise
    wherever it is first read, far from the file's name."""
    ds.walk(lambda _ds, _elem: None)


def header_only(ds: Dataset) -> Dataset:
    """Drop the pixel bytes of a data set once its slice is in the slab (keeps the peak memory low)."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    return ds


def frame_count(path: str, ds: Dataset) -> int:
    """NumberOfFrames (1 when absent); a value that is no positive integer is the file's error."""
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


def _transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))


# -- decoding ----------------------------------------------------------------------------------


def decode_frames(path: str, ds: Dataset, index: int | None = None) -> np.ndarray:
    """Frames of one file (all, or frame ``index``) as (frames, rows, columns[, 3]).

    Monochrome frames come out as stored values, or as modality values when the file has a Modality
    LUT Sequence (pydicom's ``apply_modality_lut``; :func:`slope_intercept` is then the identity).
    """
    array = _decode_with_plugins(path, ds, _transfer_syntax(ds), index)
    colour = int(ds.get("SamplesPerPixel", 1) or 1) == 3
    frame_ndim = 3 if colour else 2
    if array.ndim == frame_ndim:
        array = array[np.newaxis]
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR" and not colour:
        try:
            array = np.stack([_palette(f, ds) for f in array])
        except Exception as err:
            raise ImagingError(path, f"cannot apply the palette colour table: {one_line(err)}") from None
    elif not colour and has_modality_lut(ds):
        try:
            array = apply_modality_lut(array, ds)
        except Exception as err:
            raise ImagingError(path, f"cannot apply the Modality LUT Sequence: {one_line(err)}") from None
    return array


def has_modality_lut(ds: Dataset) -> bool:
    """A Modality LUT Sequence maps stored values to modality values by a table (instead of a rescale)."""
    return bool(ds.get("ModalityLUTSequence"))


# GDCM goes last, and only when no other plugin can decode the syntax at all: on a corrupt stream it
# throws a C++ exception that aborts the whole process instead of raising (found by fuzzing). It is
# an optional extra (pip install radlens[gdcm]); the pylibjpeg plugins decode every syntax it does.
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
            raise ImagingError(path, f"cannot read pixel data ({name}): {one_line(err)}") from None
    available = decoder.available_plugins
    if not available:
        raise UnsupportedError(path, f"cannot decode {name} ({ts}): no decoder for it is installed{_missing(decoder)}")
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
    text = "; ".join(f"{plugin}: {one_line(err)}" for plugin, err in failures)
    if all(_unsupported(err) for _, err in failures):
        raise UnsupportedError(path, f"cannot decode {name} ({ts}): {text}{_missing(decoder)}")
    raise ImagingError(path, f"cannot decode pixel data ({name}): {text}")


def _missing(decoder) -> str:
    """What pydicom could also decode with, were it installed (GDCM is an optional extra)."""
    missing = "; ".join(decoder.missing_dependencies)
    return f" (not installed: {missing})" if missing else ""


def _unsupported(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, NotImplementedError) or "not support" in text or "unsupported" in text


def iter_decoded(path: str, ds: Dataset, n: int, wanted: set[int] | None = None):
    """Every frame of a file through pydicom, in file order (compressed ones one frame at a time);
    with ``wanted``, a compressed file's other frames are not decoded (None is yielded for them)."""
    ts = _transfer_syntax(ds)
    if not ts.is_encapsulated:
        yield from decode_frames(path, ds)
        return
    for i in range(n):
        yield decode_frames(path, ds, index=i)[0] if wanted is None or i in wanted else None


def _palette(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    return _rgb8(apply_color_lut(frame, ds))


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    high = 16 if rgb.max(initial=0) > 255 else 8
    return (rgb >> (high - 8)).astype(np.uint8) if high > 8 else rgb.astype(np.uint8)


def to_display_colour(frame: np.ndarray) -> np.ndarray:
    """Colour frames become RGB uint8; monochrome frames pass unchanged."""
    return _rgb8(frame) if frame.ndim == 3 else frame


def slope_intercept(item: Dataset | None) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept; the identity when absent, invalid, or after a modality LUT."""
    if item is None or has_modality_lut(item):
        return 1.0, 0.0
    try:
        slope = float(item.get("RescaleSlope", 1) or 1)
        intercept = float(item.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return 1.0, 0.0
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(intercept):
        return 1.0, 0.0
    return slope, intercept


def frame_rescales(ds: Dataset, n: int) -> list[tuple[float, float]]:
    """Per-frame rescale of enhanced images (PixelValueTransformationSequence), else the top level's."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = first(ds.get("SharedFunctionalGroupsSequence"))
    shared_item = first(shared.get("PixelValueTransformationSequence")) if shared is not None else None
    default = slope_intercept(shared_item) if shared_item is not None else slope_intercept(ds)
    if len(per_frame) != n:
        return [default] * n
    out = []
    for item in per_frame:
        transform = first(item.get("PixelValueTransformationSequence"))
        out.append(slope_intercept(transform) if transform is not None else default)
    return out


# -- the array being filled --------------------------------------------------------------------


class Slab:
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
    def allocate(cls, path: str, frame: np.ndarray, n: int) -> Slab:
        """Room for ``n`` slices like ``frame`` (colour: RGB uint8; floats: float32; integers: as stored)."""
        shape = (n, *frame.shape)
        if frame.ndim == 3:
            dtype = np.dtype(np.uint8)
        elif frame.dtype.kind == "f":
            dtype = np.dtype(np.float32)
        else:
            dtype = frame.dtype.newbyteorder("=")
        check_fits_memory(path, shape, max(dtype.itemsize, 1 if frame.ndim == 3 else 2))
        return cls(np.empty(shape, dtype=dtype), frame.shape[0], frame.shape[1])

    @classmethod
    def for_native(cls, path: str, header: NativeHeader, n: int, rescales=None) -> Slab:
        """Room for ``n`` plain slices: their stored integers, or float32 when a rescale is fractional.

        ``rescales`` are the frames' own (functional groups), else the header's applies to all.

        With a fractional slope or intercept (MR, PET) each slice is read into a one-slice scratch
        buffer and rescaled into the float32 array at once, so the stored values never exist twice.
        """
        stored = np.dtype(f"{'i' if header.signed else 'u'}{header.bits_allocated // 8}")
        shape = (n, header.rows, header.columns)
        values = [v for pair in rescales or [(header.slope, header.intercept)] for v in pair]
        fractional = not all(float(v).is_integer() for v in values)
        dtype = np.dtype(np.float32) if fractional else stored
        check_fits_memory(path, shape, max(dtype.itemsize, 2))
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
            with open(path, "rb", buffering=0) as fp:  # a plain file: gzip goes through read_dataset
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


def check_header_size(path: str, ds: Dataset, n: int) -> None:
    """Refuse what the header says is too big before a decoder tries to allocate it."""
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise ImagingError(path, f"invalid Rows/Columns {ds.get('Rows')!r}×{ds.get('Columns')!r}") from None
    if rows < 1 or columns < 1:
        raise ImagingError(path, f"invalid image size {rows}×{columns}")
    check_fits_memory(path, (n, rows, columns, samples), 4)


def check_fits_memory(path: str, shape: tuple[int, ...], itemsize: int) -> None:
    need = int(np.prod(shape, dtype=np.int64)) * itemsize
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > _MEMORY_FRACTION * total:
        dims = "×".join(str(v) for v in shape)
        raise ImagingError(path, f"image of {dims} pixels needs {need / 2**30:.1f} GiB, more than this machine has")


def first(seq):
    return seq[0] if seq else None


def one_line(err: BaseException) -> str:
    """An exception as one short line (pydicom embeds whole tracebacks in some messages: cut them)."""
    text = " ".join(str(err).split("Traceback (most recent call last)")[0].split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
