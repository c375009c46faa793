"""The DICOM fast path, all in one place: a ``struct`` header walker instead of pydicom's Dataset,
the pixel-data locator, and the sniff that says whether a file is DICOM at all.

pydicom spends about a millisecond per file building a Dataset; for a 300-slice CT that is most of
the time to open a folder and to load it. :func:`walk_header` walks the top-level elements of a
file whose data set is little endian (explicit or implicit VR, and the compressed syntaxes, whose
data set is explicit VR: only their pixel data is encapsulated), skips nested sequences without
parsing them, keeps the raw bytes of the fields in :data:`FIELDS` and stops where the pixel data
starts. Discovery builds its headers from that (:mod:`radlens.imaging.dicom_headers`); the loader reads
plain monochrome pixels from the offset (:func:`read_native_header`).

Anything unusual returns None and the caller uses pydicom, which also words the error: no preamble,
big endian, deflate, a private transfer syntax, tags out of order, a field of :data:`FIELDS` with
another VR than the dictionary's or non-ASCII text (a character set), no pixel data before the end.

The switch: ``RADLENS_DICOM_FAST=0`` in the environment (read once, at import) sets :data:`FAST`
to False; then :func:`walk_header` and :func:`read_native_header` always return None, so discovery
reads every header with pydicom and the loader decodes every pixel with pydicom's decoders. Tests
flip :data:`FAST` itself. :func:`sniff` and :func:`locate_pixels` serve the pydicom route too and
are not switched: they only decide whether pydicom is given the file and where its pixels lie.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID, AllTransferSyntaxes

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = frozenset((0x7FE00008, 0x7FE00009, PIXEL_DATA))  # float, double float, integer pixels

FAST = os.environ.get("RADLENS_DICOM_FAST", "1").strip() != "0"

# Every header field RadLens reads from a file; discovery asks pydicom for the same list when the
# walker gives up, so the two readers cannot drift apart.
FIELDS = (
    # what discovery groups, orders and names series by
    "MediaStorageSOPClassUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "PatientName",
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "AcquisitionNumber",
    "InstanceNumber",
    "EchoNumbers",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "DiffusionBValue",
    # frames over time (what makes a cine)
    "FrameTime",
    "FrameTimeVector",
    "CineRate",
    "RecommendedDisplayFrameRate",
    # the grid
    "Rows",
    "Columns",
    "NumberOfFrames",
    "ImageOrientationPatient",
    "PatientOrientation",
    "ImagePositionPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "GridFrameOffsetVector",
    "EstimatedRadiographicMagnificationFactor",
    # how the pixels are stored and rescaled (the loader)
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    # sequences: only their presence is kept (functional groups, a modality LUT need pydicom)
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "ModalityLUTSequence",
    "SequenceOfUltrasoundRegions",
)
FIELD_TAGS = tuple(tag_for_keyword(k) for k in FIELDS)
_FIELD_OF_TAG = {tag: (k, dictionary_VR(k)) for k, tag in zip(FIELDS, FIELD_TAGS, strict=True)}
_VR_OF = dict(_FIELD_OF_TAG.values())

# Value representations whose bytes are plain ASCII numbers, codes or UIDs, and free text that no
# character set can change while it is plain ASCII: both decoded directly, several times cheaper
# than pydicom's general conversion (measured with bench/info.py).
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
TEXT_VRS = frozenset({"LO", "SH", "PN", "ST", "LT"})

_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"))
_EXPLICIT = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_TAG = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TRANSFER_SYNTAX = 0x00020010
_CHUNK = 16384
_MAX_HEADER = 1 << 22  # a header larger than 4 MiB is not "plain"; pydicom may read it
# Top-level fields whose presence means the loader needs pydicom's full reading: an enhanced object's
# frames are described in its functional groups; a modality LUT maps stored values by a table.
FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
_LOADER_NEEDS_PYDICOM = ("ModalityLUTSequence",)


UNDECODED = object()  # what decode() returns for a value only pydicom can convert
# How a DICOM data set without the 128-byte preamble starts: group 0002 (file meta) or 0008, in
# either byte order. Anything else is not handed to pydicom at all (it would parse garbage).
_BARE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
SNIFF_BYTES = 132


def sniff(head: bytes) -> bool | None:
    """Whether pydicom must be forced to read a file that starts with ``head`` (its first
    :data:`SNIFF_BYTES` bytes): False with the DICM preamble, True for a bare data set, None when
    the file is no DICOM at all."""
    if len(head) >= SNIFF_BYTES and head[128:132] == b"DICM":
        return False
    return True if head[:2] in _BARE_STARTS else None


class PixelElement(NamedTuple):
    """Where a file's pixel data element lies: its tag (None when no element follows the header),
    where its value starts and its length (:data:`UNDEFINED_LENGTH` when encapsulated)."""

    tag: int | None
    offset: int
    length: int


_PIXEL_LONG_VRS = frozenset((b"OB", b"OW", b"OF", b"OD", b"UN", b"OV", b"OL"))


def locate_pixels(fp: BinaryIO, little_endian: bool) -> PixelElement:
    """The element at ``fp``'s position, where ``dcmread(fp, stop_before_pixels=True)`` stopped."""
    at = fp.tell()
    head = fp.read(12)
    endian = "<" if little_endian else ">"
    if len(head) < 8:
        return PixelElement(None, at, 0)
    group, elem = struct.unpack(endian + "HH", head[:4])
    tag, vr = group << 16 | elem, head[4:6]
    if not (vr.isalpha() and vr.isupper()):  # implicit VR (also when the meta header claims explicit)
        return PixelElement(tag, at + 8, struct.unpack(endian + "I", head[4:8])[0])
    if vr in _PIXEL_LONG_VRS and len(head) == 12:
        return PixelElement(tag, at + 12, struct.unpack(endian + "I", head[8:12])[0])
    return PixelElement(tag, at + 8, struct.unpack(endian + "H", head[6:8])[0])


def decode(raw: bytes, vr: str, little_endian: bool = True):
    """A raw value as RadLens reads it: ASCII fields as str (a list of str when multi-valued), plain
    ASCII text as str, a single US as int, FD as float (a list when multi-valued); ``UNDECODED`` when
    pydicom must convert it."""
    if vr in ASCII_VRS:
        parts = [p.strip(" \0") for p in raw.decode("latin-1").split("\\")]
        return parts[0] if len(parts) == 1 else parts
    if vr in TEXT_VRS and raw.isascii():
        return raw.decode("ascii").strip(" \0")
    if vr == "US" and len(raw) == 2:
        return struct.unpack("<H" if little_endian else ">H", raw)[0]
    if vr == "FD" and raw and len(raw) % 8 == 0:
        values = struct.unpack(f"{'<' if little_endian else '>'}{len(raw) // 8}d", raw)
        return values[0] if len(values) == 1 else list(values)
    return UNDECODED


@dataclass(frozen=True)
class RawHeader:
    """The fields of :data:`FIELDS` one file holds (raw bytes) and where its pixel data lies."""

    transfer_syntax: str
    elements: dict[str, bytes]  # keyword → value as stored; a sequence's value is empty, its presence counts
    pixels: PixelElement  # PixelData, FloatPixelData or DoubleFloatPixelData
    file_size: int

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.elements

    def value(self, keyword: str):
        """Decoded as :func:`decode` does; None when absent. The walker let only decodable values in."""
        raw = self.elements.get(keyword)
        return None if raw is None else decode(raw, _VR_OF[keyword])


class _Unusual(Exception):
    """The file needs pydicom."""


def walk_header(path: str) -> RawHeader | None:
    """The header fields of a file with a little-endian data set, or None when pydicom must read it
    (always None when :data:`FAST` is off)."""
    if not FAST:
        return None
    try:
        with open(path, "rb", buffering=0) as fp:
            return _Walker(fp).walk(os.fstat(fp.fileno()).st_size)
    except (OSError, _Unusual, struct.error, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class NativeHeader:
    """What the loader needs from one plain monochrome slice; ``pixel_offset`` is where its pixels start."""

    rows: int
    columns: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    monochrome1: bool
    slope: float
    intercept: float
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    instance: int | None
    fallback_spacing_z: float | None
    pixel_offset: int
    pixel_length: int

    @property
    def layout(self) -> tuple:
        """Slices with equal layouts go into one array the same way."""
        return (self.rows, self.columns, self.frames, self.bits_allocated, self.bits_stored, self.signed)


def read_native_header(path: str, functional_groups: bool = False) -> NativeHeader | None:
    """The header of a plain little-endian monochrome file whose pixels can be read as they are
    stored, or None when pydicom must read it (compressed, colour, float, a modality LUT...).

    ``functional_groups`` admits enhanced objects, for a caller that takes each frame's rescale
    and position from the functional groups itself (the header's own would be wrong).
    """
    raw = walk_header(path)
    if raw is None or raw.transfer_syntax not in (EXPLICIT_LE, IMPLICIT_LE) or raw.pixels.tag != PIXEL_DATA:
        return None
    needs_pydicom = _LOADER_NEEDS_PYDICOM if functional_groups else (*_LOADER_NEEDS_PYDICOM, *FUNCTIONAL_GROUPS)
    if raw.pixels.length == UNDEFINED_LENGTH or any(k in raw for k in needs_pydicom):
        return None
    try:
        return _native_header(raw)
    except (_Unusual, ValueError, TypeError):
        return None


def _native_header(raw: RawHeader) -> NativeHeader | None:
    v = raw.value
    photometric = str(v("PhotometricInterpretation") or "").upper()
    allocated = v("BitsAllocated")
    if (v("SamplesPerPixel") or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    if allocated not in (8, 16):
        return None
    rows, columns = v("Rows"), v("Columns")
    stored = v("BitsStored") or allocated
    if not rows or not columns or not 0 < stored <= allocated:
        return None
    frames = _int(v("NumberOfFrames"), 1)
    slope = _float(v("RescaleSlope"), 1.0)
    intercept = _float(v("RescaleIntercept"), 0.0)
    if frames < 1 or slope == 0:
        return None
    return NativeHeader(
        rows=rows,
        columns=columns,
        frames=frames,
        bits_allocated=allocated,
        bits_stored=stored,
        signed=v("PixelRepresentation") == 1,
        monochrome1=photometric == "MONOCHROME1",
        slope=slope,
        intercept=intercept,
        position=_floats(v("ImagePositionPatient"), 3),
        orientation=_floats(v("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(v("PixelSpacing"), 2),
        instance=_int(v("InstanceNumber"), None),
        fallback_spacing_z=_fallback(v),
        pixel_offset=raw.pixels.offset,
        pixel_length=raw.pixels.length,
    )


class _Walker:
    def __init__(self, fp):
        self.fp = fp
        self.buf = fp.read(_CHUNK)

    def need(self, end: int) -> None:
        while end > len(self.buf):
            if len(self.buf) >= _MAX_HEADER:
                raise _Unusual
            more = self.fp.read(max(_CHUNK, end - len(self.buf)))
            if not more:
                raise _Unusual
            self.buf += more

    def walk(self, size: int) -> RawHeader | None:
        if len(self.buf) < 144 or sniff(self.buf) is not False:
            return None
        elements: dict[str, bytes] = {}
        syntax = ""
        # File meta (group 0002) is always explicit VR little endian.
        pos, last = 132, -1
        while True:
            if pos + 8 > len(self.buf):
                self.need(pos + 8)
            group, element = _TAG.unpack_from(self.buf, pos)
            if group != 0x0002:
                break
            tag = group << 16 | element
            if tag <= last:
                raise _Unusual
            next_pos, vr, length, value_at = self._explicit_element(pos)
            if tag in _FIELD_OF_TAG:
                self._keep(elements, tag, vr, length, value_at)
            elif tag == _TRANSFER_SYNTAX:
                self.need(value_at + length)
                syntax = self.buf[value_at : value_at + length].rstrip(b"\0 ").decode("ascii")
            last, pos = tag, next_pos
        if syntax not in AllTransferSyntaxes or not _little_endian_data_set(syntax):
            return None
        explicit = syntax != IMPLICIT_LE
        while True:
            if pos + 8 > len(self.buf):
                self.need(pos + 8)
            group, element = _TAG.unpack_from(self.buf, pos)
            tag = group << 16 | element
            if explicit:
                next_pos, vr, length, value_at = self._explicit_element(pos)
            else:
                (length,) = _U32.unpack_from(self.buf, pos + 4)
                vr, value_at = None, pos + 8
                next_pos = value_at + (0 if length == UNDEFINED_LENGTH else length)
            if tag <= last:
                raise _Unusual  # tags out of order: the walk has lost its way, or the file is odd
            if tag in PIXEL_TAGS:
                return RawHeader(syntax, elements, PixelElement(tag, value_at, length), size)
            if tag in _FIELD_OF_TAG:
                self._keep(elements, tag, vr, length, value_at)
            if length == UNDEFINED_LENGTH:
                next_pos = self._skip_sequence(value_at, explicit)
            last, pos = tag, next_pos

    def _keep(self, elements: dict, tag: int, vr: bytes | None, length: int, value_at: int) -> None:
        """Keep the value of a field of FIELDS, when this module can decode it."""
        keyword, expected_vr = _FIELD_OF_TAG[tag]
        if vr is not None and vr.decode("ascii") != expected_vr:
            raise _Unusual  # e.g. UN after an anonymiser: pydicom converts it by the dictionary
        if expected_vr == "SQ":
            elements[keyword] = b""
            return
        if length == UNDEFINED_LENGTH:
            raise _Unusual
        self.need(value_at + length)
        value = self.buf[value_at : value_at + length]
        if (
            (expected_vr in TEXT_VRS and not value.isascii())
            or (expected_vr == "US" and length != 2)
            or (expected_vr == "FD" and (not length or length % 8))
        ):
            raise _Unusual  # a character set to apply, or a value pydicom words better
        elements[keyword] = value

    def _explicit_element(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(next position, VR, value length, value position) of the explicit-VR element at ``pos``."""
        if pos + 12 > len(self.buf):
            self.need(pos + 12)
        group, _, vr, length = _EXPLICIT.unpack_from(self.buf, pos)
        if group == 0xFFFE:  # item and delimiters have no VR
            (length,) = _U32.unpack_from(self.buf, pos + 4)
            return pos + 8 + (0 if length == UNDEFINED_LENGTH else length), None, length, pos + 8
        if vr in _LONG_VRS:
            (length,) = _U32.unpack_from(self.buf, pos + 8)
            value_at = pos + 12
        elif vr.isalpha() and vr.isupper():
            value_at = pos + 8
        else:
            raise _Unusual
        return value_at + (0 if length == UNDEFINED_LENGTH else length), vr, length, value_at

    def _skip_sequence(self, pos: int, explicit: bool) -> int:
        """Position after an undefined-length sequence (or element) starting at ``pos``."""
        while True:
            if pos + 8 > len(self.buf):
                self.need(pos + 8)
            tag = _TAG.unpack_from(self.buf, pos)
            tag = tag[0] << 16 | tag[1]
            (length,) = _U32.unpack_from(self.buf, pos + 4)
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM:
                raise _Unusual
            pos += 8
            if length != UNDEFINED_LENGTH:
                pos += length
                continue
            pos = self._skip_item(pos, explicit)

    def _skip_item(self, pos: int, explicit: bool) -> int:
        """Position after an undefined-length item's delimiter."""
        while True:
            if pos + 8 > len(self.buf):
                self.need(pos + 8)
            group, element = _TAG.unpack_from(self.buf, pos)
            tag = group << 16 | element
            if tag == _ITEM_END:
                return pos + 8
            if explicit:
                next_pos, _, length, value_at = self._explicit_element(pos)
            else:
                (length,) = _U32.unpack_from(self.buf, pos + 4)
                value_at = pos + 8
                next_pos = value_at + length
            pos = self._skip_sequence(value_at, explicit) if length == UNDEFINED_LENGTH else next_pos


@functools.lru_cache(maxsize=64)
def _little_endian_data_set(syntax: str) -> bool:
    """Implicit or explicit VR little endian, compressed or not; not big endian, not deflated."""
    uid = UID(syntax)
    return uid.is_little_endian and not uid.is_deflated


def _floats(value, count: int):
    """Backslash-separated numbers; a malformed value makes the file one for pydicom."""
    if value is None or value == "":
        return None
    parts = [value] if isinstance(value, str) else value
    if len(parts) != count:
        raise _Unusual
    return tuple(float(p) for p in parts)


def _float(value, default: float) -> float:
    return default if value in (None, "") else float(value)


def _int(value, default):
    if value in (None, ""):
        return default
    number = float(value)
    if not number.is_integer():
        raise _Unusual
    return int(number)


def _fallback(v) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = v(keyword)
        if value not in (None, ""):
            spacing = abs(float(value))
            if spacing:
                return spacing
    return None
