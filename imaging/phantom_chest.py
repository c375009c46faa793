"""The synthetic chest CT's anatomy, in HU: body, ribs, spine, lungs, vessel trees, nodules, noise.

Coordinates are mm offsets from the body's centre in patient axes: +x towards the patient's left,
+y posterior, +z towards the head (LPS). Shapes are analytic, so nodules can be placed against the
lung wall or beside a vessel before any voxel exists; the voxels then decide what each nodule truly
touches (``touches`` is measured on the masks, never assumed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom_fields import (
    Grid,
    blob_fraction,
    blur_with_noise,
    random_unit,
    sphere_points,
    tube_fraction,
)

# Physical size of the default field of view (mm, z/y/x): a 384 mm wide scan of a 340 mm wide body.
EXTENT_ZYX = (256.0, 384.0, 384.0)
DEFAULT_SHAPE_ZYX = (128, 192, 192)

BODY_A, BODY_B_ANT, BODY_B_POST = 170.0, 118.0, 108.0  # body ellipse semi-axes (x; y anterior/posterior)
FAT_MM = 14.0  # subcutaneous fat
RIB_A, RIB_B_ANT, RIB_B_POST = 146.0, 95.0, 86.0  # the ribcage's centreline ellipse
RIB_PITCH, RIB_DROP = 27.0, 70.0  # mm between ribs; how far a rib descends from back to front
LUNG_CX, LUNG_CY, LUNG_CZ = 80.0, -5.0, 5.0
LUNG_AX, LUNG_AY, LUNG_AZ = 74.0, 97.0, 120.0
LUNG_Z = (-95.0, 124.0)  # lowest costophrenic point, apex
HILUM = {-1: (-42.0, 8.0, 12.0), 1: (42.0, 8.0, 10.0)}  # where each lung's vessel trees start

HU = {"air": -1000.0, "fat": -100.0, "soft": 40.0, "lung": -850.0, "vessel": 40.0, "csf": 15.0}


@dataclass(frozen=True)
class RawNodule:
    centre_xyz: tuple[float, float, float]  # mm offsets
    diameter_mm: float
    kind: str  # "solid" | "part-solid"
    touches: str | None  # measured on the masks


def cage_scale(z):
    """The ribcage narrows towards the apex (1 below z = 30 mm, 0.65 at the top)."""
    return 1.0 - 0.35 * np.clip((z - 30.0) / 95.0, 0.0, 1.0) ** 2


def in_lung(x, y, z) -> np.ndarray:
    """True inside either lung (broadcasting arrays of mm offsets)."""
    inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)
    for side in (-1, 1):
        u = (x - side * LUNG_CX) / LUNG_AX
        v = (y - LUNG_CY) / LUNG_AY
        w = (z - LUNG_CZ) / LUNG_AZ
        rho2 = u * u + v * v
        # Diaphragm: a dome, the right one (x < 0) higher (the liver); lungs reach lowest at the sides.
        dome = LUNG_Z[0] + (12.0 if side < 0 else 0.0) + 45.0 * np.clip(1.0 - 1.6 * rho2, 0.0, 1.0)
        inside |= (rho2 + w * w < 1.0) & (z > dome)
    k = cage_scale(z)
    b_cage = np.where(y < 0, RIB_B_ANT, RIB_B_POST) * k - 9.0
    inside &= (x / (RIB_A * k - 9.0)) ** 2 + (y / b_cage) ** 2 < 1.0  # inside the ribcage
    # Mediastinum: narrowest behind the sternum's middle, wider in front and at the spine, curved.
    inside &= np.abs(x) > 16.0 + 14.0 * ((y - 10.0) / 90.0) ** 2 + 8.0 * np.clip((z - 60.0) / 60.0, 0.0, 1.0)
    inside &= ((x - 25.0) / 62.0) ** 2 + ((y + 30.0) / 55.0) ** 2 + ((z + 55.0) / 55.0) ** 2 > 1.0  # heart
    inside &= (x / 34.0) ** 2 + ((y - 68.0) / 30.0) ** 2 > 1.0  # spine and paravertebral muscle
    inside &= ((x - 24.0) / 15.0) ** 2 + ((y - 40.0) / 15.0) ** 2 > 1.0  # descending aorta
    return inside


def _body(grid: Grid) -> np.ndarray:
    """Air, subcutaneous fat and soft tissue, with a gentle texture (2D outline, the same on every slice)."""
    x = grid.xr[None, :]
    y = grid.yr[:, None]
    b = np.where(y < 0, BODY_B_ANT, BODY_B_POST)
    body = (x / BODY_A) ** 2 + (y / b) ** 2 < 1.0
    inner = (x / (BODY_A - FAT_MM)) ** 2 + (y / (b - FAT_MM)) ** 2 < 1.0
    plane = np.where(inner, HU["soft"], np.where(body, HU["fat"], HU["air"])).astype(np.float32)
    return np.repeat(plane[None], grid.shape_zyx[0], axis=0)


def _add_bones(grid: Grid, img: np.ndarray) -> None:
    """Paint ribs, vertebrae and sternum into ``img``, slab by slab, only on the pixels near them."""
    nz = grid.shape_zyx[0]
    yy, xx = grid.yr[:, None], grid.xr[None, :]
    b2 = np.where(yy < 0, RIB_B_ANT, RIB_B_POST)
    r1 = np.sqrt((xx / RIB_A) ** 2 + (yy / b2) ** 2)  # the ribcage ellipse at full width is r1 = 1
    near_spine = (np.abs(xx) < 22.0) & (yy > 40.0) & (yy < 120.0)
    near_sternum = (np.abs(xx) < 20.0) & (np.abs(yy + BODY_B_ANT - 15.0) < 9.0)
    for z0 in range(0, nz, 16):
        sl = slice(z0, min(nz, z0 + 16))
        k_lo, k_hi = float(cage_scale(grid.zr[sl].max())), float(cage_scale(grid.zr[sl].min()))
        tol = 6.0 / (RIB_B_POST * k_lo)
        py, px = np.nonzero(((r1 > k_lo * (1 - tol)) & (r1 < k_hi * (1 + tol))) | near_spine | near_sternum)
        x, y, z = grid.xr[px][None], grid.yr[py][None], grid.zr[sl][:, None]
        # Ribs: a family of bands around the ribcage, sloping down from the spine to the front.
        k = cage_scale(z)
        b_rib = np.where(y < 0, RIB_B_ANT, RIB_B_POST)
        r_ell = np.sqrt((x / (RIB_A * k)) ** 2 + (y / (b_rib * k)) ** 2)
        radial = np.sqrt(x * x + y * y) * (1.0 - 1.0 / np.maximum(r_ell, 1e-3))  # mm off the centreline
        theta = np.arctan2(x / RIB_A, y / b_rib)  # 0 at the back, ±π at the front
        phase = np.mod(z + RIB_DROP * np.abs(theta) / np.pi - 3.0, RIB_PITCH) - RIB_PITCH / 2
        q = (radial / 4.5) ** 2 + (phase / 5.0) ** 2
        # No ribs over the sternum (the costal cartilage gap), nor below the chest.
        ribs = (q < 1.0) & (np.abs(theta) < 0.86 * np.pi) & (z > -110.0) & (z < 122.0)
        rib_hu = np.where(q < 0.35, 380.0, 750.0)  # marrow inside a cortical shell
        # Vertebral bodies with discs every 28 mm, a cortical rim, the canal and the posterior arch.
        spine_d2 = x * x + (y - 62.0) ** 2
        canal_d2 = x * x + (y - 90.0) ** 2
        disc = np.mod(z + 7.0, 28.0) < 5.0
        vb = spine_d2 < 17.0**2
        vb_hu = np.where(disc, 80.0, np.where(spine_d2 > 14.5**2, 700.0, 260.0))
        arch = (canal_d2 > 7.0**2) & (canal_d2 < 12.0**2) & ~disc
        spinous = ((x / 4.5) ** 2 + ((y - 106.0) / 9.0) ** 2 < 1.0) & ~disc
        sternum = ((x / 18.0) ** 2 + ((y + BODY_B_ANT - 15.0) / 7.0) ** 2 < 1.0) & (z > -70.0) & (z < 110.0)
        csf = canal_d2 <= 7.0**2
        slab = img[sl]
        slab[:, py, px] = np.select(
            [vb, csf, ribs, arch | spinous, sternum],
            [vb_hu, np.float32(HU["csf"]), rib_hu, np.float32(650.0), np.float32(450.0)],
            slab[:, py, px],
        )


def _lung_mask(grid: Grid) -> np.ndarray:
    out = np.zeros(grid.shape_zyx, dtype=bool)
    x = grid.xr[None, None, :]
    y = grid.yr[None, :, None]
    for z0 in range(0, grid.shape_zyx[0], 16):
        sl = slice(z0, min(grid.shape_zyx[0], z0 + 16))
        out[sl] = in_lung(x, y, grid.zr[sl][:, None, None])
    return out


def vessel_trees(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Segments (a, b, radius_a, radius_b) of branching, tapering arterial and venous trees.

    Two trees per lung start a few cm apart at the hilum, so their branches cross each other. Each
    segment forks into two narrower ones (Murray-like radius ratio 0.8); growth stops outside the lung.
    """
    segments: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    for side in (-1, 1):
        hilum = np.asarray(HILUM[side])
        for tree, offset in enumerate(((0.0, 0.0, 0.0), (0.0, -14.0, -22.0))):
            root = hilum + np.asarray(offset)
            for main in ((0.55, 0.0, 0.85), (1.0, 0.1, 0.0), (0.6, 0.2, -0.8), (0.3, 0.8, -0.5)):
                d = np.asarray(main) * np.array([side, 1.0, 1.0]) + rng.normal(0, 0.15, 3)
                stack = [(root, d / np.linalg.norm(d), 32.0 - 4 * tree, 6.0 - 0.8 * tree, 0)]
                while stack:
                    a, d, length, r, depth = stack.pop()
                    b = a + d * length
                    r_end = r * 0.9
                    segments.append((a, b, r, r_end))
                    if depth >= 6 or r_end < 0.6 or not in_lung(*b):
                        continue
                    away = b - hilum
                    away /= np.linalg.norm(away)
                    perp = np.cross(d, rng.normal(size=3))
                    perp /= np.linalg.norm(perp)
                    for sign in (1.0, -1.0):
                        ang = rng.uniform(0.35, 0.75)
                        nd = np.cos(ang) * d + sign * np.sin(ang) * perp + 0.35 * away + rng.normal(0, 0.1, 3)
                        nd /= np.linalg.norm(nd)
                        stack.append((b, nd, length * rng.uniform(0.68, 0.85), r_end * 0.8, depth + 1))
    return segments


def _rasterise_vessels(grid: Grid, segments, edge: float) -> np.ndarray:
    frac = np.zeros(grid.shape_zyx, dtype=np.float32)
    for a, b, ra, rb in segments:
        pad = max(ra, rb) + 2 * edge
        box = grid.box(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
        if any(s.stop <= s.start for s in box):
            continue
        np.maximum(frac[box], tube_fraction(grid, box, a, b, ra, rb, edge), out=frac[box])
    return frac


def _place_nodules(
    rng: np.random.Generator, segments, d_min: float, voxel: float
) -> list[tuple[np.ndarray, float, str, str]]:
    """(centre, radius, kind, intended contact) for 2–6 non-overlapping nodules inside the lungs."""
    n = int(rng.integers(2, 7))
    placed: list[tuple[np.ndarray, float, str, str]] = []
    thick = [s for s in segments if s[3] >= 1.0 and in_lung(*((s[0] + s[1]) / 2))]
    for _ in range(n):
        kind = "part-solid" if rng.random() < 0.35 else "solid"
        # A part-solid nodule needs room for a solid core of at least 3 voxels inside its ground glass.
        lo = min(max(d_min, 8.0, 5.0 * voxel), 30.0) if kind == "part-solid" else d_min
        d = min(float(np.exp(rng.uniform(np.log(lo), np.log(30.0)))), 30.0)
        r = d / 2
        target = str(rng.choice(["pleura", "vessel", "free"], p=[0.4, 0.3, 0.3]))
        for _try in range(60):
            side = int(rng.choice([-1, 1]))
            if target == "pleura":
                start = np.array([side * LUNG_CX, LUNG_CY, 20.0])
                u = random_unit(rng, 0.5)
                t = np.arange(0.0, 220.0, 0.5)
                pts = start + t[:, None] * u
                outside = ~in_lung(pts[:, 0], pts[:, 1], pts[:, 2])
                if not outside.any():
                    continue
                t_wall = t[int(np.argmax(outside))]
                c = start + u * (t_wall - 0.85 * r)
            elif target == "vessel" and thick:
                a, b, ra, rb = thick[int(rng.integers(len(thick)))]
                axis = (b - a) / np.linalg.norm(b - a)
                p = a + rng.uniform(0.2, 0.8) * (b - a)
                v = np.cross(axis, rng.normal(size=3))
                v /= np.linalg.norm(v)
                c = p + v * (r + 0.8 * (ra + rb) / 2)
            else:
                c = np.array([side * LUNG_CX, LUNG_CY, LUNG_CZ]) + rng.uniform(-1, 1, 3) * [50, 80, 90]
                sp = sphere_points(c, r + 4.0)
                if not in_lung(sp[:, 0], sp[:, 1], sp[:, 2]).all():
                    continue
            if not in_lung(*c):
                continue
            if all(np.linalg.norm(c - q) > 1.15 * (r + rq) + 3.0 for q, rq, _, _ in placed):
                placed.append((c, r, kind, target))
                break
    return placed


def build_chest(rng: np.random.Generator, grid: Grid) -> tuple[np.ndarray, np.ndarray, list[RawNodule]]:
    """(HU as int16, nodule instance map uint8, nodules) on ``grid``."""
    edge = float(min(grid.spacing_zyx))
    d_min = min(max(3.0, 3.0 * max(grid.spacing_zyx)), 30.0)  # ≥ 3 voxels on every axis, unless the grid is coarse
    img = _body(grid)
    lung = _lung_mask(grid)
    y = grid.yr[None, :, None]
    parenchyma = np.broadcast_to(HU["lung"] + 35.0 * (y - LUNG_CY) / LUNG_AY, grid.shape_zyx)
    img[lung] = parenchyma[lung]  # denser towards the back, as in a supine patient
    segments = vessel_trees(rng)
    vessels = _rasterise_vessels(grid, segments, edge)
    vessels *= lung
    img += vessels * (HU["vessel"] - img)
    _add_bones(grid, img)

    labels = np.zeros(grid.shape_zyx, dtype=np.uint8)
    nodules: list[RawNodule] = []
    for c, r, kind, target in _place_nodules(rng, segments, d_min, max(grid.spacing_zyx)):
        lobes = np.array([rng.uniform(0.0, 0.12), *rng.uniform(0, 2 * np.pi, 3)])
        pad = 1.15 * r + 3 * max(grid.spacing_zyx)
        box = grid.box(c - pad, c + pad)
        f = blob_fraction(grid, box, c, r, edge, lobes) * lung[box]
        mask = (f >= 0.5) & (labels[box] == 0)
        if not mask.any():  # smaller than a voxel of a very coarse grid
            continue
        sub = img[box]
        if kind == "solid":
            sub += f * np.maximum(rng.uniform(10, 50) - sub, 0)
        else:
            # Ground glass over the whole nodule (vessels stay visible through it), a solid core inside.
            sub += f * np.maximum(rng.uniform(-600, -420) - sub, 0)
            rc = min(max(r * rng.uniform(0.3, 0.55), 1.5 * max(grid.spacing_zyx)), 0.7 * r)
            core_c = c + random_unit(rng) * rng.uniform(0, 0.3) * (r - rc)
            fc = blob_fraction(grid, box, core_c, rc, edge, lobes * [0.5, 1, 1, 1]) * lung[box]
            sub += fc * np.maximum(rng.uniform(0, 40) - sub, 0)
        value = len(nodules) + 1
        labels[box][mask] = value
        grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
        touches_pleura = bool((grown & ~lung[box] & (img[box] > -500)).any())
        touches_vessel = bool((grown & (vessels[box] > 0.5)).any())
        touched = [t for t, hit in (("pleura", touches_pleura), ("vessel", touches_vessel)) if hit]
        touches = target if target in touched else (touched[0] if touched else None)
        nodules.append(RawNodule(tuple(float(v) for v in c), 2 * r, kind, touches))  # type: ignore[arg-type]
    del vessels, lung

    img = blur_with_noise(rng, img, rng.uniform(15, 25), np.maximum(0.7 / np.asarray(grid.spacing_zyx), 0.5))
    np.rint(img, out=img)
    np.clip(img, -1024, 3071, out=img)
    return img.astype(np.int16), labels, nodules
