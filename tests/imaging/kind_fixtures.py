"""Small DICOM files of each kind that a test needs: a radiograph with display attributes, a cine
with a frame time, a 4D enhanced MR, a 4D set of single-frame files; written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import XRayAngiographicImageStorage, generate_uid

from tests.imaging.dicom_fixtures import _base, write_enhanced_ct, write_slice


def write_radiograph(path: Path, pixels: np.ndarray, *, modality: str = "CR", **fields) -> Path:
    """A single-frame radiograph (no slice geometry) of ``pixels`` (int16), with any header ``fields``."""
    rows, cols = pixels.shape
    write_slice(path, position=None, orientation=None, modality=modality, rows=rows, cols=cols)
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path)
    return path


def write_cine(path: Path, frames: int, *, modality: str = "XA", rows: int = 8, cols: int = 8, **fields) -> Path:
    """A multi-frame angiography run: frame ``i`` holds the value ``i``; ``fields`` say its timing."""
    ds = _base(XRayAngiographicImageStorage, study_uid="1.2.3.4", series_uid=generate_uid(), modality=modality,
               rows=rows, cols=cols)  # fmt: skip
    ds.SeriesDescription = "synthetic run"
    ds.NumberOfFrames = frames
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.repeat(np.arange(frames, dtype="<i2"), rows * cols).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_4d_enhanced(path: Path, times: int = 2, slices: int = 3) -> Path:
    """An enhanced multi-frame image whose frames repeat ``slices`` positions at ``times`` time points,
    stored interleaved (z0 t1, z0 t2, z1 t1, ...); frame value = 10 × time point + slice."""
    positions, values, temporal = [], [], []
    for z in range(slices):
        for t in range(1, times + 1):
            positions.append((0.0, 0.0, 2.0 * z))
            values.append(10 * t + z)
            temporal.append(t)
    write_enhanced_ct(path, positions)
    ds = pydicom.dcmread(path)
    for item, t in zip(ds.PerFrameFunctionalGroupsSequence, temporal, strict=True):
        content = Dataset()
        content.TemporalPositionIndex = t
        item.FrameContentSequence = Sequence([content])
    rows, cols = ds.Rows, ds.Columns
    ds.PixelData = np.repeat(np.asarray(values, dtype="<i2"), rows * cols).tobytes()
    ds.save_as(path)
    return path
