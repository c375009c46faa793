"""Edits as commands on one undo/redo stack, and the brush's geometry (no Qt).

Every change the reader makes — a brush or eraser stroke, a filled hole, a grown region, a box drawn,
resized or deleted, a measurement added or removed — is one ``Edit`` pushed after it is done; undo
and redo replay it exactly. A voxel edit remembers only the voxels it changed (they all had the other
value before), so undoing it restores exactly the voxels painted and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

Index = tuple[np.ndarray, np.ndarray, np.ndarray]
HISTORY_LIMIT = 200


class Edit(Protocol):
    text: str

    def undo(self) -> None: ...
    def redo(self) -> None: ...


@dataclass
class VoxelEdit:
    """Voxels of one mask set to ``value`` (a stroke, a fill, a grown region); they all held ``not value``."""

    text: str
    mask: np.ndarray
    where: Index
    value: bool

    def undo(self) -> None:
        self.mask[self.where] = not self.value

    def redo(self) -> None:
        self.mask[self.where] = self.value

    @property
    def count(self) -> int:
        return len(self.where[0])


@dataclass
class StateEdit:
    """A change of small state (boxes, a new mask, the measurements): its state before and after, set back
    and forth through ``restore``."""

    text: str
    restore: Callable[[dict], None]
    before: dict
    after: dict
    scope: str = "corrections"  # or "measurements", "review": what is shown and saved again after a replay

    def undo(self) -> None:
        self.restore(self.before)

    def redo(self) -> None:
        self.restore(self.after)


@dataclass
class Compound:
    """Several edits done as one (a new mask and the first stroke into it)."""

    text: str
    parts: list = field(default_factory=list)

    def undo(self) -> None:
        for e in reversed(self.parts):
            e.undo()

    def redo(self) -> None:
        for e in self.parts:
            e.redo()


class History:
    """The one undo/redo stack of a study."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        self.done: list[Edit] = []
        self.undone: list[Edit] = []
        self.limit = limit

    def push(self, edit: Edit) -> None:
        """Record an edit already carried out; what was undone can no longer be redone."""
        self.done.append(edit)
        del self.done[: -self.limit]
        self.undone.clear()

    def undo(self) -> Edit | None:
        if not self.done:
            return None
        edit = self.done.pop()
        edit.undo()
        self.undone.append(edit)
        return edit

    def redo(self) -> Edit | None:
        if not self.undone:
            return None
        edit = self.undone.pop()
        edit.redo()
        self.done.append(edit)
        return edit


# -- the brush ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Brush:
    """How the brush paints: its radius, a disc on the plane or a 3D sphere, erasing, and the range of
    values (HU) it may paint, so a stroke over a nodule does not spill into the lung around it."""

    radius_mm: float = 3.0
    sphere: bool = False
    erase: bool = False
    value_range: tuple[float, float] | None = None


def brush_voxels(shape_zyx, spacing_zyx, centre_zyx, radius_mm: float, axis: int | None) -> Index:
    """The voxels within ``radius_mm`` of ``centre_zyx``: on the plane through it normal to ``axis`` (a
    disc), or in 3D (a ball) when ``axis`` is None. The centre voxel is always in."""
    centre = np.asarray(centre_zyx, dtype=np.float64)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    reach = np.floor(radius_mm / spacing).astype(int)
    if axis is not None:
        reach[axis] = 0
    lo = np.maximum(np.round(centre).astype(int) - reach, 0)
    hi = np.minimum(np.round(centre).astype(int) + reach + 1, shape_zyx)
    if np.any(hi <= lo):
        return (np.array([], int),) * 3
    grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    d2 = sum(((g - np.round(c)) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    inside = d2 <= radius_mm**2 + 1e-9
    return tuple(g[inside] for g in grids)  # type: ignore[return-value]


def in_range(where: Index, image: np.ndarray, value_range) -> Index:
    """The voxels of ``where`` whose value in ``image`` lies in ``value_range`` (inclusive), or all."""
    if value_range is None or len(where[0]) == 0:
        return where
    v = image[where]
    keep = (v >= value_range[0]) & (v <= value_range[1])
    return tuple(w[keep] for w in where)  # type: ignore[return-value]


def set_voxels(mask: np.ndarray, where: Index, value: bool) -> Index:
    """Set the voxels and return those that changed (each at most once)."""
    changed = mask[where] != value
    hit = tuple(w[changed] for w in where)
    if len(hit[0]):
        # a voxel listed twice must be recorded once: keep unique positions
        flat = np.ravel_multi_index(hit, mask.shape)
        _, first = np.unique(flat, return_index=True)
        hit = tuple(w[np.sort(first)] for w in hit)
        mask[hit] = value
    return hit  # type: ignore[return-value]


class Stroke:
    """One press-drag-release of the brush or eraser: dabs accumulated into one VoxelEdit."""

    def __init__(self, mask: np.ndarray, image: np.ndarray, spacing_zyx, brush: Brush, axis: int | None):
        self.mask, self.image, self.spacing, self.brush = mask, image, spacing_zyx, brush
        self.axis = None if brush.sphere else axis
        self.parts: list[Index] = []
        self._last = None

    def dab(self, centre_zyx) -> int:
        """Paint at a point (and along the line from the last one, so a fast drag leaves no gaps)."""
        points = [np.asarray(centre_zyx, dtype=np.float64)]
        if self._last is not None:
            step = max(0.5 * self.brush.radius_mm, min(self.spacing))
            dist_mm = np.linalg.norm((points[0] - self._last) * np.asarray(self.spacing))
            n = int(dist_mm // step)
            points = [self._last + (points[0] - self._last) * (i / (n + 1)) for i in range(1, n + 1)] + points
        self._last = points[-1]
        painted = 0
        for p in points:
            where = brush_voxels(self.mask.shape, self.spacing, p, self.brush.radius_mm, self.axis)
            where = in_range(where, self.image, self.brush.value_range)
            hit = set_voxels(self.mask, where, not self.brush.erase)
            painted += len(hit[0])
            if len(hit[0]):
                self.parts.append(hit)
        return painted

    def finish(self) -> VoxelEdit | None:
        if not self.parts:
            return None
        where = tuple(np.concatenate([p[i] for p in self.parts]) for i in range(3))
        return VoxelEdit("erase" if self.brush.erase else "paint", self.mask, where, not self.brush.erase)


def fill_holes(mask: np.ndarray, axis: int, index: int) -> VoxelEdit | None:
    """Fill the holes of the mask on one slice (normal to ``axis``): the voxels enclosed by it."""
    sl = [slice(None)] * 3
    sl[axis] = index
    plane = np.asarray(mask[tuple(sl)], dtype=bool)
    holes = ndimage.binary_fill_holes(plane) & ~plane
    if not holes.any():
        return None
    rc = np.nonzero(holes)
    where = [None, None, None]
    others = [a for a in range(3) if a != axis]
    where[axis] = np.full(len(rc[0]), index)
    where[others[0]], where[others[1]] = rc
    where = tuple(where)
    mask[where] = True
    return VoxelEdit("fill holes", mask, where, True)


def add_region(mask: np.ndarray, region: np.ndarray, text: str) -> VoxelEdit | None:
    """Add a region (a grown lesion) to the mask as one edit."""
    where = set_voxels(mask, np.nonzero(region), True)
    return VoxelEdit(text, mask, where, True) if len(where[0]) else None
