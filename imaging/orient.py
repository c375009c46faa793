"""A volume turned to the patient's axes for display, and the exact maps between its indices and the
source's, both ways.

A series acquired sagittally (most spine, knee and 3D brain MR) has its slices along the patient's
left-right axis; shown as stored, the view called "axial" would show the sagittal plane. ``Orientation``
permutes the array axes to the nearest patient axes (slices towards head or feet, rows towards the back,
columns towards the patient's left) and reverses rows or columns that run the other way, as strided
numpy views: no copy, and a mask painted on the display view lands on the source array itself. The
slice axis keeps its direction (the views put the head at the top either way), so slice numbers stay
those of an axial series. Only whole-axis permutations and reversals: an oblique series is shown
on its nearest axes, never resampled.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from radlens.imaging import kinds
from radlens.imaging.volume import Volume

_LPS_OF_DISPLAY = (2, 1, 0)  # display axis z, y, x ↔ LPS component S, P, L


@dataclass(frozen=True)
class Orientation:
    """Display axis i is source axis ``axes[i]``, reversed where ``flips[i]``."""

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    source_shape: tuple[int, int, int]

    @classmethod
    def identity(cls, shape_zyx) -> Orientation:
        return cls((0, 1, 2), (False, False, False), tuple(int(n) for n in shape_zyx[:3]))

    @classmethod
    def of(cls, volume: Volume) -> Orientation:
        """The permutation and reversals that bring ``volume`` nearest to the patient's axes. A single
        image, a projection or a cine (its first axis is time) is shown as it is."""
        shape = volume.shape_zyx
        if shape[0] == 1 or kinds.one_view(volume.kind):
            return cls.identity(shape)
        d = volume.direction  # columns: LPS vectors of the x, y, z index axes (array axes 2, 1, 0)
        vec = {a: d[:, 2 - a] for a in range(3)}
        best = max(
            itertools.permutations(range(3)), key=lambda p: sum(abs(vec[p[i]][_LPS_OF_DISPLAY[i]]) for i in range(3))
        )
        flips = tuple(i > 0 and vec[best[i]][_LPS_OF_DISPLAY[i]] < 0 for i in range(3))
        return cls(tuple(best), flips, shape)

    @property
    def is_identity(self) -> bool:
        return self.axes == (0, 1, 2) and not any(self.flips)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.source_shape[a] for a in self.axes)

    def inverse(self) -> Orientation:
        """The orientation that takes the display grid back to the source grid."""
        axes = tuple(int(a) for a in np.argsort(self.axes))
        return Orientation(axes, tuple(self.flips[i] for i in axes), self.shape)

    # -- arrays ------------------------------------------------------------------------------------
    def array(self, a: np.ndarray) -> np.ndarray:
        """The display view of a source-grid array (``(z, y, x)`` or ``(z, y, x, 3)``); no copy."""
        if self.is_identity:
            return a
        v = np.transpose(a, (*self.axes, *range(3, a.ndim)))
        return v[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def source_array(self, d: np.ndarray) -> np.ndarray:
        """The source-grid view of a display array (the inverse of ``array``); no copy."""
        if self.is_identity:
            return d
        v = d[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.transpose(v, (*np.argsort(self.axes), *range(3, d.ndim)))

    # -- indices and boxes -------------------------------------------------------------------------
    def index(self, zyx) -> np.ndarray:
        """Source voxel index (z, y, x), fractional allowed → display index."""
        s = np.asarray(zyx, dtype=np.float64)
        out = s[..., list(self.axes)].copy()
        for i, f in enumerate(self.flips):
            if f:
                out[..., i] = self.source_shape[self.axes[i]] - 1 - out[..., i]
        return out

    def source_index(self, zyx) -> np.ndarray:
        """Display index → source voxel index."""
        d = np.asarray(zyx, dtype=np.float64)
        out = np.empty_like(d)
        for i, a in enumerate(self.axes):
            out[..., a] = self.source_shape[a] - 1 - d[..., i] if self.flips[i] else d[..., i]
        return out

    def box(self, box_zyx) -> tuple[int, ...]:
        """A half-open source box → the display box."""
        lo, hi = [], []
        for i, a in enumerate(self.axes):
            b0, b1 = int(box_zyx[a]), int(box_zyx[a + 3])
            if self.flips[i]:
                n = self.source_shape[a]
                b0, b1 = n - b1, n - b0
            lo.append(b0)
            hi.append(b1)
        return (*lo, *hi)

    # -- the volume --------------------------------------------------------------------------------
    def volume(self, volume: Volume) -> Volume:
        """The volume as displayed: the view of its array on the permuted grid, every voxel at the same
        place in LPS. Its per-slice files are kept only while its slices are the source's."""
        if self.is_identity:
            return volume
        d = volume.direction
        direction = np.zeros((3, 3))
        for i, a in enumerate(self.axes):
            direction[:, 2 - i] = (-1.0 if self.flips[i] else 1.0) * d[:, 2 - a]
        origin = tuple(float(v) for v in volume.index_to_lps(self.source_index((0.0, 0.0, 0.0))))
        spacing = tuple(volume.spacing_zyx[a] for a in self.axes)
        files = volume.files if self.axes[0] == 0 else ()
        return dataclasses.replace(
            volume, array=self.array(volume.array), spacing_zyx=spacing, origin_lps=origin, direction=direction,
            files=files,
        )  # fmt: skip
