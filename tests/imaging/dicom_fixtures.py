"""Tiny synthetic DICOM files with exactly the header defects a test needs, one slice at a time.

imaging.dicom_write writes clean volumes on a regular grid; discovery tests also need what scanners
and PACS exports get wrong (gaps, shuffled numbers, empty UIDs, two orientations in one series),
so each slice here is written from its own position, orientation and UIDs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _base(sop_class: str, *, study_uid: str, series_uid: str, modality: str, rows: int, cols: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "SYNTHETIC^TEST"
    ds.PatientID = "SYN001"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20240102"
    ds.StudyDescription = "synthetic test study"
    ds.SeriesInstanceUID = series_uid
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    return ds


def write_slice(
    path: Path,
    *,
    position: tuple[float, float, float] | None,
    orientation: tuple[float, ...] | None = AXIAL,
    series_uid: str = "",
    study_uid: str = "1.2.3.4",
    instance_number: int | None = 1,
    rows: int = 8,
    cols: int = 8,
    pixel_spacing: tuple[float, float] = (0.5, 0.5),
    modality: str = "CT",
    series_number: int | None = 1,
    acquisition_number: int | None = None,
    description: str = "synthetic",
    slice_thickness: float | None = None,
    value: int = 0,
) -> Path:
    """One single-frame CT file; ``None`` leaves a field out, ``""`` writes it empty."""
    ds = _base(CTImageStorage, study_uid=study_uid, series_uid=series_uid, modality=modality, rows=rows, cols=cols)
    ds.SeriesDescription = description
    if series_number is not None:
        ds.SeriesNumber = series_number
    if acquisition_number is not None:
        ds.AcquisitionNumber = acquisition_number
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if position is not None:
        ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [f"{v:.8g}" for v in orientation]
    ds.PixelSpacing = list(pixel_spacing)
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    ds.PixelData = np.full((rows, cols), value, dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_stack(
    folder: Path,
    along: list[float],
    *,
    orientation: tuple[float, ...] = AXIAL,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    instance_numbers: list[int] | None = None,
    series_uid: str | None = None,
    prefix: str = "im",
    **kwargs,
) -> tuple[str, list[Path]]:
    """Slices at ``along`` mm along the orientation's normal from ``origin``; returns (uid, paths).

    Each slice's pixel value is its index in ``along`` so a test can tell which file is which.
    """
    uid = generate_uid() if series_uid is None else series_uid
    normal = np.cross(orientation[:3], orientation[3:])
    numbers = instance_numbers or list(range(1, len(along) + 1))
    paths = []
    for i, (d, number) in enumerate(zip(along, numbers, strict=True)):
        position = tuple(np.asarray(origin) + d * normal)
        paths.append(
            write_slice(
                folder / f"{prefix}{i:04d}.dcm",
                position=position,
                orientation=orientation,
                series_uid=uid,
                instance_number=number,
                value=i,
                **kwargs,
            )
        )
    return uid, paths


def write_enhanced_ct(
    path: Path,
    positions: list[tuple[float, float, float]],
    *,
    orientation: tuple[float, ...] = AXIAL,
    pixel_spacing: tuple[float, float] = (0.7, 0.6),
    rows: int = 6,
    cols: int = 5,
) -> Path:
    """An enhanced CT multi-frame file whose geometry lives only in the functional groups."""
    uid = generate_uid()
    ds = _base(EnhancedCTImageStorage, study_uid="1.2.3.4", series_uid=uid, modality="CT", rows=rows, cols=cols)
    ds.SeriesDescription = "synthetic enhanced"
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(positions)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = list(pixel_spacing)
    measures.SliceThickness = 9.0  # deliberately unlike the spacing of the positions
    shared.PixelMeasuresSequence = Sequence([measures])
    plane = Dataset()
    plane.ImageOrientationPatient = list(orientation)
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for p in positions:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6g}" for v in p]
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.zeros((len(positions), rows, cols), dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
