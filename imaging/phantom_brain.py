"""The synthetic brain MR's anatomy: scalp, skull with marrow, CSF, folded cortex, white matter,
ventricles, deep grey nuclei, lesions, bias field, Rician noise.

The anatomy is a map of tissue classes; a contrast turns it into signal. ``T1_LIKE`` is the fixed
contrast of the demo (arbitrary units 0..~1000). ``varied=True`` draws the contrast of each case at
random instead, as SynthSeg does (Billot et al., Medical Image Analysis 2023: networks trained only on
such domain-randomised images segment real scans of any contrast): CSF may be darker or brighter than
the lesions and the grey matter, and the bias field, the slice thickness (with its partial volume),
the noise and a gamma curve vary too. What defines a lesion is kept: it differs from the white matter
around it. Varied cases also have periventricular plaques and tumours with an enhancing rim around a
necrotic core.

Coordinates are mm offsets from the head's centre in patient axes (+x left, +y posterior, +z head).
Depth below the scalp is measured along the ray from the centre, which is exact enough for layers a
few millimetres thick on an ellipsoid and keeps every layer a single vectorised expression.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom_fields import Grid, blob_fraction, smooth_field, sphere_points

EXTENT_ZYX = (192.0, 240.0, 240.0)
DEFAULT_SHAPE_ZYX = (128, 192, 192)

HEAD = (74.0, 96.0, 86.0)  # semi-axes x, y, z
HEAD_CZ = -12.0
# Tissue classes of the anatomy map.
AIR, SCALP, CORTICAL_BONE, MARROW, CSF, GM, WM, MUSCLE = range(8)
# Layers by depth (mm) below the scalp surface, and the class of each.
LAYERS = ((5.0, SCALP), (7.0, CORTICAL_BONE), (10.5, MARROW), (12.5, CORTICAL_BONE), (14.5, CSF))
BRAIN_DEPTH = 14.5
# The demo's T1-like signal per class.
T1_LIKE = np.array([0.0, 650.0, 40.0, 520.0, 140.0, 430.0, 620.0, 300.0], dtype=np.float32)
VENTRICLES = (((-11.0, 4.0, 14.0), (7.0, 28.0, 11.0)), ((11.0, 4.0, 14.0), (7.0, 28.0, 11.0)),
              ((0.0, 2.0, 0.0), (2.0, 12.0, 9.0)))  # fmt: skip
NUCLEI = (((-20.0, -2.0, 0.0), (10.0, 16.0, 11.0)), ((20.0, -2.0, 0.0), (10.0, 16.0, 11.0)))


@dataclass(frozen=True)
class RawLesion:
    centre_xyz: tuple[float, float, float]
    diameter_mm: float
    contrast: str  # "hyper" | "hypo" (against the white matter)
    kind: str = "lesion"  # "lesion" | "periventricular" | "tumour"


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


def _varied_ventricles(rng: np.random.Generator) -> tuple:
    """One case's ventricles: the lateral ventricles' bodies widened (atrophy) or not, with frontal and
    occipital horns that may show as separate round pockets on a slice, and the third ventricle."""
    out = []
    for c, a in VENTRICLES[:2]:
        out.append((c, tuple(np.asarray(a) * rng.uniform(0.9, 1.7, 3))))
        side = np.sign(c[0])
        for end in (-1.0, 1.0):  # frontal (anterior, -y) and occipital (posterior, +y) horns
            if rng.random() < 0.8:
                r = rng.uniform(3.0, 8.0, 3)
                centre = (c[0] + side * rng.uniform(0.0, 6.0), c[1] + end * a[1] * rng.uniform(0.7, 1.1),
                          c[2] + rng.uniform(-6.0, 4.0))  # fmt: skip
                out.append((centre, tuple(r)))
    out.append((VENTRICLES[2][0], tuple(np.asarray(VENTRICLES[2][1]) * rng.uniform(0.8, 2.0, 3))))
    return tuple(out)


def _curved_ventricles(rng: np.random.Generator) -> tuple:
    """One case's lateral ventricles as they curve through the hemisphere, as chains of small ellipsoids:
    frontal horn, body, the wide atrium (trigone) beside the thalamus, the occipital horn behind it and
    the temporal horn curving down and forward; then the third ventricle. Sizes vary with atrophy."""
    atrophy = rng.uniform(0.8, 1.6)
    out = []
    for side in (-1.0, 1.0):
        # (x lateral, y posterior, z up) in mm, and the radius at each point
        frontal, body = (rng.uniform(8, 13), rng.uniform(-30, -22), rng.uniform(10, 18)), (12.0, 0.0, 20.0)
        atrium = (rng.uniform(17, 24), rng.uniform(22, 30), rng.uniform(8, 16))
        occipital = (rng.uniform(14, 20), rng.uniform(38, 48), rng.uniform(6, 12))
        temporal = ((rng.uniform(24, 30), rng.uniform(8, 14), rng.uniform(-6, 0)),
                    (rng.uniform(26, 32), rng.uniform(-12, -4), rng.uniform(-16, -10)))  # fmt: skip
        radii = {"frontal": rng.uniform(4, 7), "body": rng.uniform(4, 6), "atrium": rng.uniform(6, 10),
                 "occipital": rng.uniform(2, 4), "temporal": rng.uniform(2, 4)}  # fmt: skip
        paths = (
            ((frontal, radii["frontal"]), (body, radii["body"]), (atrium, radii["atrium"]),
             (occipital, radii["occipital"])),
            ((atrium, radii["atrium"]), (temporal[0], radii["temporal"] + 1.5), (temporal[1], radii["temporal"])),
        )  # fmt: skip
        for path in paths:
            for (p0, r0), (p1, r1) in itertools.pairwise(path):
                p0, p1 = np.asarray(p0), np.asarray(p1)
                steps = max(2, int(np.linalg.norm(p1 - p0) / 4.0))
                for t in np.linspace(0.0, 1.0, steps, endpoint=False):
                    c = (1 - t) * p0 + t * p1
                    r = atrophy * ((1 - t) * r0 + t * r1)
                    # Bodies and horns are taller than wide: a slit beside the midline.
                    out.append(((side * c[0], c[1], c[2]), (0.8 * r, r, 1.2 * r)))
    out.append((VENTRICLES[2][0], tuple(np.asarray(VENTRICLES[2][1]) * rng.uniform(0.8, 2.0, 3))))
    return tuple(out)


def _place_lesions(
    rng: np.random.Generator, d_min: float, varied: bool, ventricles=VENTRICLES, walls: int = 2
) -> list[tuple[np.ndarray, float, str, str]]:
    """2–6 non-overlapping lesions (centre, radius, contrast, kind) in the cerebrum, clear of the ventricles.

    Varied cases also place periventricular plaques (a few mm from one of the first ``walls`` ventricle
    ellipsoids) and tumours (≥ 12 mm).
    """
    placed: list[tuple[np.ndarray, float, str, str]] = []
    for _ in range(int(rng.integers(2, 7))):
        kind = str(rng.choice(["lesion", "periventricular", "tumour"], p=[0.5, 0.3, 0.2])) if varied else "lesion"
        low = max(d_min, 12.0) if kind == "tumour" else d_min
        high = 30.0 if kind == "tumour" else (14.0 if kind == "periventricular" else 25.0)
        d = min(float(np.exp(rng.uniform(np.log(low), np.log(high)))), high)
        r = d / 2
        contrast = "hyper" if rng.random() < 0.65 else "hypo"
        for _try in range(80):
            if kind == "periventricular":
                (vc, va), u = ventricles[int(rng.integers(0, walls))], rng.normal(size=3)
                c = np.asarray(vc) + np.asarray(va) * u / np.linalg.norm(u) + u / np.linalg.norm(u) * (r + 2.5)
            else:
                c = rng.uniform(-1, 1, 3) * [50.0, 70.0, 45.0] + [0.0, 0.0, 15.0]
            sp = sphere_points(c, r)
            x, y, z = sp[:, 0], sp[:, 1], sp[:, 2]
            if (depth_below_scalp(x, y, z) < BRAIN_DEPTH + 3.0).any() or _in_ellipsoids(x, y, z, ventricles).any():
                continue
            if all(np.linalg.norm(c - q) > 1.15 * (r + rq) + 2.0 for q, rq, _, _ in placed):
                placed.append((c, r, contrast, kind))
                break
    return placed


def _random_contrast(rng: np.random.Generator) -> np.ndarray:
    """Signal per tissue class for one varied case: every class drawn alone, in 0..1000 (air stays dark)."""
    table = rng.uniform(20.0, 1000.0, len(T1_LIKE)).astype(np.float32)
    table[AIR] = rng.uniform(0.0, 30.0)
    # Grey and white matter stay apart by at least 8 % of the range: the cortex must be visible.
    if abs(table[GM] - table[WM]) < 80.0:
        table[GM] = np.clip(table[WM] + rng.choice([-1.0, 1.0]) * rng.uniform(80.0, 300.0), 20.0, 1000.0)
    return table


# The common MR contrasts a ``sequence`` case draws from, and each one's order of fluid, grey and
# white matter, darkest first (T1: dark fluid, bright white matter; T2: the reverse; FLAIR: dark
# fluid, grey matter a little brighter than white).
SEQUENCES = {"T1-like": (CSF, GM, WM), "T2-like": (WM, GM, CSF), "FLAIR-like": (CSF, WM, GM)}


def _in_order(rng: np.random.Generator, table: np.ndarray, sequence: str) -> np.ndarray:
    """``table`` with fluid, grey and white matter redrawn in ``sequence``'s order, well apart (the
    other tissues keep their random signal): the contrasts of real scanners, varied within each."""
    dark = rng.uniform(20.0, 300.0)
    middle = dark + rng.uniform(150.0, 400.0)
    step = rng.uniform(60.0, 200.0) if sequence == "FLAIR-like" else rng.uniform(120.0, 400.0)
    out = table.copy()
    for cls, value in zip(SEQUENCES[sequence], (dark, middle, min(middle + step, 1000.0)), strict=True):
        out[cls] = value
    return out


def _lesion_signal(rng: np.random.Generator, table: np.ndarray, contrast: str, varied: bool) -> float:
    """A lesion's signal: the demo's fixed hyper/hypo ranges, or a random departure from the white matter."""
    if not varied:
        return float(rng.uniform(780, 900) if contrast == "hyper" else rng.uniform(170, 280))
    step = float(np.exp(rng.uniform(np.log(0.1), np.log(0.7)))) * 1000.0  # subtle plaques as often as bright ones
    wm = float(table[WM])
    up, down = wm + step, wm - step
    value = up if (contrast == "hyper" and up <= 1100) or down < 0 else down
    # Fluid has a signal of its own: a lesion as bright (or dark) as CSF is the other way from it.
    csf = float(table[CSF])
    if abs(value - csf) < 120.0:
        value = csf - 120.0 if value < csf else csf + 120.0
    return float(max(value, 0.0))


def _as_fluid(rng: np.random.Generator, table: np.ndarray, value: np.float32) -> np.float32:
    """A lesion's signal as the fluid's (within 6 %) when both lie on the same side of the white matter:
    then only its shape and place tell it from a sulcus or a ventricle."""
    wm, csf = float(table[WM]), float(table[CSF])
    if (float(value) - wm) * (csf - wm) <= 0:
        return value
    return np.float32(csf * rng.uniform(0.94, 1.06))


def _fluid_pockets(rng: np.random.Generator) -> tuple:
    """Small CSF spaces a lesion must not be confused with (varied cases): temporal horns, a cavum, and
    enlarged perivascular spaces, as (centre, semi-axes) ellipsoids."""
    horns = tuple(
        ((side * rng.uniform(24.0, 34.0), rng.uniform(-10.0, 10.0), rng.uniform(-22.0, -8.0)),
         tuple(rng.uniform([1.5, 8.0, 1.5], [4.0, 16.0, 4.0])))
        for side in (-1.0, 1.0)
    )  # fmt: skip
    spaces = tuple(
        (tuple(rng.uniform(-1, 1, 3) * [45.0, 60.0, 35.0] + [0.0, 0.0, 10.0]), tuple(rng.uniform(1.0, 3.5, 3)))
        for _ in range(int(rng.integers(0, 9)))
    )
    return horns + spaces


def build_brain(
    rng: np.random.Generator,
    grid: Grid,
    varied: bool = False,
    lesions: bool = True,
    fluid_lesions: float = 0.0,
    sequence: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[RawLesion]]:
    """(signal as int16, lesion instance map uint8, lesions) on ``grid``; ``varied``: a random contrast.

    ``lesions=False``: a healthy brain (the negatives a study-level classifier needs); the anatomy
    and contrast are drawn exactly as with lesions, so only their absence tells the two apart.
    ``fluid_lesions``: the share of lesions on the fluid's side of the white matter given the fluid's own
    signal, as plaques and oedema are on a T2-weighted image (drawn from a stream of their own, so 0
    leaves every other draw, and so every earlier phantom, as it was).
    ``sequence`` (varied cases): one of ``SEQUENCES``, whose order of fluid, grey and white matter the
    random contrast keeps; lesions are then bright on T2 and FLAIR, as plaques and oedema are."""
    d_min = min(max(3.0, 3.0 * max(grid.spacing_zyx)), 25.0)  # ≥ 3 voxels across, unless the grid is coarse
    edge = float(min(grid.spacing_zyx))
    folds = smooth_field(rng, grid, 7.0)  # cortical thickness and the grey/white boundary
    sulci = smooth_field(rng, grid, rng.uniform(6.0, 11.0) if varied else 11.0)  # its zero sheets become sulci
    texture = smooth_field(rng, grid, 6.0)
    table = _random_contrast(rng) if varied else T1_LIKE
    if sequence is not None:
        table = _in_order(rng.spawn(1)[0], table, sequence)
    pockets = _fluid_pockets(rng) if varied else ()
    if sequence is not None:
        ventricles = _curved_ventricles(rng.spawn(1)[0])
    else:
        ventricles = _varied_ventricles(rng) if varied else VENTRICLES
    walls = len(ventricles) - 1 if sequence is not None else 2  # any lateral ventricle ellipsoid
    texture_amp = np.float32(rng.uniform(0.0, 0.1) if varied else 0.03)
    # Varied cases: sulci from slits to the wide CSF of an atrophic brain, reaching into the white
    # matter, and the interhemispheric fissure (on a T2 image a bright web and a bright midline).
    sulcus_width, sulcus_reach, fissure_half, fissure_reach = (
        (rng.uniform(0.08, 0.45), rng.uniform(0.0, 20.0), rng.uniform(0.3, 2.0), rng.uniform(15.0, 45.0))
        if varied
        else (0.12, 0.0, 0.0, 0.0)
    )
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
        classes = np.full(depth.shape, AIR, dtype=np.uint8)
        for limit, tissue_class in LAYERS[::-1]:
            classes[(depth >= 0) & (depth < limit)] = tissue_class
        inside = depth >= BRAIN_DEPTH
        # Gyri: white matter reaches up to 3 mm below the surface where the field is high, 12 mm where low.
        wm = depth > BRAIN_DEPTH + 7.5 - 4.5 * np.clip(f, -1.0, 1.0)
        sulcus = inside & (~wm | (depth < BRAIN_DEPTH + sulcus_reach)) & (np.abs(s) < sulcus_width)
        sulcus |= inside & (np.abs(x) < fissure_half) & (depth < BRAIN_DEPTH + fissure_reach)
        neck = (z - HEAD_CZ) < -52.0  # below the brain: muscles of the skull base and neck
        nuclei, fluid = _in_ellipsoids(x, y, z, NUCLEI), _in_ellipsoids(x, y, z, ventricles + pockets)
        tissue = np.where(wm, WM, GM).astype(np.uint8)
        tissue[sulcus] = CSF
        tissue[np.broadcast_to(nuclei, tissue.shape)] = GM
        tissue[np.broadcast_to(fluid, tissue.shape)] = CSF
        tissue[np.broadcast_to(neck, tissue.shape)] = MUSCLE
        classes = np.where(inside, tissue, classes)
        textured = inside & ~(sulcus | nuclei | fluid | neck)  # the cerebral grey and white matter
        img[sl] = table[classes] * np.where(textured, 1 + texture_amp * texture[sl], np.float32(1.0))
        brain[sl] = inside & ~neck
    del folds, sulci, texture

    instances = np.zeros(grid.shape_zyx, dtype=np.uint8)
    found: list[RawLesion] = []
    fluid_rng = rng.spawn(1)[0] if fluid_lesions > 0 else None
    for c, r, contrast, kind in _place_lesions(rng, d_min, varied, ventricles, walls) if lesions else ():
        lobes = np.array([rng.uniform(0.0, 0.15), *rng.uniform(0, 2 * np.pi, 3)])
        pad = 1.2 * r + 3 * max(grid.spacing_zyx)
        box = grid.box(c - pad, c + pad)
        # MS-like plaques have fuzzy borders: a wider edge than the voxel.
        f = blob_fraction(grid, box, c, r, 1.5 * edge, lobes) * brain[box]
        mask = (f >= 0.5) & (instances[box] == 0)
        if not mask.any():  # smaller than a voxel of a very coarse grid
            continue
        if sequence in ("T2-like", "FLAIR-like"):
            contrast = "hyper"
        value = np.float32(_lesion_signal(rng, table, contrast, varied))
        if fluid_rng is not None and fluid_rng.random() < fluid_lesions:
            value = _as_fluid(fluid_rng, table, value)
        sub = img[box]
        if kind == "tumour":
            # An enhancing rim (bright) around a necrotic core (fluid-like, the CSF's signal).
            core = blob_fraction(grid, box, c, r * rng.uniform(0.45, 0.7), 1.5 * edge, lobes) * brain[box]
            rim = np.float32(max(float(table[WM]), float(table[GM])) + rng.uniform(250.0, 500.0))
            sub += f * (rim - sub)
            sub += core * (np.float32(table[CSF]) - sub)
        else:
            sub += f * (value - sub)
        instances[box][mask] = len(found) + 1
        found.append(RawLesion(tuple(float(v) for v in c), 2 * r, contrast, kind))  # type: ignore[arg-type]

    if varied:
        img = _acquire(rng, grid, img)
    else:
        # A mild receive-coil bias field (±10 %).
        ax, ay, az = rng.uniform(-0.1, 0.1, 3)
        bias = 1 + ax * x / HEAD[0] + ay * y / HEAD[1] + az * grid.zr[:, None, None] / HEAD[2]
        img *= bias.astype(np.float32)
    # Rician noise: the magnitude of complex Gaussian noise.
    sigma = np.float32(rng.uniform(12, 20) if not varied else rng.uniform(5, 35))
    real = img + sigma * rng.standard_normal(grid.shape_zyx, dtype=np.float32)
    imag = sigma * rng.standard_normal(grid.shape_zyx, dtype=np.float32)
    img = np.sqrt(real * real + imag * imag)
    np.rint(img, out=img)
    return np.clip(img, 0, 4095).astype(np.int16), instances, found


def _acquire(rng: np.random.Generator, grid: Grid, img: np.ndarray) -> np.ndarray:
    """A varied case's acquisition: a strong smooth bias field (up to ±30 %), an in-plane blur (partial
    volume at tissue edges), thick slices (1–6 mm, their partial volume as a Gaussian slice profile
    along z) and a gamma curve on the intensities."""
    bias = np.exp(0.15 * smooth_field(rng, grid, 60.0)).astype(np.float32)
    img *= bias
    blur = rng.uniform(0.0, 1.0) / np.asarray(grid.spacing_zyx[1:])
    if blur.max() > 0.3:
        img = ndimage.gaussian_filter(img, (0.0, *blur), mode="nearest")
    thickness = rng.uniform(1.0, 6.0)
    sigma_z = thickness / 2.355 / grid.spacing_zyx[0]
    if sigma_z > 0.5:
        img = ndimage.gaussian_filter1d(img, sigma_z, axis=0, mode="nearest")
    top = max(float(img.max()), 1.0)
    gamma = float(np.exp(rng.uniform(-0.4, 0.4)))
    return (top * (np.clip(img, 0, None) / top) ** gamma).astype(np.float32)
