"""A minimal header reader for plain, uncompressed DICOM slices: where the pixels are and how to read them.

pydicom spends about a millisecond per file building a Dataset; for a 300-slice CT that is most of
the load time. This reader walks the elements of little-endian (explicit or implicit VR) files with
``struct`` (nested sequences are skipped, not parsed), keeps the dozen top-level values the loader
needs, and stops at PixelData, so the caller can ``readinto`` the pixels straight into its array.
Anything unusual (another transfer syntax, no preamble, functional groups, a modality LUT, colour,
a malformed element) returns None and the caller uses pydicom, which also words the error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"))
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHUNK = 16384
_MAX_HEADER = 1 << 22  # a header larger than 4 MiB is not "plain"; pydicom may read it

# Top-level tags whose presence means the file needs pydicom's full reading.
_NEEDS_PYDICOM = frozenset(
    (
        0x52009229,  # SharedFunctionalGroupsSequence
        0x52009230,  # PerFrameFunctionalGroupsSequence
        0x00283000,  # ModalityLUTSequence
        0x7FE00008,  # FloatPixelData
        0x7FE00009,  # DoubleFloatPixelData
    )
)
_US = {
    0x00280002: "samples",
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280100: "bits_allocated",
    0x00280101: "bits_stored",
    0x00280103: "pixel_representation",
}
_TEXT = {
    0x00280004: "photometric",
    0x00280008: "frames",
    0x00200032: "position",
    0x00200037: "orientation",
    0x00280030: "pixel_spacing",
    0x00281052: "intercept",
    0x00281053: "slope",
    0x00200013: "instance",
    0x00180050: "thickness",
    0x00180088: "spacing_between",
}


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


class _Malformed(Exception):
    pass


def read_native_header(path: str) -> NativeHeader | None:
    """The header of a plain little-endian monochrome file, or None when pydicom must read it."""
    try:
        with open(path, "rb", buffering=0) as fp:
            reader = _Reader(fp)
            return reader.header()
    except (OSError, _Malformed, struct.error, ValueError, UnicodeDecodeError):
        return None


class _Reader:
    def __init__(self, fp):
        self.fp = fp
        self.buf = fp.read(_CHUNK)

    def need(self, end: int) -> None:
        while end > len(self.buf):
            if len(self.buf) >= _MAX_HEADER:
                raise _Malformed
            more = self.fp.read(max(_CHUNK, end - len(self.buf)))
            if not more:
                raise _Malformed
            self.buf += more

    def header(self) -> NativeHeader | None:
        if len(self.buf) < 144 or self.buf[128:132] != b"DICM":
            return None
        # File meta (group 0002) is always explicit VR little endian.
        pos = 132
        syntax = None
        while True:
            self.need(pos + 8)
            group, element = struct.unpack_from("<HH", self.buf, pos)
            if group != 0x0002:
                break
            pos, length, value_at = self._explicit_element(pos)
            if element == 0x0010:
                self.need(value_at + length)
                syntax = self.buf[value_at : value_at + length].rstrip(b"\0 ").decode("ascii")
        if syntax not in (EXPLICIT_LE, IMPLICIT_LE):
            return None
        values: dict[str, object] = {}
        explicit = syntax == EXPLICIT_LE
        while True:
            self.need(pos + 8)
            group, element = struct.unpack_from("<HH", self.buf, pos)
            tag = group << 16 | element
            if tag in _NEEDS_PYDICOM:
                return None
            if explicit:
                next_pos, length, value_at = self._explicit_element(pos)
            else:
                (length,) = struct.unpack_from("<I", self.buf, pos + 4)
                value_at = pos + 8
                next_pos = value_at + length
            if tag == _PIXEL_DATA:
                if length == _UNDEFINED:
                    return None
                return self._finish(values, value_at, length)
            if length == _UNDEFINED:
                next_pos = self._skip_sequence(value_at, explicit)
            elif tag in _US or tag in _TEXT:
                self.need(value_at + length)
                raw = self.buf[value_at : value_at + length]
                if tag in _US:
                    if length < 2:
                        raise _Malformed
                    values[_US[tag]] = struct.unpack_from("<H", raw)[0]
                else:
                    values[_TEXT[tag]] = raw.decode("ascii").strip("\0 ")
            pos = next_pos

    def _explicit_element(self, pos: int) -> tuple[int, int, int]:
        """(next position, value length, value position) of the explicit-VR element at ``pos``."""
        self.need(pos + 12)
        tag = struct.unpack_from("<HH", self.buf, pos)
        if tag[0] == 0xFFFE:  # item and delimiters have no VR
            (length,) = struct.unpack_from("<I", self.buf, pos + 4)
            return pos + 8 + (0 if length == _UNDEFINED else length), length, pos + 8
        vr = bytes(self.buf[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", self.buf, pos + 8)
            value_at = pos + 12
        elif vr.isalpha() and vr.isupper():
            (length,) = struct.unpack_from("<H", self.buf, pos + 6)
            value_at = pos + 8
        else:
            raise _Malformed
        return value_at + (0 if length == _UNDEFINED else length), length, value_at

    def _skip_sequence(self, pos: int, explicit: bool) -> int:
        """Position after an undefined-length sequence (or element) starting at ``pos``."""
        while True:
            self.need(pos + 8)
            tag = struct.unpack_from("<HH", self.buf, pos)
            tag = tag[0] << 16 | tag[1]
            (length,) = struct.unpack_from("<I", self.buf, pos + 4)
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM:
                raise _Malformed
            pos += 8
            if length != _UNDEFINED:
                pos += length
                continue
            pos = self._skip_item(pos, explicit)

    def _skip_item(self, pos: int, explicit: bool) -> int:
        """Position after an undefined-length item's delimiter."""
        while True:
            self.need(pos + 8)
            group, element = struct.unpack_from("<HH", self.buf, pos)
            tag = group << 16 | element
            if tag == _ITEM_END:
                return pos + 8
            if explicit:
                next_pos, length, value_at = self._explicit_element(pos)
            else:
                (length,) = struct.unpack_from("<I", self.buf, pos + 4)
                value_at = pos + 8
                next_pos = value_at + length
            pos = self._skip_sequence(value_at, explicit) if length == _UNDEFINED else next_pos

    def _finish(self, v: dict, offset: int, length: int) -> NativeHeader | None:
        samples = v.get("samples", 1)
        photometric = str(v.get("photometric", "")).upper()
        allocated = v.get("bits_allocated")
        if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or allocated not in (8, 16):
            return None
        rows, columns = v.get("rows"), v.get("columns")
        stored = v.get("bits_stored", allocated)
        if not rows or not columns or not 0 < stored <= allocated:
            return None
        frames = _int(v.get("frames"), 1)
        slope = _float(v.get("slope"), 1.0)
        intercept = _float(v.get("intercept"), 0.0)
        if frames < 1 or slope == 0:
            return None
        return NativeHeader(
            rows=rows,
            columns=columns,
            frames=frames,
            bits_allocated=allocated,
            bits_stored=stored,
            signed=v.get("pixel_representation", 0) == 1,
            monochrome1=photometric == "MONOCHROME1",
            slope=slope,
            intercept=intercept,
            position=_floats(v.get("position"), 3),
            orientation=_floats(v.get("orientation"), 6),
            pixel_spacing=_floats(v.get("pixel_spacing"), 2),
            instance=_int(v.get("instance"), None),
            fallback_spacing_z=_fallback(v),
            pixel_offset=offset,
            pixel_length=length,
        )


def _floats(text, count: int):
    """Backslash-separated numbers; a malformed value makes the file one for pydicom."""
    if text is None or text == "":
        return None
    parts = str(text).split("\\")
    if len(parts) != count:
        raise _Malformed
    return tuple(float(p) for p in parts)


def _float(text, default: float) -> float:
    return default if text in (None, "") else float(text)


def _int(text, default):
    if text in (None, ""):
        return default
    number = float(text)
    if not number.is_integer():
        raise _Malformed
    return int(number)


def _fallback(v: dict) -> float | None:
    for key in ("spacing_between", "thickness"):
        text = v.get(key)
        if text not in (None, ""):
            value = abs(float(text))
            if value:
                return value
    return None
