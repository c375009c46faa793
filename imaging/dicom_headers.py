"""DICOM headers → geometry, shared by discovery (headers only) and the loader (pixels).

One home for: reading the header fields discovery needs without touching pixel data
(:func:`read_header`: :mod:`radlens.imaging.dicom_native`'s walker for plain files, pydicom for the rest,
both reading the same :data:`imaging.dicom_native.FIELDS` through the same checks), the frame
geometry of multi-frame and enhanced objects (:func:`frame_geometry`); ordering a stack of positions
along the slice normal is :mod:`radlens.imaging.stack_geometry`.
Positions decide the order and the spacing; InstanceNumber, SliceThickness and
SpacingBetweenSlices are only fallbacks, and using one says so in a warning.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from radlens.imaging.calibration import calibrate, us_regions
from radlens.imaging.dicom_native import (
    FIELD_TAGS,
    FUNCTIONAL_GROUPS,
    PIXEL_TAGS,
    SNIFF_BYTES,
    UNDECODED,
    UNDEFINED_LENGTH,
    PixelElement,
    RawHeader,
    decode,
    locate_pixels,
    sniff,
    walk_header,
)
from radlens.imaging.errors import ImagingError, NotAnImageError
from radlens.imaging.fourd import frame_parameters
from radlens.imaging.gzipped import inflated
from radlens.imaging.volume import StudyInfo

_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (a DICOMDIR)
# Sequences whose content the header needs (the walker keeps only their presence): pydicom reads them.
NEEDS_PYDICOM = (*FUNCTIONAL_GROUPS, "SequenceOfUltrasoundRegions")


@dataclass(frozen=True)
class FrameGeometry:
    """Where the frames (or slices) of one image lie, as read from the header."""

    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row cosine, column cosine
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) = (y, x) mm
    positions: np.ndarray | None  # (frames, 3) LPS mm, or None when the header has none
    fallback_spacing_z: float | None  # SpacingBetweenSlices or SliceThickness, only without positions
    warnings: tuple[str, ...] = ()
    patient_orientation: bool = False  # the orientation is a projection's PatientOrientation, not a slice's
    calibration: str = ""  # where the pixel size came from, or why there is none (imaging.calibration)


@dataclass(frozen=True)
class Header:
    """The fields of one DICOM file that discovery groups and orders by."""

    path: str
    sop_class: str
    sop_instance: str
    modality: str
    study: StudyInfo
    series_uid: str
    description: str
    series_number: int | None
    acquisition_number: int | None
    instance_number: int | None
    echo_number: int | None
    temporal_position: int | None
    trigger_time: float | None
    b_value: float | None
    timed: bool  # a frame time says the frames are over time (FrameTime, FrameTimeVector, CineRate)
    rows: int
    columns: int
    frames: int
    enhanced: bool  # carries functional groups: one file is one stack
    geometry: FrameGeometry
    # An enhanced object's per-frame parameters that may split repeated positions (imaging.fourd).
    frame_params: dict = field(default_factory=dict)


def read_header(path: str) -> Header:
    """Read one file's header (never its pixels); raise an ``ImagingError`` saying why it is no image.

    Plain files are walked by :func:`radlens.imaging.dicom_native.walk_header` (several times faster than
    pydicom); enhanced objects (functional groups) and anything the walker gives up on go to pydicom.
    A gzip-wrapped file is read from an inflated copy (:func:`radlens.imaging.gzipped.inflated`); the
    header keeps the file's own path.
    """
    raw = walk_header(path)
    if raw is None and (copy := inflated(path)) != path:  # only a file the walker refuses can be a gzip
        raw = walk_header(copy)
    if raw is None or any(k in raw for k in NEEDS_PYDICOM):
        return _read_with_pydicom(path)
    return _header(path, raw, raw.value("MediaStorageSOPClassUID"), raw.pixels, raw.file_size)


def _read_with_pydicom(path: str) -> Header:
    """:func:`read_header` through pydicom.

    Files without the DICM preamble are tried only when they start like a DICOM data set (group
    0002 or 0008), so that a large non-DICOM file is not parsed as garbage.
    """
    try:
        size = os.path.getsize(inflated(path))
        with open(inflated(path), "rb") as fp:
            force = sniff(fp.read(SNIFF_BYTES))
            if force is None:
                raise NotAnImageError(path, "not a DICOM file")
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(FIELD_TAGS), force=force)
            little = getattr(ds, "original_encoding", (None, True))[1] is not False
            pixel = locate_pixels(fp, little)
    except ImagingError:
        raise
    except OSError as err:
        raise ImagingError(path, f"cannot read: {err.strerror or err}") from None
    except Exception as err:  # pydicom raises many kinds on broken files; each is a reason to skip
        raise ImagingError(path, f"unreadable DICOM: {_one_line(err)}") from None
    meta = getattr(ds, "file_meta", None)
    if str(_value(meta, "TransferSyntaxUID") or "") == DeflatedExplicitVRLittleEndian:
        # pydicom parsed an inflated copy: the file position says nothing about where the pixels are.
        pixel = None
    return _header(path, ds, _value(meta, "MediaStorageSOPClassUID"), pixel, size)


def _header(path: str, ds: Dataset | RawHeader, meta_class, pixel: PixelElement | None, size: int) -> Header:
    """The checks and the Header, whichever reader read the fields."""
    meta_class = str(meta_class or "")
    sop_class = str(_value(ds, "SOPClassUID") or meta_class)
    modality = str(_value(ds, "Modality") or "").strip().upper()
    if meta_class == _DIRECTORY_SOP_CLASS:
        raise NotAnImageError(path, "no image (a DICOMDIR: the index of a folder, not an image)")
    if not sop_class and not _value(ds, "Rows"):
        raise NotAnImageError(path, "not a DICOM file")
    _check_pixel_data(path, ds, pixel, size, sop_class, modality)
    return _header_from_dataset(path, ds, sop_class, modality)


def _check_pixel_data(path: str, ds, pixel: PixelElement | None, size: int, sop_class: str, modality: str) -> None:
    """Pixel data present and, when its length is defined, entirely in the file.

    ``pixel`` is None when where the pixel data lies is unknown (a deflated file): then an image
    size is all that is required, and the loader finds out whether the pixels are there.
    """
    has_size = bool(_value(ds, "Rows") and _value(ds, "Columns"))
    if pixel is None and has_size:
        return
    tag, start, length = pixel if pixel is not None else (None, 0, 0)
    if tag not in PIXEL_TAGS:
        if has_size:
            raise ImagingError(path, f"no pixel data (the file ends after {size} bytes; truncated?)")
        raise NotAnImageError(path, f"no image ({_sop_name(sop_class)} / modality {modality or 'none'})")
    if length != UNDEFINED_LENGTH and start + length > size:
        raise ImagingError(
            path, f"truncated: pixel data needs {length} bytes, the file holds {max(0, size - start)} of them"
        )


def _header_from_dataset(path: str, ds: Dataset, sop_class: str, modality: str) -> Header:
    rows = _int(path, ds, "Rows")
    columns = _int(path, ds, "Columns")
    if not rows or not columns:
        raise ImagingError(path, f"invalid image size Rows={_value(ds, 'Rows')!r} Columns={_value(ds, 'Columns')!r}")
    frames = _int(path, ds, "NumberOfFrames")
    if frames is None:
        frames = 1
    if frames < 1:
        raise ImagingError(path, f"invalid NumberOfFrames {_value(ds, 'NumberOfFrames')!r}")
    enhanced = any(k in ds for k in FUNCTIONAL_GROUPS)
    return Header(
        path=path,
        sop_class=sop_class,
        sop_instance=str(_value(ds, "SOPInstanceUID") or ""),
        modality=modality or "OT",
        study=study_info(ds),
        series_uid=str(_value(ds, "SeriesInstanceUID") or "").strip(),
        description=_text(_value(ds, "SeriesDescription")),
        series_number=_int(path, ds, "SeriesNumber", strict=False),
        acquisition_number=_int(path, ds, "AcquisitionNumber", strict=False),
        instance_number=_int(path, ds, "InstanceNumber", strict=False),
        echo_number=_int(path, ds, "EchoNumbers", strict=False),
        temporal_position=_int(path, ds, "TemporalPositionIdentifier", strict=False),
        trigger_time=_float_or_none(_value(ds, "TriggerTime")),
        b_value=_float_or_none(_value(ds, "DiffusionBValue")),
        timed=any(_value(ds, k) not in (None, "") for k in ("FrameTime", "FrameTimeVector", "CineRate")),
        rows=rows,
        columns=columns,
        frames=frames,
        enhanced=enhanced,
        geometry=frame_geometry(ds, path, frames),
        frame_params=frame_parameters(ds, frames) if enhanced and isinstance(ds, Dataset) else {},
    )


def study_info(ds: Dataset) -> StudyInfo:
    """Patient and study fields as the viewer's corner text and browser show them."""
    return StudyInfo(
        patient_name=_text(_value(ds, "PatientName")),
        patient_id=_text(_value(ds, "PatientID")),
        study_uid=_text(_value(ds, "StudyInstanceUID")),
        study_date=_text(_value(ds, "StudyDate")),
        study_description=_text(_value(ds, "StudyDescription")),
    )


def frame_geometry(ds: Dataset, path: str = "", frames: int | None = None) -> FrameGeometry:
    """Orientation, pixel spacing and per-frame positions of a single- or multi-frame image.

    Enhanced objects keep them in functional groups (per-frame first, then shared, then the top
    level); RT dose grids give positions as ImagePositionPatient + GridFrameOffsetVector along the
    normal. Works on a header-only data set and on a full one alike.
    """
    path = path or str(getattr(ds, "filename", "") or "")
    if frames is None:
        frames = _int(path, ds, "NumberOfFrames") or 1
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = _value(ds, "PerFrameFunctionalGroupsSequence") or []
    first = per_frame[0] if len(per_frame) else None
    warnings: list[str] = []

    orientation = None
    for source in (first, shared, ds):
        value = _group_value(source, "PlaneOrientationSequence", "ImageOrientationPatient", source is ds)
        if value is not None:
            orientation = _floats(path, "ImageOrientationPatient", value, 6)
            break
    from_patient = False
    if orientation is None:
        orientation = _from_patient_orientation(_value(ds, "PatientOrientation"))
        from_patient = orientation is not None
    if orientation is not None:
        row, col = orientation[:3], orientation[3:]
        dot = sum(r * c for r, c in zip(row, col, strict=True))
        if not (0.8 < sum(r * r for r in row) < 1.2 and 0.8 < sum(c * c for c in col) < 1.2 and abs(dot) < 0.1):
            raise ImagingError(path, f"invalid ImageOrientationPatient {list(orientation)} (not two unit vectors)")

    measures = None
    for source in (first, shared):
        measures = _first_item(source, "PixelMeasuresSequence") if source is not None else None
        if measures is not None:
            break
    candidates = [
        (keyword, _floats(path, keyword, _value(source, keyword), 2))
        for source, keyword in ((measures, "PixelSpacing"), (ds, "PixelSpacing"), (ds, "ImagerPixelSpacing"))
        if source is not None and _value(source, keyword) is not None
    ]
    regions = us_regions(ds) if isinstance(ds, Dataset) else ()
    calibration = calibrate(candidates, _float_or_none(_value(ds, "EstimatedRadiographicMagnificationFactor")), regions)
    pixel_spacing = calibration.spacing_yx
    warnings.extend(calibration.warnings)

    positions = None
    if len(per_frame) and all(_first_item(f, "PlanePositionSequence") is not None for f in per_frame):
        positions = np.array(
            [
                _floats(
                    path,
                    "ImagePositionPatient",
                    _value(_first_item(f, "PlanePositionSequence"), "ImagePositionPatient"),
                    3,
                )
                for f in per_frame
            ]
        )
        orientations = {
            _floats(path, "ImageOrientationPatient", v, 6)
            for f in per_frame
            if (v := _group_value(f, "PlaneOrientationSequence", "ImageOrientationPatient", False)) is not None
        }
        if len({tuple(round(c, 3) for c in o) for o in orientations}) > 1:
            warnings.append(f"frames have {len(orientations)} different orientations; the first one is used")
    elif _value(ds, "ImagePositionPatient") is not None:
        origin = np.asarray(_floats(path, "ImagePositionPatient", _value(ds, "ImagePositionPatient"), 3))
        offsets = _value(ds, "GridFrameOffsetVector")
        if frames == 1:
            positions = origin[np.newaxis]
        elif offsets is not None and orientation is not None:
            off = np.asarray(_floats(path, "GridFrameOffsetVector", offsets, frames))
            normal = np.cross(orientation[:3], orientation[3:])
            # Offsets are relative to the first frame when it is 0, otherwise absolute along the normal.
            base = origin if off[0] == 0 else origin - (origin @ normal) * normal
            positions = base + off[:, np.newaxis] * normal
    if positions is not None and len(positions) != frames:
        warnings.append(f"{len(positions)} frame positions for {frames} frames; positions ignored")
        positions = None

    fallback = None
    for source in (measures, ds):
        if source is None:
            continue
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = _value(source, keyword)
            if value not in (None, ""):
                try:
                    fallback = abs(float(value)) or None
                except (TypeError, ValueError):
                    fallback = None
                if fallback:
                    break
        if fallback:
            break
    return FrameGeometry(
        orientation, pixel_spacing, positions, fallback, tuple(warnings), from_patient, calibration.source
    )


# -- small parsers ------------------------------------------------------------------------------

_TAGS: dict[str, BaseTag] = {}


def _value(ds: Dataset | RawHeader | None, keyword: str):
    """The value of ``keyword`` in ``ds`` (None when absent); ASCII fields come back as str or list of str.

    Plain values are decoded by :func:`radlens.imaging.dicom_native.decode` whichever reader read them, so
    a header reads the same through the walker and through pydicom.
    """
    if ds is None:
        return None
    if isinstance(ds, RawHeader):
        return ds.value(keyword)
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS.setdefault(keyword, BaseTag(tag_for_keyword(keyword)))
    # get_item gives the element as read (raw until first access): decoding it here is several
    # times cheaper than pydicom's conversion, and reads it exactly as the walker does.
    elem = ds.get_item(tag)
    if elem is None:
        return None
    raw = getattr(elem, "value", None)
    if isinstance(elem, RawDataElement) and isinstance(raw, bytes):
        value = decode(raw, elem.VR or dictionary_VR(tag), elem.is_little_endian)
        if value is not UNDECODED:
            return value
    return ds[tag].value


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = _value(ds, keyword)
    return seq[0] if seq else None


# PatientOrientation's letters as LPS unit vectors (PS3.3 C.7.6.1.1.1).
_PATIENT_AXES = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1), "F": (0, 0, -1)}


def _from_patient_orientation(value) -> tuple[float, ...] | None:
    """A projection's row and column directions from PatientOrientation ("L\\F": columns run to the
    patient's left, rows to the feet), or None when it names none or two that are not at right angles."""
    codes = value.split("\\") if isinstance(value, str) else list(value or ())
    if len(codes) != 2 or not all(c and set(str(c).upper()) <= set(_PATIENT_AXES) for c in codes):
        return None
    vectors = []
    for code in codes:
        v = np.sum([_PATIENT_AXES[c] for c in str(code).upper()], axis=0).astype(np.float64)
        if not np.linalg.norm(v):
            return None
        vectors.append(v / np.linalg.norm(v))
    if abs(float(vectors[0] @ vectors[1])) > 1e-6:
        return None
    return tuple(float(c) for c in np.concatenate(vectors))


def _group_value(source: Dataset | None, sequence: str, keyword: str, top_level: bool):
    if source is None:
        return None
    if top_level:
        return _value(source, keyword)
    item = _first_item(source, sequence)
    return None if item is None else _value(item, keyword)


def _floats(path: str, keyword: str, value, count: int) -> tuple[float, ...]:
    items = [value] if isinstance(value, str | bytes) or not hasattr(value, "__iter__") else list(value)
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ImagingError(path, f"invalid {keyword} {_short(value)}") from None
    if len(values) != count or not all(map(math.isfinite, values)):
        raise ImagingError(path, f"invalid {keyword} {_short(value)} (expected {count} numbers)")
    return tuple(values)


def _int(path: str, ds: Dataset, keyword: str, strict: bool = True) -> int | None:
    """An integer field, or None when absent; a value that is not an integer is an error when strict."""
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError):
        if strict:
            raise ImagingError(path, f"invalid {keyword} {_short(value)}") from None
        return None


def _float_or_none(value) -> float | None:
    try:
        number = float(value[0] if isinstance(value, list) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _text(value) -> str:
    return "" if value is None else " ".join(str(value).split())


def _short(value) -> str:
    text = repr(str(value)) if not isinstance(value, list | tuple) else repr([str(v) for v in value])
    return text if len(text) <= 60 else text[:57] + "..."


def _sop_name(sop_class: str) -> str:
    if not sop_class:
        return "no SOP class"
    name = UID(sop_class).name
    return f"SOP class {name}" if name and name != sop_class else f"SOP class {sop_class}"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = text or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
