"""Reading, writing and describing medical images; numpy + pydicom + SimpleITK only (no Qt, no torch).

Public API (design 4.2): ``scan``, ``load``, ``Volume``, ``SeriesInfo``, ``ImagingError``.
"""

from imaging.errors import GeometryError, ImagingError, NotAnImageError, RadlensError, UnsupportedError
from imaging.progress import Cancelled, Progress, run_to_end, run_with_progress
from imaging.volume import StudyInfo, Volume, Window

__all__ = [
    "Cancelled",
    "GeometryError",
    "ImagingError",
    "NotAnImageError",
    "Progress",
    "RadlensError",
    "StudyInfo",
    "UnsupportedError",
    "Volume",
    "Window",
    "run_to_end",
    "run_with_progress",
]
