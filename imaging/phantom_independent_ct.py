"""The independent generator's SYNTHETIC chest CT: anatomy, HU model, nodules (see phantom_independent).

Shape model: everything is placed by its radial offset ``s`` (mm) from a superellipse rib cage whose
axes change with height; the lungs are the smooth CSG of that cage, a diaphragm made of paraboloid
domes, apical caps and a mediastinum built as a smooth union of heart, aorta, spine and hila, built
on a 3 mm grid and sampled linearly (so their outline is sharp and identical on every output grid).
Vessels and airways are random trees of tapered cylinders grown from the hila inside that field.
z = 0 is the right dome of the diaphragm; the grid covers the lower neck to the costophrenic recesses,
or further to the kidneys for about half the cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom_independent import (
    Axes,
    Finding,
    band_noise,
    capsule_sd,
    centred_axes,
    coarse_axes,
    ellipsoid_sd,
    paint_tubes,
    random_units,
    resample,
    sample_points,
    smax,
    smin,
    soft,
    unit,
)  # fmt: skip

NX = 448
COARSE_MM = 3.0
TYPES = ("solid", "part-solid", "ground-glass", "calcified", "juxta-pleural", "juxta-vascular")


@dataclass(frozen=True)
class Case:
    """One patient's proportions and one scan's settings, drawn before anything grid-dependent."""

    A: float  # lateral half-width of the rib cage at its widest (mm)
    B: float  # its antero-posterior half-depth
    p: float  # superellipse exponent (2 = ellipse, larger = squarer)
    apex: float  # z of the lung apices
    fat: float
    muscle: float
    abdomen: bool
    contrast: bool
    sharp: bool  # lung kernel: sharper, noisier
    emphysema: bool
    noise_hu: float
    dz: float
    z0: float  # z of the lowest slice
    top: float  # how far the scan reaches above the apices

    @property
    def extent(self) -> float:
        return self.apex + self.top - self.z0

    @property
    def carina(self) -> float:
        return self.apex - 72.0


def _draw_case(rng: np.random.Generator) -> Case:
    abdomen = bool(rng.random() < 0.5)
    sharp = bool(rng.random() < 0.4)
    return Case(
        A=rng.uniform(118, 150), B=rng.uniform(82, 108), p=rng.uniform(2.2, 2.9), apex=rng.uniform(158, 182),
        fat=rng.uniform(5, 32), muscle=rng.uniform(8, 15), abdomen=abdomen, contrast=bool(rng.random() < 0.3),
        sharp=sharp, emphysema=bool(rng.random() < 0.25),
        noise_hu=rng.uniform(35, 60) if sharp else rng.uniform(10, 24),
        dz=float(rng.choice([2.0, 2.5])), z0=-rng.uniform(150, 170) if abdomen else -rng.uniform(105, 118),
        top=rng.uniform(12, 35),
    )  # fmt: skip


def _taper(c: Case, z):
    """1 at the lung bases, narrowing to the thoracic inlet (the cage is a dome, not a cylinder)."""
    up = np.clip((z + 20.0) / (c.apex + 60.0), 0.0, 1.0)
    return np.sqrt(np.clip(1 - up**2, 0.05, 1.0)) - 0.12 * np.clip(-(z + 20.0) / 150.0, 0.0, 1.0)


def cage(c: Case, z, y, x):
    """Radial offset from the inner rib cage (mm, negative inside) and the cosine toward the back."""
    t = _taper(c, z)
    a, b = c.A * (0.45 + 0.55 * t), c.B * (0.6 + 0.4 * t)
    r = np.sqrt(x * x + y * y) + np.float32(1e-3)
    ux, uy = np.abs(x) / r, y / r
    radius = ((ux / a) ** c.p + (np.abs(uy) / b) ** c.p + 1e-12) ** (-1.0 / c.p)
    return (r - radius).astype(np.float32), uy.astype(np.float32)


def dome(c: Case, y, x):
    """z of the diaphragm: two paraboloid domes (the left 15 mm lower) and the central tendon."""

    def para(top, xc, yc, ax, ay, depth):
        return top - depth * (((x - xc) / ax) ** 2 + ((y - yc) / ay) ** 2)

    d = np.maximum(
        para(0.0, -0.45 * c.A, 0.0, 0.6 * c.A, 0.9 * c.B, 72), para(-15.0, 0.45 * c.A, 0.0, 0.6 * c.A, 0.9 * c.B, 72)
    )
    d = np.maximum(d, para(-24.0, 15.0, -0.3 * c.B, 0.5 * c.A, 0.5 * c.B, 40))
    return (d - 22.0 * y / c.B).astype(np.float32)  # posterior recesses lie lower


@dataclass(frozen=True)
class Spine:
    rv: float
    pitch: float

    def y_body(self, c: Case, z):
        """Centre of the vertebral body: in the cage's posterior midline, bulging into the chest."""
        return c.B * (0.6 + 0.4 * _taper(c, z)) - 0.45 * self.radius(c, z)

    def radius(self, c: Case, z):
        return self.rv + 0.035 * np.clip(c.apex - z, 0, None)


def _tube_path(points, r):
    """Segments (p0, p1, r0, r1) along a polyline of (z, y, x) points with radii ``r`` (scalar or per point)."""
    pts = np.asarray(points, dtype=np.float64)
    rr = np.broadcast_to(np.asarray(r, dtype=np.float64), (len(pts),))
    return [(pts[i], pts[i + 1], rr[i], rr[i + 1]) for i in range(len(pts) - 1)]


def _polyline_sd(z, y, x, segments):
    """Signed distance to the union of tapered segments on a small (coarse) grid."""
    out = None
    for p0, p1, r0, r1 in segments:
        seg = p1 - p0
        rz, ry, rx = z - p0[0], y - p0[1], x - p0[2]
        t = np.clip((rz * seg[0] + ry * seg[1] + rx * seg[2]) / max(seg @ seg, 1e-9), 0, 1)
        d = np.sqrt((rz - t * seg[0]) ** 2 + (ry - t * seg[1]) ** 2 + (rx - t * seg[2]) ** 2) - (r0 + (r1 - r0) * t)
        out = d if out is None else np.minimum(out, d)
    return out


def _mediastinum(c: Case, sp: Spine, heart, vessels):
    """Builder of the keep-out signed distance (negative inside) of everything between the lungs."""

    def sd(z, y, x):
        w = np.where(z > heart[0][0] + 40, 24.0, 30.0) * (0.45 + 0.55 * np.clip((y + c.B) / (0.9 * c.B), 0, 1))
        col = np.abs(x - 5.0) - w
        k = smin(col, ellipsoid_sd(z, y, x, heart[0], np.asarray(heart[1]) + 5, heart[2]), 12)
        k = smin(k, _polyline_sd(z, y, x, vessels) - 4, 8)
        yb, rb = sp.y_body(c, z), sp.radius(c, z)
        spine = np.minimum(np.sqrt(x * x + (y - yb) ** 2) - rb - 6, np.maximum(np.abs(x) - rb - 6, yb - y))
        return smin(k, spine, 10)

    return sd


class Anatomy(NamedTuple):
    """Centres and paths (tube segments) of the named structures, in mm (z, y, x)."""

    sp: Spine
    heart: tuple
    aorta: list
    hila: tuple
    pa: list
    svc: list
    ivc: list
    trachea: list
    bronchi: list
    oeso: list


def _anatomy(c: Case, rng: np.random.Generator) -> Anatomy:
    """The mediastinal layout of this case, scaled to its cage."""
    sp = Spine(rv=rng.uniform(13, 16), pitch=rng.uniform(23, 27))
    s = rng.uniform(0.9, 1.15)
    heart = ((30.0 + rng.uniform(-6, 6), -0.3 * c.B, 22.0), (56 * s, 50 * s, 68 * s), -0.6)
    zc, yb_top = c.carina, float(sp.y_body(c, c.carina))
    rv_top = float(sp.radius(c, c.carina))
    z_low, z_top = c.z0 - 20, c.z0 + c.extent + 20
    hz, hy, hx = heart[0]
    y_desc = yb_top - 0.35 * rv_top
    aorta = _tube_path(
        [(hz + 30, hy - 5, hx - 28), (zc - 5, -0.45 * c.B, -8), (zc + 22, -0.1 * c.B, 6), (zc + 12, y_desc - 8, 24),
         (zc - 30, y_desc, 30), (-30, y_desc - 8, 24), (z_low, y_desc - 22, 10)],
        [14, 15, 13.5, 12.5, 12, 11.5, 10],
    )  # fmt: skip
    hila = ((zc - 20, 0.02 * c.B, -0.4 * c.A), (zc - 12, 0.08 * c.B, 0.38 * c.A))
    pa = _tube_path([(hz + 32, hy - 30, hx - 4), (zc - 14, -0.15 * c.B, 12)], [13, 13])
    pa += _tube_path([(zc - 14, -0.15 * c.B, 12), hila[0]], [10.5, 9])
    pa += _tube_path([(zc - 14, -0.15 * c.B, 12), hila[1]], [10.5, 9])
    svc = _tube_path([(z_top, -0.25 * c.B, -24), (hz + 30, -0.25 * c.B, -22)], [9, 10])
    ivc = _tube_path([(z_low, y_desc - 12, -24), (hz - 40, -0.1 * c.B, -16)], [11, 12])
    y_trach = yb_top - rv_top - 24
    trachea = _tube_path([(z_top, y_trach, 0), (zc, y_trach, 0)], rng.uniform(8, 10.5))
    bronchi = _tube_path([(zc, y_trach, 0), (hila[0][0] - 4, hila[0][1] + 10, hila[0][2] + 12)], [7.5, 6])
    bronchi += _tube_path([(zc, y_trach, 0), (hila[1][0] - 12, hila[1][1] + 10, hila[1][2] - 10)], [7, 5.5])
    oeso = _tube_path([(z_top, y_trach + 16, 6), (-10, y_desc - 4, 14), (-45, -0.1 * c.B, 0.3 * c.A)], 7)
    return Anatomy(sp, heart, aorta, hila, pa, svc, ivc, trachea, bronchi, oeso)


def _lung_field(c: Case, cax: Axes, keepout, rng: np.random.Generator):
    """The lungs as one signed distance (mm, negative inside) on the coarse grid."""
    z, y, x = cax.mesh()
    s, _ = cage(c, z, y, x)
    wobble = resample(_coarse_noise(rng, cax, 8.0), cax, cax) * 4.0
    cap = c.apex - ((np.abs(x) - 0.45 * c.A) ** 2 + (y - 0.05 * c.B) ** 2) / (2 * 95.0)
    lung = smax(s + 1.5, dome(c, y, x) + 2.0 - z + wobble, 10)
    lung = smax(lung, z - cap, 12)
    lung = smax(lung, -keepout(z, y, x) + 1.5 + 0.5 * wobble, 6)
    return lung.astype(np.float32)


def _coarse_noise(rng, cax: Axes, sigma_mm: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(cax.shape, dtype=np.float32), sigma_mm / COARSE_MM)
    return n / max(float(n.std()), 1e-6)


def _grow(rng, *, lung, grad, cax: Axes, p, d, r, shrink, side_ratio, angle, length, min_r, budget, outward):
    """A random branching tree of tapered cylinders that stays inside ``lung``: segments (p0, p1, r0, r1).

    Each tip goes on (radius × ``shrink``) and sends a side branch (× ``side_ratio``) off at about
    ``angle`` radians. A tip heading out of the lung is turned back along the field's gradient once and
    stops if that fails, so the tree fills the lung it grows in; the first two generations may cross
    the hilum's soft tissue.
    """
    segs, gen = [], 0
    while len(p) and len(segs) < budget:
        step = (r * rng.uniform(*length, len(r)) + 1.5)[:, None]
        q = p + d * step
        ok = sample_points(lung, cax, q) < -0.4 * r
        g = unit(np.stack([sample_points(f, cax, q) for f in grad], axis=-1) + 1e-9)
        turned = unit(d - 2 * np.clip(np.sum(g * d, axis=-1), 0, None)[:, None] * g)
        q2 = p + turned * step
        ok2 = ~ok & (sample_points(lung, cax, q2) < -0.4 * r)
        q, d = np.where(ok2[:, None], q2, q), np.where(ok2[:, None], turned, d)
        ok = ok | ok2 | (gen < 2)
        segs += list(zip(p[ok], q[ok], r[ok], r[ok] * shrink, strict=True))
        p, d, r = q[ok], d[ok], r[ok]
        gen += 1
        axis = unit(np.cross(d, random_units(rng, len(d))))
        out = unit(p - outward)
        ortho = np.cross(axis, d)

        def turn(a, d=d, ortho=ortho, out=out):
            return unit(d * np.cos(a)[:, None] + ortho * np.sin(a)[:, None] + 0.2 * out)

        p = np.concatenate([p, p])
        d = np.concatenate([turn(rng.normal(0, 0.12, len(d))), turn(-rng.uniform(0.7, 1.3, len(d)) * angle)])
        r = np.concatenate([r * shrink, r * side_ratio])
        alive = r >= min_r
        p, d, r = p[alive], d[alive], r[alive]
        room = max(budget - len(segs), 0)
        if len(p) > room:
            pick = np.sort(rng.permutation(len(p))[:room])
            p, d, r = p[pick], d[pick], r[pick]
    return segs


def _trees(c: Case, rng, lung, cax, anat):
    """Pulmonary arteries and veins (from the hila and the left atrium) and the bronchial tree."""
    heart, bronchi = anat.heart, anat.bronchi
    grad = np.gradient(lung, COARSE_MM)
    vessels, airways = [], list(anat.trachea) + list(bronchi)
    for side, hilum in zip((-1, 1), anat.hila, strict=True):
        h = np.asarray(hilum)
        dirs = np.array(
            [[1, 0, 0.2], [-1, 0.4, 0.3], [-0.6, -0.6, 0.5], [-0.8, 0.8, 0.2], [0.1, -0.5, 1], [0.3, 0.7, 0.6]]
        )
        dirs = unit(dirs * [1, 1, side] + rng.normal(0, 0.15, (6, 3)))
        grow = dict(lung=lung, grad=grad, cax=cax, length=(4, 7))
        vessels += _grow(rng, p=np.repeat(h[None], 6, 0), d=dirs, r=np.full(6, rng.uniform(4, 5.5)), shrink=0.86,
                         side_ratio=0.62, angle=0.65, min_r=0.45, budget=2600, outward=h, **grow)  # fmt: skip
        atrium = np.asarray(heart[0]) + np.array([10.0, 30.0, 28.0 * side - 10])
        vd = unit(np.array([[0.5, 0.2, side], [-0.4, 0.3, side], [0.0, -0.3, side]]) + rng.normal(0, 0.15, (3, 3)))
        vessels += _grow(rng, p=np.repeat(atrium[None], 3, 0), d=vd, r=np.full(3, rng.uniform(4.5, 6)), shrink=0.85,
                         side_ratio=0.6, angle=0.7, min_r=0.45, budget=1400, outward=atrium, **grow)  # fmt: skip
        tip = np.asarray(bronchi[0 if side < 0 else 1][1])
        ad = unit(
            np.array([[1, 0.2, 0.3 * side], [-1, 0.3, 0.3 * side], [-0.5, -0.6, 0.5 * side]])
            + rng.normal(0, 0.15, (3, 3))
        )
        airways += _grow(rng, p=np.repeat(tip[None], 3, 0), d=ad, r=np.full(3, 4.5), shrink=0.85,
                         side_ratio=0.65, angle=0.6, min_r=1.3, budget=400, outward=tip, **grow)  # fmt: skip
    return vessels, airways


def _mix(hu, sl, m, value) -> None:
    """Blend ``value`` into ``hu[sl]`` by the membership ``m`` (partial volume)."""
    h = hu[sl]
    h += (np.asarray(value, dtype=np.float32) - h) * m


def _mix_tubes(hu, axes, segs, value) -> None:
    for p0, p1, r0, r1 in segs:
        sl, d = capsule_sd(axes, p0, p1, r0, r1)
        if sl is not None:
            _mix(hu, sl, soft(d, axes.step), value)


def _ellipsoid(hu, axes, centre, semi, rot, value, below=None, cage_s=None):
    """Paint a rotated ellipsoid; ``below`` (a case) keeps it under the diaphragm and inside the cage."""
    pad = max(semi) + 3
    sl = axes.box(np.asarray(centre) - pad, np.asarray(centre) + pad)
    if sl is None:
        return None, None
    z, y, x = axes.sub(sl).mesh()
    sd = ellipsoid_sd(z, y, x, centre, semi, rot)
    if below is not None:
        sd = smax(smax(sd, z - dome(below, y, x) + 4, 4), cage_s[sl] + 3, 4)
    m = soft(sd, axes.step)
    _mix(hu, sl, m, value)
    return sl, sd


def _body(c: Case, axes: Axes):
    """Air, skin, subcutaneous fat, muscle (thick paraspinal and shoulder girdle) and the cage's contents."""
    z, y, x = axes.mesh()
    s, uy = cage(c, z, y, x)
    lat = 1 - uy * uy
    back = np.clip(uy, 0, None)
    shoulders = np.clip((z - c.carina + 10) / 80, 0, 1)
    muscle = c.muscle + 48 * back**6 + 40 * shoulders * lat**2
    skin = muscle + c.fat * (0.6 + 0.8 * lat) * (1 - 0.5 * back)
    del uy, lat, back
    w = axes.step
    hu = np.full(axes.shape, -1000.0, dtype=np.float32)
    everything = (slice(None),) * 3
    _mix(hu, everything, soft(s - skin, w), -105.0)
    _mix(hu, everything, soft(s - skin, w) - soft(s - skin + 2.0, w), 25.0)
    _mix(hu, everything, soft(s - muscle, w), 48.0)
    _mix(hu, everything, soft(s + 0.5, w), -85.0)  # mediastinal and abdominal fat until organs fill it
    return hu, s


def _wall_bones(c: Case, rng, axes: Axes, hu, s) -> None:
    """Ribs (sloping down to the front, cortex and marrow, costal cartilage) and the sternum."""
    zi, yi, xi = np.nonzero((s > -1) & (s < 14))
    zz, yy, xx, ss = axes.z[zi], axes.y[yi], axes.x[xi], s[zi, yi, xi]
    theta = np.arctan2(np.abs(xx), yy) / np.pi  # 0 at the spine, 1 at the sternum
    pitch, drop = (c.apex + 110) / 11.5, rng.uniform(60, 85)
    u = (zz - c.apex + 8 + drop * theta**1.5) / pitch
    k = np.rint(u)
    half_h, half_t = 4.8 + 0.12 * np.clip(-k, 0, 11), 3.6
    e = np.sqrt(((ss - 6.0) / half_t) ** 2 + ((u - k) * pitch / half_h) ** 2)
    rib = (k <= 0) & (k >= -11) & (theta > 0.04) & (theta < 0.93 - 0.02 * np.clip(-k - 6, 0, None))
    marrow, cortex = rng.uniform(160, 260), rng.uniform(700, 1000)
    value = np.where(theta > 0.8, 110.0, marrow + (cortex - marrow) * np.clip((e - 0.55) / 0.3, 0, 1))
    m = soft((e - 1) * half_t, axes.step) * rib
    w_st = np.where(zz > c.carina - 8, 24.0, 13.0)
    st = np.maximum(np.abs(ss - 6.5) - 5.5, np.abs(xx) - w_st)
    st = np.where((yy < 0) & (zz < c.carina + 38) & (zz > -5), st, 99.0)
    m_st = soft(st, axes.step)
    value = np.where(m_st > m, marrow * 0.8 + (cortex * 0.6 - marrow * 0.8) * np.clip((st + 1.2) / 0.8, 0, 1), value)
    m = np.maximum(m, m_st).astype(np.float32)
    hu[zi, yi, xi] += (value.astype(np.float32) - hu[zi, yi, xi]) * m


def _spine(c: Case, sp: Spine, rng, axes: Axes, hu) -> None:
    """Vertebral bodies with cortex and discs, the canal, the arch, spinous and transverse processes."""
    yb_all, rb_all = sp.y_body(c, axes.z), sp.radius(c, axes.z)
    sl = axes.box(
        (axes.z[0] - 1, yb_all.min() - rb_all.max() - 4, -55), (axes.z[-1] + 1, yb_all.max() + rb_all.max() + 65, 55)
    )
    if sl is None:
        return
    z, y, x = axes.sub(sl).mesh()
    yb, rb = sp.y_body(c, z).astype(np.float32), sp.radius(c, z).astype(np.float32)
    body = np.sqrt((0.95 * x) ** 2 + (y - yb) ** 2) - rb
    y_can = yb + rb + 8.5
    ring = np.sqrt(x * x + (y - y_can) ** 2)
    phase = ((z - c.apex) % sp.pitch).astype(np.float32)
    spinous = np.where((phase > 3) & (phase < sp.pitch - 5), _seg2d(x, y, (0, y_can + 8), (0, y_can + 24), 4.0), 99)
    transverse = _seg2d(np.abs(x), y, (9, y_can), (27, y_can + 11), 4.5)
    post = np.minimum(np.minimum(np.maximum(np.abs(ring - 10.5) - 3.0, yb + rb - 2 - y), spinous), transverse)
    cancellous, cortex = rng.uniform(150, 260), rng.uniform(600, 900)
    bone = cancellous + (cortex - cancellous) * np.clip((body + 1.6) / 1.0, 0, 1)
    _mix(hu, sl, soft(post, axes.step), 0.6 * cortex)
    _mix(hu, sl, soft(body, axes.step), np.where(phase < 5.5, 85.0, bone))
    _mix(hu, sl, soft(ring - 7.5, axes.step), 22.0)


def _seg2d(x, y, a, b, r):
    """Signed distance to an in-plane capsule from ``a`` to ``b`` (x, y mm) of radius ``r``."""
    ax, ay, bx, by = (np.float32(v) for v in (*a, *b))
    ex, ey = bx - ax, by - ay
    t = np.clip(((x - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey), 0, 1)
    return np.sqrt((x - ax - t * ex) ** 2 + (y - ay - t * ey) ** 2) - r


def _abdomen(c: Case, rng, axes: Axes, cax: Axes, hu, s) -> None:
    """Below the diaphragm: bowel and fat, liver, spleen, stomach with an air-fluid level, kidneys, gas."""
    sl = axes.box((axes.z[0] - 1, axes.y[0] - 1, axes.x[0] - 1), (8.0, axes.y[-1] + 1, axes.x[-1] + 1))
    if sl is None:
        return
    sub = axes.sub(sl)
    z, y, x = sub.mesh()
    gut = resample(_coarse_noise(rng, cax, 7.0), cax, sub)
    m = soft(z - dome(c, y, x) + 3, sub.step) * soft(s[sl] + 1.5, sub.step)
    _mix(hu, sl, m, -95 + 125 * np.clip(gut * 1.3 + 0.2, 0, 1))
    enh = 1.8 if c.contrast else 1.0
    r_dome = -0.45 * c.A
    _ellipsoid(hu, axes, (-80.0, 0.05 * c.B, r_dome + 10), (90, 0.85 * c.B, 0.62 * c.A), 0.3, 56 * enh, c, s)
    _ellipsoid(hu, axes, (-62.0, 0.5 * c.B, 0.6 * c.A), (48, 0.3 * c.B, 0.22 * c.A), 0.6, 47 * enh, c, s)
    st_c, st_s = (-58.0, -0.2 * c.B, 0.36 * c.A), (42, 0.42 * c.B, 0.3 * c.A)
    st_sl, st_sd = _ellipsoid(hu, axes, st_c, st_s, -0.4, 40.0, c, s)
    if st_sl is not None:
        level = st_c[1] - st_s[1] * rng.uniform(0.2, 0.7)
        _, yy, _ = axes.sub(st_sl).mesh()
        _mix(hu, st_sl, soft(st_sd + 4, axes.step), np.where(yy < level, -1000.0, 12.0))  # supine: air in front
    for side in (-1, 1):
        kc = (-100.0 - 10 * (side < 0), 0.55 * c.B, side * (0.28 * c.A + 28))
        k_sl, k_sd = _ellipsoid(hu, axes, kc, (52, 26, 24), side * 0.45, 150.0 if c.contrast else 32.0, c, s)
        if k_sl is not None:
            zz, yy, xx = axes.sub(k_sl).mesh()
            sinus = ellipsoid_sd(zz, yy, xx, (kc[0], kc[1] - 6, kc[2] - side * 10), (30, 10, 9), side * 0.45)
            _mix(hu, k_sl, soft(np.maximum(sinus, k_sd + 3), axes.step), -70.0)
    for _ in range(rng.integers(3, 9)):
        gc = (rng.uniform(axes.z[0] + 10, -60), rng.uniform(-0.8, 0.1) * c.B, rng.uniform(-0.6, 0.6) * c.A)
        r = rng.uniform(6, 18)
        g_sl, g_sd = _ellipsoid(hu, axes, gc, (r * 0.7, r * 0.8, r), rng.uniform(0, 3), 30.0, c, s)
        if g_sl is not None:
            _mix(hu, g_sl, soft(g_sd + 2, axes.step), -1000.0)


def _paint_lungs(c: Case, rng, axes: Axes, cax: Axes, lung_c, hu) -> None:
    """Parenchyma at about -850 HU, denser where it hangs (posterior), textured; emphysema; fissures."""
    z, y, x = axes.mesh()
    m = soft(resample(lung_c, cax, axes), axes.step)
    half = Axes(axes.z, axes.y[::2], axes.x[::2])
    tex = resample(band_noise(rng, half.shape, (0.6, 1.1, 1.1)), half, axes)
    value = rng.uniform(-885, -835) + 55 * np.clip(0.5 + 0.5 * y / c.B, 0, 1) + 18 * tex
    if c.emphysema:
        value = np.where((tex > 1.4) & (z > 30), -960.0, value)
    _mix(hu, (slice(None),) * 3, m, value)
    del tex, value
    dz = abs(float(axes.z[1] - axes.z[0])) if axes.z.size > 1 else 1.0
    for side in (-1, 1):
        zh, t = c.carina - 15, rng.uniform(0.9, 1.4)
        bend = rng.uniform(0.25, 0.5) * (np.abs(x) - 0.5 * c.A)  # runs forward as it goes lateral
        d = (z - zh - t * (y + bend)) / np.hypot(1, t)  # oblique fissure: high at the back, low in front
        sig = np.hypot(0.45, dz / 2.35 / np.hypot(1, t))
        line = 250 / (np.sqrt(2 * np.pi) * sig) * np.exp(-0.5 * (d / sig) ** 2)
        if side < 0:
            d2 = z - zh - rng.uniform(0, 15)  # minor fissure, right lung, in front of the hilum
            sig2 = np.hypot(0.45, dz / 2.35)
            line = line + np.where(y < 0, 250 / (np.sqrt(2 * np.pi) * sig2) * np.exp(-0.5 * (d2 / sig2) ** 2), 0)
        hu += (line * (x * side > 0)).astype(np.float32) * m


def _mediastinum_paint(c: Case, axes: Axes, hu, anat, blood: float, myo: float) -> None:
    """Heart (myocardium and blood pool), great vessels and oesophagus, in mediastinal fat."""
    heart = anat.heart
    _ellipsoid(hu, axes, heart[0], heart[1], heart[2], myo)
    _ellipsoid(hu, axes, heart[0], np.asarray(heart[1]) - 9, heart[2], blood)
    tubes = (
        (anat.aorta, blood),
        (anat.pa, blood),
        (anat.svc, 0.8 * blood + 8),
        (anat.ivc, 0.7 * blood + 12),
        (anat.oeso, 38.0),
    )
    for segs, value in tubes:
        _mix_tubes(hu, axes, segs, value)


def _nodule(rng, kind, R, centre, axes, hu, lung_c, cax, mv, labels, ident):
    """Paint one nodule and write its instance label; returns what its mask touches."""
    spic = kind in ("solid", "part-solid", "juxta-vascular") and rng.random() < 0.35
    lob = kind != "ground-glass" and rng.random() < 0.45
    reach = R * (1.4 if lob else 1.05) + (R * 0.9 + 3 if spic else 0) + 2 * axes.step
    sl = axes.box(np.asarray(centre) - reach, np.asarray(centre) + reach)
    sub = axes.sub(sl)
    z, y, x = sub.mesh()
    rel = (z - centre[0], y - centre[1], x - centre[2])
    dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2) + np.float32(1e-6)
    radius = np.full_like(dist, R)
    if lob:  # bumps on the sphere: a lobulated margin
        kappa = rng.uniform(3, 7)
        mean = (1 - np.exp(-2 * kappa)) / (2 * kappa)
        for v, a in zip(random_units(rng, 5), rng.uniform(0.1, 0.25, 5), strict=True):
            cosang = (rel[0] * v[0] + rel[1] * v[1] + rel[2] * v[2]) / dist
            radius += R * a * (np.exp(kappa * (cosang - 1)) - mean)
    m = soft(dist - radius, axes.step)
    if kind == "juxta-pleural":  # flattened against the chest wall
        m *= soft(resample(lung_c, cax, sub) - 0.5, axes.step)
    spicules = np.zeros_like(m)
    if spic:
        c = np.asarray(centre)
        segs = [
            (c + v * 0.8 * R, c + v * (R + rng.uniform(0.4, 0.9) * R + 2), 0.7, 0.25)
            for v in random_units(rng, rng.integers(6, 14))
        ]
        paint_tubes(spicules, sub, segs)
    h = hu[sl]
    if kind == "part-solid":
        rc = R * rng.uniform(0.35, 0.6)
        off = random_units(rng, 1)[0] * (R - rc) * rng.uniform(0, 0.5)
        core = soft(np.sqrt(sum((r - o) ** 2 for r, o in zip(rel, off, strict=True))) - rc, axes.step)
        np.maximum(h, h + (rng.uniform(-650, -450) - h) * m, out=h)
        np.maximum(h, h + (rng.uniform(10, 45) - h) * np.maximum(core, spicules * 0.8), out=h)
    else:
        value = {"ground-glass": rng.uniform(-680, -420), "calcified": rng.uniform(450, 1000)}.get(
            kind, rng.uniform(15, 55)
        )
        np.maximum(h, h + (value - h) * np.maximum(m, spicules * 0.8), out=h)
    mask = m > 0.5
    if kind == "juxta-vascular":
        mask &= mv[sl] < 0.5
    lab = labels[sl]
    lab[mask & (lab == 0)] = ident
    ic = tuple(int(np.clip(np.rint((v - a[0]) / (a[1] - a[0] if a.size > 1 else 1)), 0, a.size - 1))
               for v, a in zip(centre, (axes.z, axes.y, axes.x), strict=True))  # fmt: skip
    if labels[ic] == 0:
        labels[ic] = ident
    own = labels[sl] == ident
    shell = ndimage.binary_dilation(own) & ~own
    if (resample(lung_c, cax, sub)[shell] > 0.0).any():
        return "pleura"
    return "vessel" if (mv[sl][shell] > 0.5).any() else None


def _place(rng, c: Case, kinds, sizes, lung_c, cax: Axes, axes: Axes, vessels):
    """Centres (mm) for the nodules: deep in the lung, against the chest wall, or beside a vessel."""
    z, y, x = cax.mesh()
    s_c, _ = cage(c, z, y, x)
    lo = np.array([axes.z[0], axes.y[0], axes.x[0]])
    hi = np.array([axes.z[-1], axes.y[-1], axes.x[-1]])
    pts = np.stack(np.meshgrid(cax.z, cax.y, cax.x, indexing="ij"), axis=-1)
    seg = [(p0, p1, r0) for p0, p1, r0, _ in vessels if 1.0 <= r0 <= 3.5]
    grad = np.gradient(lung_c, COARSE_MM)
    placed = []
    for kind, d in zip(kinds, sizes, strict=True):
        R = d / 2
        fits = np.all((pts > lo + R + 1) & (pts < hi - R - 1), axis=-1)
        if kind == "juxta-pleural":
            pool = np.flatnonzero(fits & (np.abs(lung_c + 0.6 * R) < 1.6) & (np.abs(s_c + 1.5 - lung_c) < 1.0))
        else:
            pool = np.flatnonzero(fits & (lung_c < -(R + 3)))
        for _ in range(80):
            if kind == "juxta-vascular" and seg:
                p0, p1, r0 = seg[rng.integers(len(seg))]
                along = unit(p1 - p0)
                side = unit(np.cross(along, random_units(rng, 1)[0]))
                cand = p0 + (p1 - p0) * rng.uniform(0.2, 0.8) + side * (r0 + 0.7 * R)
                if (
                    sample_points(lung_c, cax, cand)[0] > -(R + 2)
                    or np.any(cand < lo + R + 1)
                    or np.any(cand > hi - R - 1)
                ):
                    continue
            elif len(pool):
                cand = pts.reshape(-1, 3)[pool[rng.integers(len(pool))]] + rng.uniform(-1.2, 1.2, 3)
                if kind == "juxta-pleural":  # onto the level set 0.5 R inside the pleura: it touches the wall
                    g = unit(np.array([sample_points(f, cax, cand)[0] for f in grad]) + 1e-9)
                    cand = cand - g * (sample_points(lung_c, cax, cand)[0] + 0.5 * R)
            else:
                break
            if all(np.linalg.norm(cand - q) > R + r + 4 for q, r, _ in placed):
                placed.append((cand, R, kind))
                break
    return placed


def build_chest(rng: np.random.Generator, shape_zyx=None, spacing_zyx=None):
    """The SYNTHETIC chest: (axes, HU int16, nodule instances uint8, findings)."""
    r_case, r_anat, r_tree, r_nod, r_bone, r_abd, r_lung, r_noise = rng.spawn(8)
    c = _draw_case(r_case)
    fov = float(np.clip(2 * (c.A + c.muscle + 1.4 * c.fat + 14), 0.66 * NX, 0.85 * NX))
    shape = tuple(int(n) for n in (shape_zyx or (round(c.extent / c.dz), NX, NX)))
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom shape must be three sizes of at least 8 voxels, got {list(shape)}")
    dz = c.dz if shape_zyx is None else c.extent / shape[0]
    spacing = (dz, fov / shape[1], fov / shape[2]) if spacing_zyx is None else tuple(map(float, spacing_zyx))
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"phantom spacing must be three positive sizes, got {spacing}")
    axes = centred_axes(shape, spacing, z0=c.z0)
    half = max(fov / 2, -axes.x[0], -axes.y[0])
    frame = Axes(
        np.array([min(c.z0, axes.z[0]), max(c.z0 + c.extent, axes.z[-1])]),
        np.array([-half, half]),
        np.array([-half, half]),
    )
    cax = coarse_axes(frame, COARSE_MM)

    anat = _anatomy(c, r_anat)
    tubes = anat.aorta + anat.pa + anat.svc + anat.trachea + anat.bronchi
    lung_c = _lung_field(c, cax, _mediastinum(c, anat.sp, anat.heart, tubes), r_anat)
    vessels, airways = _trees(c, r_tree, lung_c, cax, anat)
    n = int(r_nod.integers(1, 6))
    kinds = [str(k) for k in r_nod.permutation(TYPES)[:n]]
    sizes = np.where(r_nod.random(n) < 0.4, r_nod.uniform(4, 6, n), np.exp(r_nod.uniform(np.log(6), np.log(28), n)))
    placed = _place(r_nod, c, kinds, sizes, lung_c, cax, axes, vessels)

    blood = r_anat.uniform(180, 320) if c.contrast else r_anat.uniform(35, 48)
    hu, s = _body(c, axes)
    _abdomen(c, r_abd, axes, cax, hu, s)
    _paint_lungs(c, r_lung, axes, cax, lung_c, hu)
    _mediastinum_paint(c, axes, hu, anat, blood, 110.0 if c.contrast else 46.0)
    _spine(c, anat.sp, r_bone, axes, hu)
    _wall_bones(c, r_bone, axes, hu, s)
    del s
    everything = (slice(None),) * 3
    member = np.zeros(axes.shape, dtype=np.float32)
    paint_tubes(member, axes, airways, scale=1.3, add=0.4)
    _mix(hu, everything, member, 20.0)
    member[:] = 0
    paint_tubes(member, axes, airways)
    _mix(hu, everything, member, -1000.0)
    member[:] = 0
    paint_tubes(member, axes, vessels)
    _mix(hu, everything, member, blood)

    labels = np.zeros(axes.shape, dtype=np.uint8)
    found = []
    for i, (centre, R, kind) in enumerate(placed, start=1):
        touches = _nodule(r_nod, kind, R, centre, axes, hu, lung_c, cax, member, labels, i)
        found.append(Finding(kind, tuple(float(v) for v in centre), 2 * R, touches))
    del member

    sigma = (0.45, 0.5, 0.5) if c.sharp else (0.5, 0.85, 0.85)
    hu = ndimage.gaussian_filter(hu, sigma)
    if c.sharp:  # a lung kernel's edge overshoot
        hu += 0.6 * (hu - ndimage.gaussian_filter(hu, (0, 1.3, 1.3)))
    hu += band_noise(r_noise, axes.shape, (0.4, 0.7, 0.7) if c.sharp else (0.5, 1.1, 1.1)) * np.float32(c.noise_hu)
    array = np.rint(np.clip(hu, -1024, 3071)).astype(np.int16)
    return axes, array, labels, tuple(found)
