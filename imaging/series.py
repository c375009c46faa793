"""What discovery finds (headers only) and loading consumes: one stack of slices on one grid.

Every series is classified once, here at discovery (:mod:`radlens.imaging.kinds`): a volume, a
projection, a cine or a 4D set. A 4D set holds its 3D stacks as ``parts`` (one per time point,
b-value or echo), each itself a loadable SeriesInfo; loading the set gives its first part.
"""

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
    kind: str = "volume"  # volume | projection | cine | 4d (radlens.imaging.kinds)
    # A multi-frame file read in part (one time point of a 4D enhanced MR): its frames, in slice order.
    frames: tuple[int, ...] = ()
    volume_index: int = 0  # the 3D volume of a 4D volume file (NIfTI, MINC, ...) this stack is
    # A 4D set: its 3D stacks, what tells them apart ("temporal position", "echo", ...) and each one's value.
    parts: tuple[SeriesInfo, ...] = ()
    dimension: str = ""
    part_labels: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The series entry of ``radlens info --json`` (docs/architecture.md, "Command line")."""
        return {
            "uid": self.uid,
            "modality": self.modality,
            "description": self.description,
            "shape_zyx": [int(n) for n in self.shape_zyx],
            "spacing_zyx": [round(float(s), 6) for s in self.spacing_zyx],
            "files": len(self.files),
            "kind": self.kind,
            **({"parts": len(self.parts), "dimension": self.dimension} if self.parts else {}),
            "warnings": list(self.warnings),
        }
