"""The synthetic chest CT's anatomy, in HU: body, ribs, spine, lungs with fissures, airways, vessel
trees, mediastinum, upper abdomen, lower neck, nodules, and the scanner's blur and noise.

Every case is drawn differently, as SynthSeg trains (Billot et al., Medical Image Analysis 2023):
what a detector must learn to ignore is random — patient size, position and fat, how far the field
of view reaches into the abdomen or the neck, lung density, slice thickness, kernel and noise — while
what defines a nodule is kept: a focal opacity inside the lung, of a Fleischner / Lung-RADS type
(solid, part-solid, ground-glass, calcified; juxta-pleural, juxta-vascular, perifissural; smooth,
lobulated or spiculated), 3–30 mm, now and then a mass of 30–50 mm.

Anatomy is built in its own frame: mm offsets from the body's centre in patient axes (+x towards the
patient's left, +y posterior, +z towards the head; LPS) for a body of standard size. A case's
:class:`Acquisition` maps it onto the scanner's grid (scale, rotation about z, table offset, the z of
the field of view). Shapes are analytic, so nodules can be placed against the lung wall, a vessel or
a fissure before any voxel exists; the voxels then decide what each nodule truly touches (``touches``
is measured on the masks, never assumed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom_fields import (
    Grid,
    blob_fraction,
    random_unit,
    smooth_field,
    soft_fraction,
    sphere_points,
    tube_fraction,
)

# Physical size of the default field of view (mm, z/y/x): a 384 mm wide scan of a 340 mm wide body.
EXTENT_ZYX = (256.0, 384.0, 384.0)
DEFAULT_SHAPE_ZYX = (128, 192, 192)

BODY_A, BODY_B_ANT, BODY_B_POST = 170.0, 118.0, 124.0  # body ellipse semi-axes (x; y anterior/posterior)
RIB_A, RIB_B_ANT, RIB_B_POST = 146.0, 95.0, 86.0  # the ribcage's centreline ellipse
RIB_PITCH, RIB_DROP = 27.0, 70.0  # mm between ribs; how far a rib descends from back to front
LUNG_CX, LUNG_CY, LUNG_CZ = 80.0, -5.0, 5.0
LUNG_AX, LUNG_AY, LUNG_AZ = 74.0, 97.0, 120.0
LUNG_Z = (-95.0, 124.0)  # lowest costophrenic point, apex
HILUM = {-1: (-42.0, 8.0, 12.0), 1: (42.0, 8.0, 10.0)}  # where each lung's vessel trees start
CARINA = (0.0, 8.0, 45.0)
NECK_Z = 128.0  # above this the body narrows to the neck

HU = {"air": -1000.0, "fat": -95.0, "soft": 40.0, "vessel": 40.0, "csf": 15.0, "fissure": -600.0}
KINDS = ("solid", "part-solid", "ground-glass", "calcified", "mass")
KIND_P = (0.42, 0.15, 0.25, 0.14, 0.04)
TARGETS = ("pleura", "vessel", "fissure", "free")
TARGET_P = (0.3, 0.25, 0.15, 0.3)


@dataclass(frozen=True)
class RawNodule:
    centre_xyz: tuple[float, float, float]  # mm offsets on the scanner's grid
    diameter_mm: float
    kind: str  # one of KINDS; "mass" when over 30 mm
    touches: str | None  # "pleura" | "vessel" | "fissure" | None, measured on the masks
    margin: str = "smooth"  # "smooth" | "lobulated" | "spiculated"
    calcification: str | None = None  # calcified ones: "central" | "diffuse"


@dataclass(frozen=True)
class Acquisition:
    """One case's patient and scan: the variety a detector must ignore."""

    scale: float  # in-plane body size (1 = a 340 mm wide body)
    fat_mm: float  # subcutaneous fat
    angle: float  # rotation about z, radians
    offset_xy: tuple[float, float]  # mm, the body's centre off the scanner's
    z_centre: float  # anatomy z (mm) at the grid's centre: < 0 reaches the abdomen, > 0 the neck
    lung_hu: float  # parenchyma at the lungs' middle (depth of inspiration)
    slice_mm: float  # slice thickness: the FWHM of the slice profile
    kernel: str  # "smooth" | "sharp"
    noise_hu: float  # standard deviation of the noise

    def anatomy_xy(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in the anatomy frame of every in-plane voxel, shape (ny, nx) each."""
        xs = grid.xr[None, :] - np.float32(self.offset_xy[0])
        ys = grid.yr[:, None] - np.float32(self.offset_xy[1])
        c, s, k = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle)), np.float32(self.scale)
        return (c * xs + s * ys) / k, (c * ys - s * xs) / k

    def anatomy_z(self, grid: Grid) -> np.ndarray:
        return grid.zr + np.float32(self.z_centre)

    def to_scanner(self, p_xyz) -> np.ndarray:
        """Anatomy-frame points (..., 3) → mm offsets on the grid."""
        p = np.asarray(p_xyz, dtype=np.float64)
        c, s = np.cos(self.angle), np.sin(self.angle)
        x, y = p[..., 0] * self.scale, p[..., 1] * self.scale
        return np.stack(
            [c * x - s * y + self.offset_xy[0], s * x + c * y + self.offset_xy[1], p[..., 2] - self.z_centre], axis=-1
        )

    def describe(self) -> str:
        return f"{self.slice_mm:.1f} mm, {self.kernel}, noise {self.noise_hu:.0f} HU"  # DICOM LO: ≤ 64 characters


def draw_acquisition(rng: np.random.Generator) -> Acquisition:
    """Half the cases reach into the upper abdomen, a fifth into the lower neck; thin to 5 mm slices."""
    fov = rng.choice(3, p=[0.5, 0.2, 0.3])
    z_centre = (rng.uniform(-75.0, -35.0), rng.uniform(15.0, 40.0), rng.uniform(-12.0, 8.0))[int(fov)]
    return Acquisition(
        scale=float(rng.uniform(0.88, 1.08)),
        fat_mm=float(rng.uniform(6.0, 26.0)),
        angle=float(np.deg2rad(rng.uniform(-6.0, 6.0))),
        offset_xy=(float(rng.uniform(-15.0, 15.0)), float(rng.uniform(-20.0, 20.0))),
        z_centre=float(z_centre),
        lung_hu=float(rng.uniform(-880.0, -820.0)),
        slice_mm=float(np.exp(rng.uniform(np.log(0.6), np.log(5.0)))),
        kernel=str(rng.choice(["smooth", "sharp"])),
        noise_hu=float(np.exp(rng.uniform(np.log(8.0), np.log(40.0)))),
    )


def cage_scale(z):
    """The ribcage narrows towards the apex (1 below z = 30 mm, 0.65 at the top)."""
    return 1.0 - 0.35 * np.clip((z - 30.0) / 95.0, 0.0, 1.0) ** 2


def _dome(side: int, x, y):
    """The diaphragm under one lung: a dome, the right one (x < 0) higher (the liver), lowest at the sides."""
    rho2 = ((x - side * LUNG_CX) / LUNG_AX) ** 2 + ((y - LUNG_CY) / LUNG_AY) ** 2
    return LUNG_Z[0] + (12.0 if side < 0 else 0.0) + 45.0 * np.clip(1.0 - 1.6 * rho2, 0.0, 1.0)


def diaphragm_z(x, y):
    """The diaphragm's upper surface (z, mm) under every (x, y)."""
    return np.maximum(_dome(-1, x, y), _dome(1, x, y))


def in_lung(x, y, z) -> np.ndarray:
    """True inside either lung (broadcasting arrays of anatomy-frame mm)."""
    inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)
    for side in (-1, 1):
        u = (x - side * LUNG_CX) / LUNG_AX
        v = (y - LUNG_CY) / LUNG_AY
        w = (z - LUNG_CZ) / LUNG_AZ
        inside |= (u * u + v * v + w * w < 1.0) & (z > _dome(side, x, y))
    k = cage_scale(z)
    b_cage = np.where(y < 0, RIB_B_ANT, RIB_B_POST) * k - 9.0
    inside &= (x / (RIB_A * k - 9.0)) ** 2 + (y / b_cage) ** 2 < 1.0  # inside the ribcage
    # Mediastinum: narrowest behind the sternum's middle, wider in front and at the spine, curved.
    inside &= np.abs(x) > 16.0 + 14.0 * ((y - 10.0) / 90.0) ** 2 + 8.0 * np.clip((z - 60.0) / 60.0, 0.0, 1.0)
    inside &= _heart_q(x, y, z) > 1.0
    inside &= (x / 34.0) ** 2 + ((y - 68.0) / 30.0) ** 2 > 1.0  # spine and paravertebral muscle
    inside &= ((x - 24.0) / 15.0) ** 2 + ((y - 40.0) / 15.0) ** 2 > 1.0  # descending aorta
    return inside


def _heart_q(x, y, z):
    return ((x - 25.0) / 62.0) ** 2 + ((y + 30.0) / 55.0) ** 2 + ((z + 55.0) / 55.0) ** 2


def _ellipsoid(x, y, z, c, a) -> np.ndarray:
    return ((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((z - c[2]) / a[2]) ** 2 < 1.0


@dataclass(frozen=True)
class Fissures:
    """The major fissures (a tilted plane through each lung) and the right minor one (horizontal)."""

    normal_yz: tuple[float, float]  # unit (ny, nz) of the major fissures' planes
    y0: float  # where they cross z = 0
    minor_z: float

    def major(self, x, y, z):
        """Signed distance (mm) from the major fissure: > 0 in the lower lobe. On an axial slice it runs
        obliquely, from behind the hilum to the front of the lung's lateral side."""
        return self.normal_yz[0] * (y - self.y0 + 0.4 * (np.abs(x) - LUNG_CX)) + self.normal_yz[1] * z

    def distance(self, x, y, z):
        major = self.major(x, y, z)
        minor = np.where((x < 0) & (major < 0), np.abs(z - self.minor_z), np.inf)
        return np.minimum(np.abs(major), minor)


def draw_fissures(rng: np.random.Generator) -> Fissures:
    tilt = np.arctan2(110.0, 140.0) + rng.uniform(-0.1, 0.1)  # from posterior-superior to anterior-inferior
    return Fissures((float(np.cos(tilt)), float(-np.sin(tilt))), float(rng.uniform(-5.0, 15.0)),
                    float(rng.uniform(8.0, 28.0)))  # fmt: skip


@dataclass(frozen=True)
class Abdomen:
    """The upper abdomen's drawn parts: where the stomach's air-fluid level lies and the bowel gas."""

    stomach_level: float  # y (mm) of the air-fluid level; supine, the air is anterior (smaller y)
    gas: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]  # (centre, semi-axes)


def draw_abdomen(rng: np.random.Generator) -> Abdomen:
    n = int(rng.integers(4, 11))
    centres = np.column_stack([rng.uniform(-110, 110, n), rng.uniform(-85, 10, n), rng.uniform(-230, -115, n)])
    axes = rng.uniform(5.0, 18.0, (n, 3))
    gas = tuple((tuple(map(float, c)), tuple(map(float, a))) for c, a in zip(centres, axes, strict=True))
    return Abdomen(float(rng.uniform(-45.0, -20.0)), gas)


STOMACH = ((58.0, -30.0, -95.0), (42.0, 36.0, 40.0))
SPLEEN = ((92.0, 55.0, -100.0), (28.0, 40.0, 52.0))
LIVER = ((-45.0, -5.0, -100.0), (105.0, 95.0, 75.0))
KIDNEYS = (((-72.0, 62.0, -200.0), (28.0, 24.0, 55.0)), ((72.0, 62.0, -190.0), (28.0, 24.0, 55.0)))
THYROID = (((-18.0, -2.0, 160.0), (9.0, 11.0, 20.0)), ((18.0, -2.0, 160.0), (9.0, 11.0, 20.0)))


def _slab(x, y, z, acq: Acquisition, fis: Fissures, abd: Abdomen, tex: np.ndarray, edge: float):
    """(HU, lung mask, fissure fraction) of a few slices; x, y (1, ny, nx) and z (n, 1, 1) in the anatomy frame."""
    neck = np.clip((z - NECK_Z) / 45.0, 0.0, 1.0)
    a = BODY_A * (1.0 - 0.45 * neck)
    b = np.where(y < 0, BODY_B_ANT * (1.0 - 0.45 * neck), BODY_B_POST * (1.0 - 0.1 * neck))
    fat = acq.fat_mm / acq.scale
    body = (x / a) ** 2 + (y / b) ** 2 < 1.0
    inner = (x / (a - fat)) ** 2 + (y / (b - fat)) ** 2 < 1.0
    img = np.where(inner, np.float32(HU["soft"]), np.where(body, np.float32(HU["fat"]), np.float32(HU["air"])))
    dz = diaphragm_z(x, y)
    wall = (x / (RIB_A - 12.0)) ** 2 + (y / (np.where(y < 0, RIB_B_ANT, RIB_B_POST) - 12.0)) ** 2 < 1.0
    if float(z.min()) < -30.0:  # the upper abdomen, under the diaphragm
        cavity = wall & (z < dz - 5.0) & ((x / 42.0) ** 2 + ((y - 70.0) / 36.0) ** 2 > 1.0)
        img = np.where(cavity, np.where(tex > 0.25, np.float32(28.0), np.float32(HU["fat"])), img)  # bowel in fat
        liver = cavity & _ellipsoid(x, y, z, *LIVER) & (x < 25.0 - 0.4 * y)
        stomach = cavity & ~liver & _ellipsoid(x, y, z, *STOMACH)
        lumen = stomach & _ellipsoid(x, y, z, STOMACH[0], np.asarray(STOMACH[1]) - 4.0)
        organs = liver | stomach | _ellipsoid(x, y, z, *SPLEEN)
        img = np.where(liver, 55.0 + 6.0 * tex, img)
        img = np.where(stomach, np.float32(HU["soft"]), img)
        img = np.where(lumen, np.where(y < abd.stomach_level, np.float32(HU["air"]), np.float32(12.0)), img)
        img = np.where(cavity & _ellipsoid(x, y, z, *SPLEEN) & ~liver & ~stomach, np.float32(48.0), img)
        for c, ax in KIDNEYS:
            sinus = _ellipsoid(x, y, z, (c[0] * 0.88, c[1], c[2]), (9.0, 9.0, 30.0))
            img = np.where(_ellipsoid(x, y, z, c, ax), np.where(sinus, np.float32(HU["fat"]), np.float32(32.0)), img)
            organs |= _ellipsoid(x, y, z, c, ax)
        for c, ax in abd.gas:
            img = np.where(cavity & ~organs & _ellipsoid(x, y, z, c, ax), np.float32(HU["air"]), img)
    if float(z.max()) > NECK_Z:
        for c, ax in THYROID:
            img = np.where(_ellipsoid(x, y, z, c, ax), np.float32(90.0), img)
    k = cage_scale(z)
    cage = (x / (RIB_A * k - 9.0)) ** 2 + (y / (np.where(y < 0, RIB_B_ANT, RIB_B_POST) * k - 9.0)) ** 2 < 1.0
    lung = in_lung(x, y, z)
    mediastinum = cage & ~lung & (np.abs(x) < 55.0) & (y < 48.0) & (z > dz) & (z < 118.0)
    img = np.where(mediastinum, np.float32(HU["fat"]), img)
    img = np.where(cage & (_heart_q(x, y, z) < 1.0), np.float32(42.0), img)  # in its pericardial fat
    # Parenchyma denser towards the back (a supine patient), crossed by the fissures.
    img = np.where(lung, np.float32(acq.lung_hu) + 35.0 * (y - LUNG_CY) / LUNG_AY, img)
    sheet = soft_fraction(0.5 - fis.distance(x, y, z) * np.float32(acq.scale), edge) * lung
    img += sheet * (np.float32(HU["fissure"]) - img)
    return img.astype(np.float32, copy=False), lung, sheet


def _paint(grid: Grid, acq: Acquisition, fis: Fissures, abd: Abdomen, tex: np.ndarray):
    """The slab-by-slab anatomy (so a 512² grid never holds more than 16 slices of temporaries)."""
    xa, ya = acq.anatomy_xy(grid)
    za = acq.anatomy_z(grid)
    img = np.empty(grid.shape_zyx, np.float32)
    lung = np.empty(grid.shape_zyx, bool)
    sheet = np.empty(grid.shape_zyx, np.float32)
    edge = float(min(grid.spacing_zyx))
    for z0 in range(0, grid.shape_zyx[0], 16):
        sl = slice(z0, min(grid.shape_zyx[0], z0 + 16))
        img[sl], lung[sl], sheet[sl] = _slab(xa[None], ya[None], za[sl][:, None, None], acq, fis, abd, tex[sl], edge)
    return img, lung, sheet


def _add_bones(grid: Grid, acq: Acquisition, img: np.ndarray) -> None:
    """Paint ribs, vertebrae, sternum and clavicles into ``img``, slab by slab, only on the pixels near them."""
    nz = grid.shape_zyx[0]
    yy, xx = acq.anatomy_xy(grid)[::-1]
    za = acq.anatomy_z(grid)
    b2 = np.where(yy < 0, RIB_B_ANT, RIB_B_POST)
    r1 = np.sqrt((xx / RIB_A) ** 2 + (yy / b2) ** 2)  # the ribcage ellipse at full width is r1 = 1
    near_spine = (np.abs(xx) < 22.0) & (yy > 40.0) & (yy < 120.0)
    near_sternum = (np.abs(xx) < 20.0) & (np.abs(yy + BODY_B_ANT - 15.0) < 9.0)
    near_clavicle = (yy < -30.0) & (yy > -120.0) & (np.abs(xx) > 10.0) & (np.abs(xx) < 140.0)
    for z0 in range(0, nz, 16):
        sl = slice(z0, min(nz, z0 + 16))
        k_lo, k_hi = float(cage_scale(za[sl].max())), float(cage_scale(za[sl].min()))
        tol = 6.0 / (RIB_B_POST * k_lo)
        near = ((r1 > k_lo * (1 - tol)) & (r1 < k_hi * (1 + tol))) | near_spine | near_sternum
        if za[sl].max() > 105.0:
            near |= near_clavicle
        py, px = np.nonzero(near)
        x, y, z = xx[py, px][None], yy[py, px][None], za[sl][:, None]
        # Ribs: a family of bands around the ribcage, sloping down from the spine to the front.
        k = cage_scale(z)
        b_rib = np.where(y < 0, RIB_B_ANT, RIB_B_POST)
        r_ell = np.sqrt((x / (RIB_A * k)) ** 2 + (y / (b_rib * k)) ** 2)
        radial = np.sqrt(x * x + y * y) * (1.0 - 1.0 / np.maximum(r_ell, 1e-3))  # mm off the centreline
        theta = np.arctan2(x / RIB_A, y / b_rib)  # 0 at the back, ±π at the front
        phase = np.mod(z + RIB_DROP * np.abs(theta) / np.pi - 3.0, RIB_PITCH) - RIB_PITCH / 2
        q = (radial / 4.5) ** 2 + (phase / 5.0) ** 2
        # No ribs over the sternum (the costal cartilage gap); the lowest (floating) ones only at the back.
        ribs = (q < 1.0) & (np.abs(theta) < 0.86 * np.pi) & (z > -150.0 + 40.0 * (np.abs(theta) > 0.5 * np.pi))
        ribs &= z < 122.0
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
        # Clavicles: from the top of the sternum out and back to the shoulders, rising a little.
        ax = np.abs(x)
        clav_y, clav_z = -100.0 + 0.3 * np.clip(ax - 20.0, 0, None), 114.0 + 0.12 * ax
        clavicle = (ax > 14.0) & (ax < 135.0) & ((y - clav_y) ** 2 + (z - clav_z) ** 2 < 7.0**2)
        csf = canal_d2 <= 7.0**2
        slab = img[sl]
        slab[:, py, px] = np.select(
            [vb, csf, ribs, arch | spinous, sternum | clavicle],
            [vb_hu, np.float32(HU["csf"]), rib_hu, np.float32(650.0), np.float32(450.0)],
            slab[:, py, px],
        )


def _grow(rng, root, d, length: float, r: float, r_min: float, max_depth: int, hilum) -> list:
    """Segments (a, b, radius_a, radius_b) of one branching, tapering tree from ``root`` along ``d``.

    Each segment forks into two narrower ones (Murray-like radius ratio 0.8); growth stops outside the lung.
    """
    segments = []
    stack = [(np.asarray(root, float), d / np.linalg.norm(d), length, r, 0)]
    while stack:
        a, d, length, r, depth = stack.pop()
        b = a + d * length
        r_end = r * 0.9
        segments.append((a, b, r, r_end))
        if depth >= max_depth or r_end < r_min or not in_lung(*b):
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


MAIN_BRANCHES = ((0.55, 0.0, 0.85), (1.0, 0.1, 0.0), (0.6, 0.2, -0.8), (0.3, 0.8, -0.5))


def vessel_trees(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Arterial and venous trees: two per lung, a few cm apart at the hilum, so their branches cross."""
    segments: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    for side in (-1, 1):
        hilum = np.asarray(HILUM[side])
        for tree, offset in enumerate(((0.0, 0.0, 0.0), (0.0, -14.0, -22.0))):
            for main in MAIN_BRANCHES:
                d = np.asarray(main) * np.array([side, 1.0, 1.0]) + rng.normal(0, 0.15, 3)
                segments += _grow(rng, hilum + offset, d, 32.0 - 4 * tree, 6.0 - 0.8 * tree, 0.6, 6, hilum)
    return segments


def airways(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Lumens of the trachea, the main bronchi and a few generations of bronchi (their walls are drawn around)."""
    carina = np.asarray(CARINA)
    segments = [(np.array([0.0, 2.0, 260.0]), carina, 8.5, 8.0)]
    for side in (-1, 1):
        hilum = np.asarray(HILUM[side]) + np.array([0.0, 4.0, 4.0])
        segments.append((carina, hilum, 6.0, 5.0))
        for main in MAIN_BRANCHES:
            d = np.asarray(main) * np.array([side, 1.0, 1.0]) + rng.normal(0, 0.15, 3)
            segments += _grow(rng, hilum, d, 26.0, 4.0, 1.0, 4, hilum)
    return segments


# Mediastinal and abdominal vessels (anatomy frame): (a, b, radius); pulmonary arteries join the hila.
GREAT_VESSELS = (
    ((12.0, -25.0, -30.0), (10.0, -22.0, 72.0), 14.0),  # ascending aorta
    ((10.0, -22.0, 72.0), (4.0, 10.0, 92.0), 12.0),  # arch
    ((4.0, 10.0, 92.0), (24.0, 40.0, 75.0), 12.0),
    ((24.0, 40.0, 75.0), (24.0, 40.0, -40.0), 12.0),  # descending aorta
    ((24.0, 40.0, -40.0), (8.0, 45.0, -80.0), 11.0),
    ((8.0, 45.0, -80.0), (8.0, 45.0, -300.0), 10.0),  # abdominal aorta
    ((-22.0, 25.0, -40.0), (-22.0, 25.0, -300.0), 11.0),  # inferior vena cava
    ((-30.0, -15.0, 30.0), (-30.0, -15.0, 115.0), 9.0),  # superior vena cava
    ((22.0, -45.0, -10.0), (20.0, -20.0, 28.0), 13.0),  # pulmonary trunk
    ((20.0, -20.0, 28.0), (-42.0, 8.0, 12.0), 9.0),
    ((20.0, -20.0, 28.0), (42.0, 8.0, 10.0), 9.0),
    ((-6.0, 36.0, 300.0), (-6.0, 36.0, -80.0), 7.0),  # oesophagus
)


def _rasterise(grid: Grid, segments, edge: float) -> np.ndarray:
    """Fraction of the union of scanner-frame tubes (a, b, ra, rb) in every voxel."""
    frac = np.zeros(grid.shape_zyx, dtype=np.float32)
    for a, b, ra, rb in segments:
        pad = max(ra, rb) + 2 * edge
        box = grid.box(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
        if any(s.stop <= s.start for s in box):
            continue
        np.maximum(frac[box], tube_fraction(grid, box, a, b, ra, rb, edge), out=frac[box])
    return frac


def _to_scanner(acq: Acquisition, segments, widen: float = 1.0, add: float = 0.0) -> list:
    return [(acq.to_scanner(a), acq.to_scanner(b), ra * acq.scale * widen + add, rb * acq.scale * widen + add)
            for a, b, ra, rb in segments]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A nodule to draw, in the anatomy frame; ``r_mm`` is physical (it does not scale with the body)."""

    centre: np.ndarray
    r_mm: float
    kind: str
    target: str
    margin: str
    calcification: str | None


def _size(rng: np.random.Generator, kind: str, target: str, d_min: float, voxel: float) -> float:
    """Log-uniform 3–30 mm (a third under 6 mm), masses 30–50 mm; calcified granulomas and perifissural
    nodules stay small, and a part-solid one needs room for a solid core of at least 3 voxels."""
    if kind == "mass":
        return float(rng.uniform(30.0, 50.0))
    hi = 12.0 if kind == "calcified" or target == "fissure" else 30.0
    lo = min(max(d_min, 8.0, 5.0 * voxel), 30.0) if kind == "part-solid" else min(d_min, hi)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def plan_nodules(rng: np.random.Generator, acq: Acquisition, fis: Fissures, segments, grid: Grid) -> list[Plan]:
    """2–6 non-overlapping nodules of random type, each wholly inside the lungs and the field of view."""
    voxel = max(grid.spacing_zyx)
    d_min = min(max(3.0, 1.5 * voxel), 30.0)  # ≥ 1.5 voxels, so that a coarse grid still shows it
    half = (np.asarray(grid.shape_zyx[::-1]) - 1) / 2 * np.asarray(grid.spacing_zyx[::-1])
    thick = [s for s in segments if s[3] >= 1.0 and in_lung(*((s[0] + s[1]) / 2))]
    placed: list[Plan] = []
    for _ in range(int(rng.integers(2, 7))):
        kind = str(rng.choice(KINDS, p=KIND_P))
        target = str(rng.choice(TARGETS, p=TARGET_P)) if kind != "mass" else str(rng.choice(["pleura", "free"]))
        if target == "fissure" and kind != "ground-glass":
            kind = "solid"  # perifissural nodules are solid (intrapulmonary lymph nodes)
        r_mm = _size(rng, kind, target, d_min, voxel) / 2
        spiculable = kind in ("solid", "part-solid", "mass") and r_mm >= 4.0
        margin = str(rng.choice(["smooth", "lobulated", "spiculated"], p=[0.4, 0.35, 0.25] if spiculable else
                                [0.6, 0.4, 0.0]))  # fmt: skip
        calcification = str(rng.choice(["central", "diffuse"])) if kind == "calcified" else None
        r = r_mm / acq.scale  # in the anatomy frame
        for _try in range(60):
            side = int(rng.choice([-1, 1]))
            if target == "pleura":
                start = np.array([side * LUNG_CX, LUNG_CY, rng.uniform(-40.0, 60.0)])
                u = random_unit(rng, 0.6)
                t = np.arange(0.0, 220.0, 0.5)
                pts = start + t[:, None] * u
                outside = ~in_lung(pts[:, 0], pts[:, 1], pts[:, 2])
                if not outside.any():
                    continue
                c = start + u * (t[int(np.argmax(outside))] - 0.85 * r)
            elif target == "vessel" and thick:
                a, b, ra, rb = thick[int(rng.integers(len(thick)))]
                axis = (b - a) / np.linalg.norm(b - a)
                v = np.cross(axis, rng.normal(size=3))
                v /= np.linalg.norm(v)
                c = a + rng.uniform(0.2, 0.8) * (b - a) + v * (r + 0.8 * (ra + rb) / 2)
            elif target == "fissure":
                x, y = side * LUNG_CX + rng.uniform(-35, 35), rng.uniform(-50.0, 60.0)
                if side < 0 and rng.random() < 0.4:  # the minor fissure
                    c = np.array([x, rng.uniform(-70.0, -10.0), fis.minor_z])
                else:
                    c = np.array([x, y, 0.0])
                    c[2] = -fis.major(*c) / fis.normal_yz[1]
                c[2] += rng.uniform(-0.3, 0.3) * r
                sp = sphere_points(c, r + 1.0)
                if not in_lung(sp[:, 0], sp[:, 1], sp[:, 2]).all():
                    continue
            else:
                c = np.array([side * LUNG_CX, LUNG_CY, LUNG_CZ]) + rng.uniform(-1, 1, 3) * [50, 80, 90]
                sp = sphere_points(c, r + 4.0)
                if not in_lung(sp[:, 0], sp[:, 1], sp[:, 2]).all():
                    continue
            if not in_lung(*c) or np.any(np.abs(acq.to_scanner(c)) > half - r_mm - voxel):
                continue
            if all(np.linalg.norm(c - q.centre) > 1.15 * (r + q.r_mm / acq.scale) + 3.0 for q in placed):
                placed.append(Plan(c, r_mm, kind, target, margin, calcification))
                break
    return placed


def _draw_nodule(rng, grid: Grid, acq: Acquisition, p: Plan, sub: np.ndarray, box, lung_box) -> np.ndarray:
    """Paint one nodule into ``sub`` (the image in ``box``); return its partial-volume fraction (no spicules)."""
    voxel = max(grid.spacing_zyx)
    edge = float(min(grid.spacing_zyx))
    c, r = acq.to_scanner(p.centre), p.r_mm
    amp = {"smooth": rng.uniform(0.0, 0.04), "lobulated": rng.uniform(0.12, 0.22), "spiculated": rng.uniform(0.04, 0.1)}
    lobes = np.array([amp[p.margin] if r > 1.5 * voxel else 0.0, *rng.uniform(0, 2 * np.pi, 3)])
    # Ground glass has a hazy edge; the label keeps the half-way contour all the same.
    f = blob_fraction(grid, box, c, r, edge * (2.5 if p.kind == "ground-glass" else 1.0), lobes) * lung_box
    reach = f
    if p.margin == "spiculated":  # thin strands radiating into the lung, not labelled (Lung-RADS measures the core)
        reach = f.copy()
        for u in (random_unit(rng) for _ in range(int(rng.integers(6, 15)))):
            tip = c + u * (r + min(rng.uniform(0.4, 1.0) * r, 14.0))
            width = max(rng.uniform(0.6, 1.2), 0.35 * voxel)
            np.maximum(reach, tube_fraction(grid, box, c + 0.7 * r * u, tip, width, 0.3, edge) * lung_box, out=reach)
    if p.kind in ("solid", "mass"):
        sub += reach * np.maximum(rng.uniform(-10, 60) - sub, 0)
    elif p.kind == "ground-glass":  # vessels stay visible through it
        sub += reach * np.maximum(rng.uniform(-650, -420) - sub, 0)
    elif p.kind == "part-solid":
        sub += reach * np.maximum(rng.uniform(-600, -420) - sub, 0)
        rc = min(max(r * rng.uniform(0.3, 0.55), 1.5 * voxel), 0.7 * r)
        core_c = c + random_unit(rng) * rng.uniform(0, 0.3) * (r - rc)
        sub += (
            blob_fraction(grid, box, core_c, rc, edge, lobes * [0.5, 1, 1, 1])
            * lung_box
            * np.maximum(rng.uniform(0, 40) - sub, 0)
        )
    elif p.calcification == "diffuse":
        sub += f * np.maximum(rng.uniform(350, 1000) - sub, 0)
    else:  # a central nidus of calcium in a soft-tissue nodule
        sub += f * np.maximum(rng.uniform(0, 60) - sub, 0)
        fc = blob_fraction(grid, box, c, max(0.45 * r, 0.6 * voxel), edge, lobes * 0) * lung_box
        sub += fc * np.maximum(rng.uniform(500, 1100) - sub, 0)
    return f


def _acquire(rng: np.random.Generator, grid: Grid, acq: Acquisition, img: np.ndarray) -> np.ndarray:
    """The scanner: in-plane blur of the kernel (a sharp one overshoots at edges), the slice profile along
    z (partial volume of thick slices), and noise of the kernel's texture, correlated along z like the slices."""
    sp = np.asarray(grid.spacing_zyx)
    sharp = acq.kernel == "sharp"
    blur_mm = np.array([np.hypot(0.6, acq.slice_mm / 2.355), *(2 * [0.45 if sharp else 0.9])])
    blurred = ndimage.gaussian_filter(img, np.maximum(blur_mm / sp, 0.3), truncate=3.0)
    if sharp:
        blurred += 0.4 * (blurred - ndimage.gaussian_filter(blurred, (0, 1.0, 1.0), truncate=2.0))
    noise_mm = np.array([acq.slice_mm / 2.355, *(2 * [0.3 if sharp else 1.1])])
    noise = ndimage.gaussian_filter(
        rng.standard_normal(grid.shape_zyx, dtype=np.float32), np.maximum(noise_mm / sp, 0.3)
    )
    noise *= np.float32(acq.noise_hu / max(float(noise[::4, ::4, ::4].std()), 1e-6))
    return blurred + noise


def build_chest(rng: np.random.Generator, grid: Grid) -> tuple[np.ndarray, np.ndarray, list[RawNodule], Acquisition]:
    """(HU as int16, nodule instance map uint8, nodules, the case's acquisition) on ``grid``."""
    edge = float(min(grid.spacing_zyx))
    acq = draw_acquisition(rng)
    fis = draw_fissures(rng)
    abd = draw_abdomen(rng)
    segments = vessel_trees(rng)
    bronchi = airways(rng)
    plans = plan_nodules(rng, acq, fis, segments, grid)

    img, lung, sheet = _paint(grid, acq, fis, abd, smooth_field(rng, grid, 12.0))
    vessels = _rasterise(grid, _to_scanner(acq, segments), edge)
    vessels *= lung
    img += vessels * (HU["vessel"] - img)
    great = ~lung * _rasterise(
        grid, _to_scanner(acq, [(np.asarray(a), np.asarray(b), r, r) for a, b, r in GREAT_VESSELS]), edge
    )
    img += great * (HU["vessel"] - img)
    del great
    img += _rasterise(grid, _to_scanner(acq, bronchi, 1.25, 0.6), edge) * (HU["soft"] - img)  # walls
    img += _rasterise(grid, _to_scanner(acq, bronchi), edge) * (HU["air"] - img)
    _add_bones(grid, acq, img)

    labels = np.zeros(grid.shape_zyx, dtype=np.uint8)
    nodules: list[RawNodule] = []
    for p in plans:
        c = acq.to_scanner(p.centre)
        pad = 1.15 * p.r_mm + 3 * max(grid.spacing_zyx) + (15.0 if p.margin == "spiculated" else 0.0)
        box = grid.box(c - pad, c + pad)
        f = _draw_nodule(rng, grid, acq, p, img[box], box, lung[box])
        free = labels[box] == 0
        if float((f * free).max()) < 0.25:  # lost to a very coarse grid
            continue
        mask = (f >= min(0.5, float((f * free).max()))) & free  # a nodule under a voxel keeps its best voxel
        value = len(nodules) + 1
        labels[box][mask] = value
        grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
        hits = {
            "pleura": bool((grown & ~lung[box] & (img[box] > -500)).any()),
            "vessel": bool((grown & (vessels[box] > 0.5)).any()),
            "fissure": bool((grown & (sheet[box] > 0.4)).any()),
        }
        touched = [t for t, hit in hits.items() if hit]
        touches = p.target if p.target in touched else (touched[0] if touched else None)
        centre = tuple(float(v) for v in c)
        nodules.append(RawNodule(centre, 2 * p.r_mm, p.kind, touches, p.margin, p.calcification))  # type: ignore[arg-type]
    del vessels, lung, sheet

    img = _acquire(rng, grid, acq, img)
    np.rint(img, out=img)
    np.clip(img, -1024, 3071, out=img)
    return img.astype(np.int16), labels, nodules, acq
