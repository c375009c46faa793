"""The independent generator's SYNTHETIC T2-like brain MR: anatomy, contrast, lesions (see phantom_independent).

Shape model: the cerebrum is a deformed superquadric, gyri are the level sets of band-pass noise cut
into it (sulci where the noise crosses zero), the lateral ventricles a butterfly of curved tapered
tubes. Contrast is T2-like: CSF brightest, then lesions, grey matter, white matter; bone dark.
Each thick slice is the mean of ~1 mm sub-slices, so slabs carry the partial volume of their thickness.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom_independent import (
    Axes,
    Finding,
    capsule_sd,
    centred_axes,
    coarse_axes,
    ellipsoid_sd,
    random_units,
    resample,
    smax,
    smin,
    soft,
    unit,
)  # fmt: skip

NXY = 256
PIXEL_MM = 0.9
SLAB_MM = 165.0
Z_CENTRE = -3.0
SUB_MM = 1.2  # the thickest sub-slice that stands in for the slice profile
CSF, GM, WM, DEEP, FAT, DIPLOE, BONE, MUSCLE = 1.0, 0.62, 0.47, 0.57, 0.72, 0.5, 0.04, 0.3


def _ventricles(rng, scale: float):
    """Lateral ventricles (frontal horn, body, atrium, occipital and temporal horns), one path per side."""
    segs = []
    for side in (-1, 1):
        path = [(12, -28, 9), (20, -8, 11), (20, 14, 13), (10, 31, 21), (7, 46, 17)]
        radii = [5.0, 4.0, 4.5, 6.0, 2.0]
        temporal = [(10, 31, 21), (-6, 22, 27), (-20, 2, 28)]
        for pts, rr in ((path, radii), (temporal, [5.0, 2.8, 2.2])):
            p = np.array(pts, dtype=np.float64) * [1, 1, side] + rng.normal(0, 1.0, (len(pts), 3))
            p[:, 2] *= 0.8 + 0.25 * scale
            r = np.asarray(rr) * scale * 1.25
            segs += [(p[i], p[i + 1], r[i], r[i + 1]) for i in range(len(p) - 1)]
    return segs


def _field(axes: Axes, segs, start: float = 60.0) -> np.ndarray:
    """Signed distance to a union of tapered tubes (far values clamped to ``start``)."""
    out = np.full(axes.shape, start, dtype=np.float32)
    for p0, p1, r0, r1 in segs:
        sl, d = capsule_sd(axes, p0, p1, r0, r1)
        if sl is not None:
            out[sl] = smin(out[sl], d, 2.0)
    return out


def _spheroid(z, y, x, centre, axis, a, b):
    """Signed distance (approximate, mm) to a spheroid with semi-axis ``a`` along unit ``axis``, ``b`` across."""
    rz, ry, rx = z - centre[0], y - centre[1], x - centre[2]
    along = rz * axis[0] + ry * axis[1] + rx * axis[2]
    across2 = np.maximum(rz * rz + ry * ry + rx * rx - along * along, 0)
    return (np.sqrt((along / a) ** 2 + across2 / b**2) - 1) * b


def build_brain(rng: np.random.Generator, shape_zyx=None, spacing_zyx=None):
    """The SYNTHETIC brain: (axes, int16 image, lesion instances uint8, findings)."""
    r_case, r_anat, r_les, r_noise = rng.spawn(4)
    thick = float(r_case.choice([3.0, 4.0, 5.0]))
    shape = tuple(int(n) for n in (shape_zyx or (round(SLAB_MM / thick), NXY, NXY)))
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom shape must be three sizes of at least 8 voxels, got {list(shape)}")
    if spacing_zyx is None:
        fov = NXY * PIXEL_MM
        spacing = (thick if shape_zyx is None else SLAB_MM / shape[0], fov / shape[1], fov / shape[2])
    else:
        spacing = tuple(float(v) for v in spacing_zyx)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"phantom spacing must be three positive sizes, got {spacing}")
    axes = centred_axes(shape, spacing, z0=Z_CENTRE - (shape[0] - 1) / 2 * spacing[0])
    sub = max(1, int(np.ceil(spacing[0] / SUB_MM)))
    offsets = (np.arange(sub) - (sub - 1) / 2) * spacing[0] / sub
    fine = Axes((axes.z[:, None] + offsets[None]).ravel(), axes.y, axes.x)
    cax = coarse_axes(fine, 2.0)

    s = r_case.uniform(0.92, 1.06)
    semi = np.array([62.0, 82.0, 68.0]) * s
    expo = r_case.uniform(2.2, 2.7)
    atrophy = r_case.uniform(0, 1)
    contrast = r_case.uniform(0.9, 1.1)  # grey/white separation of this scanner and protocol

    z, y, x = fine.mesh()
    wob = resample(ndimage.gaussian_filter(r_anat.standard_normal(cax.shape, dtype=np.float32), 5.0), cax, fine)
    wob *= 3.0 / max(float(wob.std()), 1e-6)
    a_x = semi[2] * (1 - 0.12 * np.clip(-y / semi[1], 0, 1))  # narrower frontal pole
    a_z = np.where(z < 0, semi[0] * 0.85, semi[0])
    q = (np.abs(x / a_x) ** expo + np.abs(y / semi[1]) ** expo + np.abs(z / a_z) ** expo) ** (1 / expo)
    cerebrum = smax((q - 1) * 60.0 + wob, -(z + 46 - 14 * np.clip(y / 60, 0, 1)), 6)  # tentorium below
    cerebellum = ellipsoid_sd(z, y, x, (-46 * s, 46 * s, 0), (21 * s, 28 * s, 48 * s)) + 0.5 * wob
    stem = _field(fine, [(np.array([-20.0, 12, 0]), np.array([-90.0, 26, 0]), 12.0, 10.0)])
    brain = smin(smin(cerebrum, cerebellum, 3), stem, 4)
    depth = -brain
    del q, a_x, a_z

    g = resample(ndimage.gaussian_filter(r_anat.standard_normal(cax.shape, dtype=np.float32), 1.4), cax, fine)
    g /= max(float(g.std()), 1e-6)
    gyri = np.abs(g)
    t_csf = 0.1 + 0.12 * atrophy
    sulcal = soft(depth - 16.0, 2.0) * (cerebrum < 0)
    csf = soft(gyri - t_csf, 0.06) * sulcal
    gm = np.maximum(soft(gyri - t_csf - 0.5, 0.12) * sulcal, soft(depth - 3.2, 1.0) - soft(depth, 1.0))
    fis = (np.abs(x) < 0.8 + 1.2 * atrophy) & ((z > 30) | (np.abs(y) > 42))  # above the corpus callosum
    csf = np.maximum(csf, fis * soft(brain + 0.0, 1.0) * (depth < 45))
    folia = soft(np.abs(np.sin((z + 0.3 * y) * np.pi / 3.5)) - 0.55, 0.3) * (cerebellum < 0)
    gm = np.maximum(gm, folia)
    del g, gyri, sulcal, fis

    img = np.where(brain < 0, WM, 0.0).astype(np.float32)
    img += (GM * contrast - img) * gm
    vscale = r_anat.uniform(0.8, 1.2) + 0.7 * atrophy
    vent = smin(_field(fine, _ventricles(r_anat, vscale)),
                ellipsoid_sd(z, y, x, (-3, 2, 0), (11, 15, 1.6 + vscale), 0.0), 2)  # fmt: skip
    vent = smin(vent, ellipsoid_sd(z, y, x, (-40 * s, 30 * s, 0), (6, 4, 7), 0.0), 1)
    for c, ax, v in (
        ((12, -17, 15), (9, 11, 5), DEEP),
        ((2, 6, 10), (10, 15, 8), DEEP),
        ((1, -4, 24), (12, 17, 5.5), 0.9 * DEEP),
    ):
        for side in (-1, 1):
            m = soft(ellipsoid_sd(z, y, x, (c[0], c[1], side * (c[2] + 3 * (vscale - 1))), ax, 0.0), 1.0)
            img += (v - img) * m
    img += (CSF - img) * np.maximum(csf, soft(vent, fine.step))
    # head: CSF film, inner table, diploë, outer table, scalp fat, skin; neck tissue below the skull base
    layers = ((15.5, MUSCLE), (14.0, FAT), (9.0, BONE), (7.5, DIPLOE), (4.5, BONE), (2.5, CSF))  # outermost first
    outer = ndimage.gaussian_filter(brain, (1.5, 3.0, 3.0))  # the skull does not follow every bump
    outside = 1 - soft(brain, 1.0)
    for thick_mm, value in layers:
        img += (value - img) * soft(outer - thick_mm, 1.0) * outside
    neck = (z < -55) & (np.sqrt((x / 55) ** 2 + ((y - 10) / 60) ** 2) < 1) & (brain > 0)
    img = np.where(neck, MUSCLE * (1 + 0.2 * resample(_n(r_anat, cax, 3.0), cax, fine)), img)
    del gm, csf, outer, outside

    labels_f = np.zeros(fine.shape, dtype=np.uint8)
    found = _lesions(r_les, fine, cax, img, labels_f, brain, depth, vent, s)
    out = img.reshape(shape[0], sub, shape[1], shape[2]).mean(axis=1)
    frac = np.stack([(labels_f == i + 1).reshape(shape[0], sub, shape[1], shape[2]).mean(axis=1)
                     for i in range(len(found))])  # fmt: skip
    labels = np.zeros(shape, dtype=np.uint8)
    for i, f in enumerate(found, start=1):
        labels[(frac[i - 1] >= 0.5) & (labels == 0)] = i
        ic = tuple(int(np.clip(np.rint((v - a[0]) / (a[1] - a[0] if a.size > 1 else 1)), 0, a.size - 1))
                   for v, a in zip(f.centre_zyx, (axes.z, axes.y, axes.x), strict=True))  # fmt: skip
        labels[ic] = i
    oz, oy, ox = axes.mesh()
    c = r_noise.normal(0, 0.12, 6)
    bias = np.exp(c[0] * ox / 100 + c[1] * oy / 100 + c[2] * oz / 100 + c[3] * (ox / 100) ** 2 + c[4] * (oy / 100) ** 2
                  + c[5] * ox * oy / 1e4)  # fmt: skip
    out = ndimage.gaussian_filter(out * bias, (0, 0.5, 0.5))
    scale = 1000.0 * r_noise.uniform(0.8, 1.1)
    sigma = 0.02 * r_noise.uniform(0.8, 1.6)
    n1, n2 = (r_noise.standard_normal(shape, dtype=np.float32) * sigma for _ in range(2))
    mag = np.sqrt((out + n1) ** 2 + n2**2)  # Rician: magnitude of a complex signal
    array = np.rint(np.clip(mag * scale, 0, 32767)).astype(np.int16)
    return axes, array, labels, tuple(found)


def _n(rng, cax: Axes, sigma_vox: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(cax.shape, dtype=np.float32), sigma_vox)
    return f / max(float(f.std()), 1e-6)


def _lesions(rng, fine: Axes, cax: Axes, img, labels, brain, depth, vent, s):
    """2–6 white-matter lesions (periventricular ovoids across the ventricle wall, juxtacortical ones
    against the cortex) and in about a third of cases a tumour with a solid rim and a necrotic core."""
    step = 2
    wm = (np.abs(img - WM) < 0.02)[:, ::step, ::step] & (brain < 0)[:, ::step, ::step]
    wm &= (fine.z > -35)[:, None, None]
    sp = (
        fine.z[1] - fine.z[0] if fine.z.size > 1 else 1.0,
        (fine.y[1] - fine.y[0]) * step,
        (fine.x[1] - fine.x[0]) * step,
    )
    to_grey = ndimage.distance_transform_edt(wm, sampling=sp)
    v_sd = vent[:, ::step, ::step]
    d_sub = depth[:, ::step, ::step]
    pts = np.stack(np.meshgrid(fine.z, fine.y[::step], fine.x[::step], indexing="ij"), axis=-1)
    n = int(rng.integers(2, 7))
    tumour = rng.random() < 0.35
    kinds = ["tumour" if tumour and i == 0 else str(rng.choice(["periventricular", "juxtacortical"])) for i in range(n)]
    grad = np.gradient(
        vent, *(fine.z[1] - fine.z[0] if fine.z.size > 1 else 1.0, fine.y[1] - fine.y[0], fine.x[1] - fine.x[0])
    )
    z, y, x = fine.mesh()
    placed, found = [], []
    for kind in kinds:
        if kind == "tumour":
            R = rng.uniform(7, 12.5)
            pool = (to_grey > R * 0.3) & (v_sd > 3) & (d_sub > R + 6)
        else:
            R = rng.uniform(2, 3) if rng.random() < 0.4 else np.exp(rng.uniform(np.log(3), np.log(9)))
            if kind == "periventricular":
                pool = (np.abs(v_sd - 0.3 * R - 1) < 1.5) & (to_grey > 0) & (d_sub > 15)
            else:
                pool = (np.abs(to_grey - 0.5 * R - 0.5) < 1.5) & (v_sd > 12) & (d_sub < 25)
        idx = np.flatnonzero(pool)
        rng.shuffle(idx)
        flat = pts.reshape(-1, 3)
        free = (i for i in idx[:200] if all(np.linalg.norm(flat[i] - q) > R + r + 3 for q, r in placed))
        centre = next((flat[i] for i in free), None)
        if centre is None:
            continue
        placed.append((centre, R))
        pad = R + 3 * fine.step
        sl = fine.box(centre - pad, centre + pad)
        zz, yy, xx = z[sl[0]], y[:, sl[1]], x[:, :, sl[2]]
        if kind == "periventricular":  # Dawson's finger: long axis across the ventricle wall
            ic = tuple(int(np.argmin(np.abs(a - v))) for a, v in zip((fine.z, fine.y, fine.x), centre, strict=True))
            axis = unit(np.array([gr[ic] for gr in grad]) + 1e-6)
        else:
            axis = random_units(rng, 1)[0]
        b = R * rng.uniform(0.55, 0.85) if kind != "tumour" else R * 0.9
        sd = _spheroid(zz, yy, xx, centre, axis, R, b)
        m = soft(sd, fine.step) * soft(-vent[sl], fine.step) * soft(brain[sl] + 1.0, fine.step)  # parenchyma only
        h = img[sl]
        if kind == "tumour":
            rim = rng.uniform(2.5, 4.0)
            h += (rng.uniform(0.68, 0.76) - h) * m
            h += (rng.uniform(0.9, 1.0) - h) * soft(sd + rim, fine.step)
        else:
            h += (rng.uniform(0.75, 0.88) - h) * m
        lab = labels[sl]
        lab[(m > 0.5) & (lab == 0)] = len(found) + 1
        found.append(Finding(kind, tuple(float(v) for v in centre), 2 * R, None, "hyper"))
    return found
