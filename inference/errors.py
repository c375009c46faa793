"""Errors of the inference package, one line each: the bundle (or model) and the reason."""

from __future__ import annotations

from radlens.imaging.errors import ImagingError, RadlensError


class BundleError(RadlensError):
    """A model bundle that cannot be listed, loaded or run (bad metadata, weights, architecture)."""

    def __init__(self, bundle: object, reason: str):
        self.bundle = str(bundle)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.bundle}: {self.reason}")


class DicomResultsError(ImagingError):
    """DICOM results (SEG, SR, RTSTRUCT, KOS, SC) that cannot be written for, or read onto, a series."""
