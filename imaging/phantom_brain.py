"""The synthetic brain MR's anatomy (T1-like contrast, arbitrary units 0..~1000): scalp, skull with
marrow, CSF, folded cortex, white matter, ventricles, deep grey nuclei, lesions, bias field, Rician noise.

Coordinates are mm offsets from the head's centre in patient axes (+x left, +y posterior, +z head).
Depth below the scalp is measured along the ray from the centre, which is exact enough for layers a
few millimetres thick on an ellipsoid and keeps every layer a single vectorised expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens.imaging.phantom_fields import Grid, blob_fraction, smooth_field, sphere_points

EXTENT_ZYX = (192.0, 240.0, 240.0)
DEFAULT_SHAPE_ZYX = (128, 192, 192)

HEAD = (74.0, 96.0, 86.0)  # semi-axes x, y, z
HEAD_CZ = -12.0
# Layers by depth (mm) below the scalp surface, and the T1-like signal of each.
LAYERS = ((5.0, 650.0), (7.0, 40.0), (10.5, 520.0), (12.5, 40.0), (14.5, 140.0))  # scalp..CSF
BRAIN_DEPTH = 14.5
SIGNAL = {"air": 0.0, "csf": 140.0, "gm": 430.0, "wm": 620.0, "muscle": 300.0}
VENTRICLES = (((-11.0, 4.0, 14.0), (7.0, 28.0, 11.0)), ((11.0, 4.0, 14.0), (7.0, 28.0, 11.0)),
              ((0.0, 2.0, 0.0), (2.0, 12.0, 9.0)))  # fmt: skip
NUCLEI = (((-20.0, -2.0, 0.0), (10.0, 16.0, 11.0)), ((20.0, -2.0, 0.0), (10.0, 16.0, 11.0)))


@dataclass(frozen=True)
class RawLesion:
    centre_xyz: tuple[float, float, float]
    diameter_mm: float
    contrast: str  # "hyper" | "hypo"
    kind: str = "lesion"


def depth_below_scalp(x, y, z) -> np.ndarray:
    """mm from the head's surface along the ray from its centre (negative outside the head)."""
    zc = z - HEAD_CZ
    rho = np.sqrt((x / HEAD[0]) ** 2 + (y / HEAD[1]) ** 2 + (zc / HEAD[2]) ** 2)
    r = np.sqrt(x * x + y * y + zc * zc)
    return r * (1.0 / np.maximum(rho, 1e-3) - 1.0)


def _in_ellipsoids(x, y, z, items) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)
    for (cx, cy, cz), (ax, ay, az) in items:
        out |= ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 < 1.0
    return out


def _place_lesions(rng: np.random.Generator, d_min: float) -> list[tuple[np.ndarray, float, str]]:
    """2–6 non-overlapping lesions in the cerebral white/grey matter, clear of the ventricles."""
    placed: list[tuple[np.ndarray, float, str]] = []
    for _ in range(int(rng.integers(2, 7))):
        d = min(float(np.exp(rng.uniform(np.log(d_min), np.log(25.0)))), 25.0)
        r = d / 2
        contrast = "hyper" if rng.random() < 0.65 else "hypo"
        for _try in range(80):
            c = rng.uniform(-1, 1, 3) * [50.0, 70.0, 45.0] + [0.0, 0.0, 15.0]
            sp = sphere_points(c, r)
            x, y, z = sp[:, 0], sp[:, 1], sp[:, 2]
            if (depth_below_scalp(x, y, z) < BRAIN_DEPTH + 3.0).any() or _in_ellipsoids(x, y, z, VENTRICLES).any():
                continue
            if all(np.linalg.norm(c - q) > 1.15 * (r + rq) + 2.0 for q, rq, _ in placed):
                placed.append((c, r, contrast))
                break
    return placed


def build_brain(rng: np.random.Generator, grid: Grid) -> tuple[np.ndarray, np.ndarray, list[RawLesion]]:
    """(signal as int16, lesion instance map uint8, lesions) on ``grid``."""
    d_min = min(max(3.0, 3.0 * max(grid.spacing_zyx)), 25.0)  # ≥ 3 voxels across, unless the grid is coarse
    edge = float(min(grid.spacing_zyx))
    folds = smooth_field(rng, grid, 7.0)  # cortical thickness and the grey/white boundary
    sulci = smooth_field(rng, grid, 11.0)  # its zero sheets become sulci
    texture = smooth_field(rng, grid, 6.0)
    img = np.zeros(grid.shape_zyx, dtype=np.float32)
    brain = np.zeros(grid.shape_zyx, dtype=bool)
    x = grid.xr[None, None, :]
    y = grid.yr[None, :, None]
    nz = grid.shape_zyx[0]
    for z0 in range(0, nz, 16):
        sl = slice(z0, min(nz, z0 + 16))
        z = grid.zr[sl][:, None, None]
        depth = depth_below_scalp(x, y, z)
        f, s = folds[sl], sulci[sl]
        layer = np.full(depth.shape, SIGNAL["air"], dtype=np.float32)
        for limit, value in LAYERS[::-1]:
            layer[(depth >= 0) & (depth < limit)] = value
        inside = depth >= BRAIN_DEPTH
        # Gyri: white matter reaches up to 3 mm below the surface where the field is high, 12 mm where low.
        wm = depth > BRAIN_DEPTH + 7.5 - 4.5 * np.clip(f, -1.0, 1.0)
        sulcus = inside & ~wm & (np.abs(s) < 0.12)
        neck = (z - HEAD_CZ) < -52.0  # below the brain: muscles of the skull base and neck
        tissue = np.where(wm, SIGNAL["wm"], SIGNAL["gm"]) * (1 + 0.03 * texture[sl])
        tissue = np.where(sulcus, SIGNAL["csf"], tissue)
        tissue = np.where(_in_ellipsoids(x, y, z, NUCLEI), SIGNAL["gm"], tissue)
        tissue = np.where(_in_ellipsoids(x, y, z, VENTRICLES), SIGNAL["csf"], tissue)
        tissue = np.where(neck, SIGNAL["muscle"], tissue)
        img[sl] = np.where(inside, tissue, layer)
        brain[sl] = inside & ~neck
    del folds, sulci, texture

    instances = np.zeros(grid.shape_zyx, dtype=np.uint8)
    lesions: list[RawLesion] = []
    for c, r, contrast in _place_lesions(rng, d_min):
        lobes = np.array([rng.uniform(0.0, 0.15), *rng.uniform(0, 2 * np.pi, 3)])
        pad = 1.2 * r + 3 * max(grid.spacing_zyx)
        box = grid.box(c - pad, c + pad)
        # MS-like plaques have fuzzy borders: a wider edge than the voxel.
        f = blob_fraction(grid, box, c, r, 1.5 * edge, lobes) * brain[box]
        mask = (f >= 0.5) & (instances[box] == 0)
        if not mask.any():  # smaller than a voxel of a very coarse grid
            continue
        value = rng.uniform(780, 900) if contrast == "hyper" else rng.uniform(170, 280)
        sub = img[box]
        sub += f * (np.float32(value) - sub)
        instances[box][mask] = len(lesions) + 1
        lesions.append(RawLesion(tuple(float(v) for v in c), 2 * r, contrast))  # type: ignore[arg-type]

    # A mild receive-coil bias field (±10 %), then Rician noise: the magnitude of complex Gaussian noise.
    ax, ay, az = rng.uniform(-0.1, 0.1, 3)
    bias = 1 + ax * x / HEAD[0] + ay * y / HEAD[1] + az * grid.zr[:, None, None] / HEAD[2]
    img *= bias.astype(np.float32)
    sigma = np.float32(rng.uniform(12, 20))
    real = img + sigma * rng.standard_normal(grid.shape_zyx, dtype=np.float32)
    imag = sigma * rng.standard_normal(grid.shape_zyx, dtype=np.float32)
    img = np.sqrt(real * real + imag * imag)
    np.rint(img, out=img)
    return np.clip(img, 0, 4095).astype(np.int16), instances, lesions
