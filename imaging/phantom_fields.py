"""Building blocks of the synthetic phantoms: a physical grid, smooth random fields, soft-edged shapes.

Everything is placed in millimetres relative to the phantom's centre, so the body keeps its physical
size on any grid (a 128-slice demo or a 300×512×512 benchmark series), and the seed fixes the anatomy
(the vessel trees are the same on every grid; the nodules depend also on the smallest size a grid shows).
All work is numpy/scipy over whole arrays or small boxes: there is no Python loop over voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Grid:
    """A (z, y, x) grid centred on the phantom; ``zr/yr/xr`` are voxel-centre offsets in mm (float32)."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]

    @property
    def zr(self) -> np.ndarray:
        return self._axis(0)

    @property
    def yr(self) -> np.ndarray:
        return self._axis(1)

    @property
    def xr(self) -> np.ndarray:
        return self._axis(2)

    def _axis(self, k: int) -> np.ndarray:
        n, s = self.shape_zyx[k], self.spacing_zyx[k]
        return ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * np.float32(s)).astype(np.float32)

    def to_index(self, p_xyz) -> np.ndarray:
        """Offsets (x, y, z) mm → fractional index (z, y, x)."""
        p = np.asarray(p_xyz, dtype=np.float64)[::-1]
        n = np.asarray(self.shape_zyx, dtype=np.float64)
        return p / np.asarray(self.spacing_zyx) + (n - 1) / 2

    def box(self, lo_xyz, hi_xyz) -> tuple[slice, slice, slice]:
        """Index slices covering the offsets box [lo, hi] (mm, x/y/z), clipped to the grid."""
        a = np.floor(self.to_index(lo_xyz)).astype(int)
        b = np.ceil(self.to_index(hi_xyz)).astype(int) + 1
        return tuple(
            slice(int(np.clip(a[k], 0, n)), int(np.clip(b[k], 0, n)))  # type: ignore[misc]
            for k, n in enumerate(self.shape_zyx)
        )

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (x, y, z) offsets of the voxels of ``box``: shapes (1,1,nx), (1,ny,1), (nz,1,1)."""
        z = self.zr[box[0]][:, None, None]
        y = self.yr[box[1]][None, :, None]
        x = self.xr[box[2]][None, None, :]
        return x, y, z


def smooth_field(rng: np.random.Generator, grid: Grid, corr_mm: float) -> np.ndarray:
    """A smooth random field with unit standard deviation and correlation length ``corr_mm``.

    Drawn on a coarse grid of spacing ``corr_mm / 2`` (so its cost and its pattern do not depend on
    the voxel size), smoothed there, then interpolated linearly onto the grid axis by axis.
    """
    step = corr_mm / 2
    extent = np.asarray(grid.shape_zyx) * np.asarray(grid.spacing_zyx)
    coarse_shape = tuple(int(np.ceil(e / step)) + 3 for e in extent)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 1.0, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-6)
    out = coarse
    for axis, axis_mm in enumerate((grid.zr, grid.yr, grid.xr)):
        pos = (axis_mm - axis_mm[0]) / step + 1.0
        i0 = np.floor(pos).astype(int)
        w = (pos - i0).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = -1
        w = w.reshape(shape)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i0 + 1, axis=axis) * w
    return out.astype(np.float32, copy=False)


def blur_with_noise(rng: np.random.Generator, img: np.ndarray, sigma: float, blur_vox) -> np.ndarray:
    """The scanner's blur applied to the image plus white noise: noise correlated like a reconstruction
    kernel's, scaled so that its standard deviation after the blur is ``sigma``. One filter pass for both."""
    blur_vox = np.broadcast_to(np.asarray(blur_vox, dtype=np.float64), (3,))
    gain = 1.0
    for s in blur_vox:  # the discrete kernel scipy uses (truncate=3): noise variance shrinks by Σw²
        radius = int(3.0 * s + 0.5)
        w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        gain *= float(np.sum((w / w.sum()) ** 2))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / np.sqrt(gain))
    return ndimage.gaussian_filter(img, blur_vox, truncate=3.0)


def soft_fraction(signed_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume fraction of a shape from the signed distance (positive inside), one edge wide."""
    return np.clip(0.5 + signed_mm / np.float32(edge_mm), 0.0, 1.0).astype(np.float32)


def blob_fraction(grid: Grid, box, centre_xyz, radius: float, edge_mm: float, lobes: np.ndarray) -> np.ndarray:
    """Fraction of a lobulated sphere inside each voxel of ``box``.

    ``lobes`` = (amplitude, 3 phases): the radius varies as r·(1 + a·(sin·cos·sin)/1) over directions,
    which gives the bumpy outline of real nodules while the centre voxel stays inside.
    """
    x, y, z = grid.coords(box)
    dx, dy, dz = x - np.float32(centre_xyz[0]), y - np.float32(centre_xyz[1]), z - np.float32(centre_xyz[2])
    d = np.sqrt(dx * dx + dy * dy + dz * dz)
    inv = 1.0 / np.maximum(d, 1e-3)
    amp, p1, p2, p3 = (float(v) for v in lobes)
    bump = (
        np.sin(2.5 * np.pi * dx * inv + p1) * np.cos(2.0 * np.pi * dy * inv + p2) * np.sin(1.5 * np.pi * dz * inv + p3)
    )
    r = np.float32(radius) * (1 + np.float32(amp) * bump)
    return soft_fraction(r - d, edge_mm)


def tube_fraction(grid: Grid, box, a_xyz, b_xyz, ra: float, rb: float, edge_mm: float) -> np.ndarray:
    """Fraction of a tapered tube from a (radius ra) to b (radius rb) inside each voxel of ``box``."""
    x, y, z = grid.coords(box)
    a = np.asarray(a_xyz, dtype=np.float32)
    ab = np.asarray(b_xyz, dtype=np.float32) - a
    length2 = max(float(ab @ ab), 1e-6)
    px, py, pz = x - a[0], y - a[1], z - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / np.float32(length2), 0.0, 1.0)
    qx, qy, qz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    d = np.sqrt(qx * qx + qy * qy + qz * qz)
    r = np.float32(ra) + t * np.float32(rb - ra)
    return soft_fraction(r - d, edge_mm)


def instance_boxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int, int, int]]:
    """Half-open ``box_zyx`` of instances 1..n of a label map (each instance must be present)."""
    return [
        (s[0].start, s[1].start, s[2].start, s[0].stop, s[1].stop, s[2].stop) for s in ndimage.find_objects(labels, n)
    ]


def random_unit(rng: np.random.Generator, z_max: float = 1.0) -> np.ndarray:
    """A random direction (x, y, z) with |z| ≤ z_max."""
    phi = rng.uniform(0, 2 * np.pi)
    z = rng.uniform(-z_max, z_max)
    s = np.sqrt(1 - z * z)
    return np.array([s * np.cos(phi), s * np.sin(phi), z])


def sphere_points(centre, radius: float) -> np.ndarray:
    """26 points on a sphere (the cube's directions), shape (27, 3) including the centre: a cheap fit test."""
    dirs = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.float64)
    norms = np.linalg.norm(dirs, axis=1)
    norms[norms == 0] = 1
    return np.asarray(centre, dtype=np.float64) + dirs / norms[:, None] * radius
