"""Overlay data prepared once per findings, and the per-slice pieces the views draw (numpy only).

Masks and heat maps are wrapped as Volumes on the study's grid so ``extract_plane`` orients them
exactly like the image; boxes are kept as arrays so a slice's boxes are found without a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens.imaging.geometry import extract_plane
from radlens.imaging.volume import Volume
from radlens.inference.findings import Findings
from radlens.viewer.state import AXIS, box_on_plane

FILL_ALPHA = 110
HEAT_FLOOR = 0.1  # heat below this is transparent so the anatomy stays readable


@dataclass(frozen=True)
class BoxSet:
    ids: np.ndarray  # (n,) detection ids
    boxes: np.ndarray  # (n, 6) half-open z0 y0 x0 z1 y1 x1
    scores: np.ndarray  # (n,)
    label: str


class OverlayData:
    """The arrays behind each layer key (see ``viewer.state.build_layers``), on the study's grid."""

    def __init__(self, findings: Findings, volume: Volume):
        self.findings = findings
        self.boxes: dict[str, BoxSet] = {}
        self.masks: dict[str, Volume] = {}
        self.heat: dict[str, Volume] = {}
        groups: dict[str, list] = {}
        for d in findings.detections:
            groups.setdefault(f"det:{d.model}:{d.label}", []).append(d)
        for key, dets in groups.items():
            self.boxes[key] = BoxSet(
                np.array([d.id for d in dets]),
                np.array([d.box_zyx for d in dets], dtype=np.int64).reshape(-1, 6),
                np.array([d.score for d in dets], dtype=np.float64),
                dets[0].label,
            )
        for s in findings.segmentations:
            if s.mask is not None:
                self.masks[f"seg:{s.model}:{s.label}"] = volume.with_array(np.asarray(s.mask, dtype=bool))
        for c in findings.classifications:
            if c.heatmap is not None:
                self.heat[f"heat:{c.model}:{c.label}"] = volume.with_array(np.asarray(c.heatmap, dtype=np.float32))

    def mask_slice(self, key: str, plane: str, index: int) -> np.ndarray:
        return extract_plane(self.masks[key], plane, index).image

    def heat_slice(self, key: str, plane: str, index: int) -> np.ndarray:
        return extract_plane(self.heat[key], plane, index).image


def boxes_on_slice(
    bs: BoxSet, threshold: float, plane: str, index: int, shape_zyx, flip_z: bool
) -> list[tuple[int, float, tuple[int, int, int, int]]]:
    """(id, score, (row0, col0, row1, col1)) of the boxes above ``threshold`` that cross the slice."""
    axis = AXIS[plane]
    b = bs.boxes
    hit = (b[:, axis] <= index) & (index < b[:, axis + 3]) & (bs.scores >= threshold)
    return [
        (int(bs.ids[i]), float(bs.scores[i]), box_on_plane(b[i].tolist(), plane, index, shape_zyx, flip_z))
        for i in np.flatnonzero(hit)
    ]


def mask_rgba(mask: np.ndarray, color: tuple[int, int, int]) -> tuple[np.ndarray, int, int] | None:
    """The filled, outlined colour image of a 2D mask, cropped to where it is: (rgba, row0, col0).

    None when the slice holds none of it. Cropping keeps a small lesion's cost small on a 512² slice.
    """
    m = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    m = m[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    rgba = np.zeros((*m.shape, 4), dtype=np.uint8)
    rgba[..., :3] = color
    rgba[..., 3] = np.where(m, np.where(inner, FILL_ALPHA, 255), 0).astype(np.uint8)
    return rgba, r0, c0


def heat_lut(colormap) -> np.ndarray:
    """A 256×4 lookup table whose alpha rises with the probability (pyqtgraph colormap in)."""
    lut = np.asarray(colormap.getLookupTable(0.0, 1.0, 256, alpha=True), dtype=np.uint8).copy()
    ramp = np.linspace(0, 1, 256)
    lut[:, 3] = np.where(ramp < HEAT_FLOOR, 0, np.clip(ramp * 1.2, 0, 1) * 255).astype(np.uint8)
    return lut
