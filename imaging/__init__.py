"""Reading, writing and describing medical images; numpy + pydicom + SimpleITK only (no Qt, no torch).

Public API (design 4.2): ``scan``, ``load``, ``Volume``, ``SeriesInfo``, ``ImagingError``.
"""

from imaging.dicom import SlicePreview
from imaging.discovery import describe, iter_scan, scan
from imaging.errors import GeometryError, ImagingError, NotAnImageError, RadlensError, UnsupportedError
from imaging.loading import iter_load, load
from imaging.progress import Cancelled, Progress, run_to_end, run_with_progress
from imaging.series import SeriesInfo
from imaging.volume import StudyInfo, Volume, Window

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
