"""Reading, writing and describing medical images; numpy + pydicom + SimpleITK only (no Qt, no torch).

Public API: ``scan``, ``load``, ``Volume``, ``SeriesInfo``, ``ImagingError`` (docs/architecture.md,
"Python API of imaging").
"""

from radlens.imaging.dicom import SlicePreview
from radlens.imaging.discovery import describe, iter_scan, scan
from radlens.imaging.errors import GeometryError, ImagingError, NotAnImageError, RadlensError, UnsupportedError
from radlens.imaging.loading import iter_load, load
from radlens.imaging.progress import Cancelled, Progress, run_to_end, run_with_progress
from radlens.imaging.series import SeriesInfo
from radlens.imaging.volume import StudyInfo, Volume, Window

__all__ = [
    "Cancelled",
    "GeometryError",
    "ImagingError",
    "NotAnImageError",
    "Progress",
    "RadlensError",
    "SeriesInfo",
    "SlicePreview",
    "StudyInfo",
    "UnsupportedError",
    "Volume",
    "Window",
    "describe",
    "iter_load",
    "iter_scan",
    "load",
    "run_to_end",
    "run_with_progress",
    "scan",
]
