"""Errors a user can act on: each message names the file (or thing) and the reason, on one line."""

from __future__ import annotations


class RadlensError(Exception):
    """Base of every error the command line reports as ``radlens: error: <message>`` (exit 1)."""


class ImagingError(RadlensError):
    """A file, folder or series that cannot be read or written as an image."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


class NotAnImageError(ImagingError):
    """The file is not DICOM nor a volume format we read (skipped by discovery)."""


class UnsupportedError(ImagingError):
    """A real image we cannot decode (transfer syntax, photometric interpretation, ...)."""


class GeometryError(ImagingError):
    """Slices or grids that do not fit together (mixed sizes, orientations, mismatched grids)."""
