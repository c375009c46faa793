"""What discovery finds (headers only) and loading consumes: one stack of slices on one grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens.imaging.volume import StudyInfo


@dataclass(frozen=True, eq=False)
class SeriesInfo:
    uid: str  # SeriesInstanceUID, suffixed ".2", ".3", ... when one series is split into stacks
    modality: str
    description: str
    study: StudyInfo
    # Files in slice order along the normal (never by InstanceNumber); one file for a multi-frame image.
    files: tuple[str, ...]
    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    warnings: tuple[str, ...] = ()
    number: int | None = None  # SeriesNumber, for sorting in the browser
    frames_per_file: int = 1

    def to_json(self) -> dict:
        """The series entry of ``radlens info --json`` (docs/architecture.md, "Command line")."""
        return {
            "uid": self.uid,
            "modality": self.modality,
            "description": self.description,
            "shape_zyx": [int(n) for n in self.shape_zyx],
            "spacing_zyx": [round(float(s), 6) for s in self.spacing_zyx],
            "files": len(self.files),
            "warnings": list(self.warnings),
        }
