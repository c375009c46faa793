"""The one image type every program shares: a 3D grid of modality values placed in LPS millimetres.

Conventions (docs/architecture.md, "Conventions"): arrays are ``(z, y, x)``; colour stays ``(z, y, x, 3)`` uint8;
``origin_lps`` is the centre of voxel (0, 0, 0); the columns of ``direction`` are the unit vectors of
the x, y and z index axes in LPS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from radlens.imaging.presentation import Presentation


@dataclass(frozen=True)
class Window:
    """A display window: width and level (centre) in modality units.

    ``function`` is the DICOM VOILUTFunction, how values inside the window are mapped: LINEAR,
    LINEAR_EXACT or SIGMOID (:func:`radlens.imaging.windowing.apply_window`).
    """

    width: float
    level: float
    function: str = "LINEAR"

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2


@dataclass(frozen=True, eq=False)
class VoiLut:
    """One VOI LUT Sequence item: a display table instead of a window (DICOM C.11.2).

    Modality value ``v`` is shown as ``table[v - first]`` (clamped to the table's ends), on a scale
    of 0 to ``2**bits - 1``.
    """

    first: int
    table: np.ndarray
    bits: int
    explanation: str = ""


@dataclass(frozen=True)
class StudyInfo:
    """Who and what a series belongs to; what the viewer's corner text and browser show."""

    patient_name: str = ""
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_description: str = ""


@dataclass(frozen=True, eq=False)
class Volume:
    array: np.ndarray
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = "OT"
    series_uid: str = ""
    description: str = ""
    study: StudyInfo = field(default_factory=StudyInfo)
    # The series' own VOI windows (first one is the default), from the DICOM header.
    windows: tuple[Window, ...] = ()
    # The series' VOI LUT Sequence, display tables used in place of a window (imaging.windowing).
    voi_luts: tuple[VoiLut, ...] = ()
    # MONOCHROME1 volumes keep their stored values and are shown inverted.
    invert: bool = False
    # Where it came from: the source path and, for DICOM, one file per slice in slice order.
    source: str = ""
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # The MR contrast a reader said the series is (imaging.modality.MR_CONTRASTS); "" when none was said.
    contrast: str = ""
    # Its kind (volume, projection, cine; a 4D set is loaded one part at a time), units, laterality,
    # frame timing and display shutter (imaging.presentation).
    presentation: Presentation = field(default_factory=Presentation)

    def __post_init__(self) -> None:
        a = self.array
        if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] != 3):
            raise ValueError(f"Volume array must be (z, y, x) or (z, y, x, 3), got shape {a.shape}")
        object.__setattr__(self, "spacing_zyx", tuple(float(s) for s in self.spacing_zyx))
        object.__setattr__(self, "origin_lps", tuple(float(s) for s in self.origin_lps))
        d = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "direction", d)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def modality_and_contrast(self) -> str:
        """What the series is, as a reader would say it: "CT", "MR", "MR T2-like" (a contrast a reader said)."""
        return f"{self.modality} {self.contrast}" if self.contrast else self.modality

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def kind(self) -> str:
        return self.presentation.kind

    @property
    def is_rgb(self) -> bool:
        return self.array.ndim == 4

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def affine_lps(self) -> np.ndarray:
        """4×4 matrix from homogeneous (x, y, z) index to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing_zyx[::-1])
        m[:3, 3] = self.origin_lps
        return m

    def index_to_lps(self, index_zyx) -> np.ndarray:
        """Voxel index (z, y, x) (any leading shape, fractional allowed) → LPS mm (x, y, z)."""
        idx = np.asarray(index_zyx, dtype=np.float64)
        xyz = idx[..., ::-1]
        a = self.affine_lps
        return xyz @ a[:3, :3].T + a[:3, 3]

    def lps_to_index(self, lps) -> np.ndarray:
        """LPS mm (x, y, z) → fractional voxel index (z, y, x)."""
        p = np.asarray(lps, dtype=np.float64)
        a = self.affine_lps
        xyz = (p - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T
        return xyz[..., ::-1]

    def same_grid(self, other: Volume, tol: float = 1e-3) -> bool:
        """True when both volumes share shape, spacing, origin and direction."""
        return (
            self.shape_zyx == other.shape_zyx
            and np.allclose(self.spacing_zyx, other.spacing_zyx, atol=tol)
            and np.allclose(self.origin_lps, other.origin_lps, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def geometry(self) -> dict:
        """The grid as JSON-ready values (the ``input`` block of findings.json uses it)."""
        return {
            "shape_zyx": list(self.shape_zyx),
            "spacing_zyx": list(self.spacing_zyx),
            "origin_lps": list(self.origin_lps),
            "direction": self.direction.tolist(),
        }

    def with_array(self, array: np.ndarray, **changes) -> Volume:
        """The same grid and metadata around another array (a mask, a resampled copy's values)."""
        return dataclasses.replace(self, array=array, **changes)
