"""Writing a Volume as a real single-frame DICOM series (one file per z slice).

The phantoms, the tests and the benchmark need DICOM that any viewer reads: valid UIDs, positions
and orientation from the volume's grid, a rescale that gives the modality values back exactly, the
series' VOI windows, explicit VR little endian with file meta. Each file is written to a temporary
name in the target folder and renamed, so a crash never leaves a half-written slice behind.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from radlens.imaging.atomic import atomic_path
from radlens.imaging.errors import ImagingError
from radlens.imaging.volume import Volume, Window

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
INSTANCE_ORDERS = ("normal", "reversed", "shuffled")


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    window: Window | None = None,
    series_description: str | None = None,
    patient_name: str = "ANONYMOUS^SYNTHETIC",
    patient_id: str = "SYNTHETIC",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str | None = None,
    series_number: int = 1,
    instance_number_order: str = "normal",
) -> list[Path]:
    """Write ``volume`` as one DICOM file per z slice into ``folder``; return the paths in z order.

    ``window`` (default: the volume's own windows) goes into WindowCenter/WindowWidth. CT is stored
    as int16 with RescaleIntercept −1024 when that fits, so HU come back exactly; integer data is
    always stored losslessly, non-integer float data with a slope chosen to span int16.
    ``instance_number_order`` ("normal", "reversed", "shuffled") numbers the instances out of slice
    order on purpose, to prove readers order by position; file names follow InstanceNumber.
    """
    if volume.is_rgb:
        raise ImagingError(folder, "writing colour volumes as DICOM is not supported")
    if instance_number_order not in INSTANCE_ORDERS:
        raise ValueError(f"instance_number_order must be one of {INSTANCE_ORDERS}, got {instance_number_order!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modality = (volume.modality or "OT").upper()
    stored, slope, intercept = _stored_values(volume.array, modality)
    windows = (window,) if window is not None else tuple(volume.windows)
    study_uid = study_uid or volume.study.study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    date = study_date or volume.study.study_date or datetime.date.today().strftime("%Y%m%d")
    nz = volume.shape_zyx[0]
    numbers = _instance_numbers(nz, instance_number_order)
    iop = [*volume.direction[:, 0], *volume.direction[:, 1]]
    sz, sy, sx = volume.spacing_zyx
    sop_class = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)

    base = Dataset()
    base.SOPClassUID = sop_class
    base.Modality = modality
    base.PatientName = patient_name
    base.PatientID = patient_id
    base.PatientBirthDate = ""
    base.PatientSex = ""
    base.StudyInstanceUID = study_uid
    base.SeriesInstanceUID = series_uid
    base.FrameOfReferenceUID = frame_uid
    base.StudyDate = date
    base.SeriesDate = date
    base.StudyTime = "120000"
    base.StudyID = "1"
    base.AccessionNumber = ""
    base.ReferringPhysicianName = ""
    base.StudyDescription = volume.study.study_description or ""
    base.SeriesDescription = series_description if series_description is not None else volume.description
    base.SeriesNumber = series_number
    base.AcquisitionNumber = 1
    base.Manufacturer = "RadLens (synthetic)"
    base.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    base.ImageOrientationPatient = [_ds(v) for v in iop]
    base.PixelSpacing = [_ds(sy), _ds(sx)]
    base.SliceThickness = _ds(sz)
    base.SpacingBetweenSlices = _ds(sz)
    base.PositionReferenceIndicator = ""
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME1" if volume.invert else "MONOCHROME2"
    base.Rows, base.Columns = (int(n) for n in stored.shape[1:])
    base.BitsAllocated = 16
    base.BitsStored = 16
    base.HighBit = 15
    base.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    base.RescaleIntercept = _ds(intercept)
    base.RescaleSlope = _ds(slope)
    base.RescaleType = "HU" if modality == "CT" else "US"
    if windows:
        base.WindowCenter = [_ds(w.level) for w in windows] if len(windows) > 1 else _ds(windows[0].level)
        base.WindowWidth = [_ds(w.width) for w in windows] if len(windows) > 1 else _ds(windows[0].width)

    paths: list[Path] = []
    for z in range(nz):
        ds = Dataset()
        ds.update(base)
        sop_uid = generate_uid()
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = numbers[z]
        position = volume.index_to_lps((z, 0, 0))
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, volume.direction[:, 2])))
        ds.PixelData = stored[z].astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        paths.append(_atomic_write(ds, folder / f"IM{numbers[z]:05d}.dcm"))
    return paths


def _stored_values(array: np.ndarray, modality: str) -> tuple[np.ndarray, float, float]:
    """Stored pixel values plus (slope, intercept) such that slope * stored + intercept == array."""
    a = np.asarray(array)
    if a.size == 0:
        raise ValueError("cannot write an empty volume")
    lo, hi = float(a.min()), float(a.max())
    integral = np.issubdtype(a.dtype, np.integer) or bool(np.all(np.equal(np.mod(a, 1), 0)))
    if integral:
        intercept = -1024.0 if modality == "CT" else 0.0
        if lo - intercept >= -32768 and hi - intercept <= 32767:
            return (a - intercept).astype(np.int16), 1.0, intercept
        if lo >= 0 and hi <= 65535:
            return a.astype(np.uint16), 1.0, 0.0
        if hi - lo <= 65535:
            return (a - lo).astype(np.uint16), 1.0, lo
    # Non-integer (or too wide) values: a linear map onto the int16 range; the best DICOM can hold.
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.rint((a.astype(np.float64) - lo) / slope - 32768.0).astype(np.int16)
    return stored, slope, lo + 32768.0 * slope


def _instance_numbers(n: int, order: str) -> list[int]:
    if order == "normal":
        return list(range(1, n + 1))
    if order == "reversed":
        return list(range(n, 0, -1))
    return [int(v) + 1 for v in np.random.default_rng(0).permutation(n)]


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) that keeps as much precision as fits."""
    v = float(value)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    for digits in range(15, 0, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{v:.6e}"


def _atomic_write(ds: Dataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path
