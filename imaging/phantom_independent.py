"""A second, independently written SYNTHETIC phantom generator (chest CT, brain MR) for cross-source figures.

Why: models trained on :mod:`radlens.imaging.phantom`'s phantoms and scored on more of the same measure
how well they learnt that generator. These cases share only the output type (:class:`Phantom`) with it:
anatomy, textures, intensity models, grids and seeds (``SeedSequence([seed, 101])`` / ``[seed, 102]``)
are its own. Anatomy lives in :mod:`radlens.imaging.phantom_independent_ct` and ``..._mr``; this module
holds the geometry helpers both use and turns their output into a :class:`Phantom`.

Coordinates are millimetres on the patient: x to the patient's left, y posterior, z superior (LPS axes),
arrays ``(z, y, x)`` with slice 0 the most inferior, as in a clinical axial series.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.phantom import Phantom, PhantomLesion
from radlens.imaging.volume import StudyInfo, Volume, Window


@dataclass(frozen=True)
class Axes:
    """Voxel-centre coordinates (mm) of an axis-aligned grid, one 1-D array per axis."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.size, self.y.size, self.x.size)

    @property
    def step(self) -> float:
        """The soft-edge width for partial volume: the geometric mean voxel size."""
        return float(np.cbrt(np.prod([_step(a) for a in (self.z, self.y, self.x)])))

    def sub(self, box) -> Axes:
        return Axes(self.z[box[0]], self.y[box[1]], self.x[box[2]])

    def mesh(self):
        """Broadcastable (z, y, x) coordinate arrays, float32."""
        return (
            self.z[:, None, None].astype(np.float32),
            self.y[None, :, None].astype(np.float32),
            self.x[None, None, :].astype(np.float32),
        )

    def box(self, lo_zyx, hi_zyx) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels inside a mm box, or None when it misses the grid."""
        out = []
        for a, lo, hi in zip((self.z, self.y, self.x), lo_zyx, hi_zyx, strict=True):
            i0, i1 = np.searchsorted(a, lo), np.searchsorted(a, hi, side="right")
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)  # type: ignore[return-value]


def _step(a: np.ndarray) -> float:
    return float(a[1] - a[0]) if a.size > 1 else 1.0


def centred_axes(shape, spacing, z0: float | None = None) -> Axes:
    """A grid centred on x = y = 0; ``z0`` is the z of slice 0 (default: centred too)."""
    nz, ny, nx = shape
    dz, dy, dx = spacing
    z = (np.arange(nz) - (nz - 1) / 2) * dz if z0 is None else z0 + np.arange(nz) * dz
    return Axes(z, (np.arange(ny) - (ny - 1) / 2) * dy, (np.arange(nx) - (nx - 1) / 2) * dx)


def coarse_axes(fine: Axes, step: float, margin: float = 6.0) -> Axes:
    """A coarse grid covering ``fine`` on which smooth fields are cheap to build."""
    return Axes(*(np.arange(a[0] - margin, a[-1] + margin + step, step) for a in (fine.z, fine.y, fine.x)))


def resample(field: np.ndarray, src: Axes, dst: Axes) -> np.ndarray:
    """Separable linear interpolation of a field on ``src`` at the voxels of ``dst`` (float32)."""
    out = field.astype(np.float32, copy=False)
    for axis, (a_src, a_dst) in enumerate(zip((src.z, src.y, src.x), (dst.z, dst.y, dst.x), strict=True)):
        if a_src.size == 1:
            out = np.repeat(out, a_dst.size, axis=axis)
            continue
        t = np.clip((a_dst - a_src[0]) / _step(a_src), 0, a_src.size - 1.000001)
        i0 = np.floor(t).astype(np.intp)
        shape = [1, 1, 1]
        shape[axis] = -1
        w = (t - i0).astype(np.float32).reshape(shape)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i0 + 1, axis=axis) * w
    return out


def sample_points(field: np.ndarray, src: Axes, pts_zyx) -> np.ndarray:
    """Linear interpolation of a field at mm points (N, 3) in (z, y, x) order."""
    p = np.atleast_2d(np.asarray(pts_zyx, dtype=np.float64))
    idx = [(p[:, i] - a[0]) / _step(a) for i, a in enumerate((src.z, src.y, src.x))]
    return ndimage.map_coordinates(field, idx, order=1, mode="nearest")


def band_noise(rng: np.random.Generator, shape, sigma_vox, dog: float | None = None) -> np.ndarray:
    """Gaussian-filtered white noise of unit spread; ``dog`` subtracts a ``dog``× wider blur (band-pass)."""
    n = rng.standard_normal(shape, dtype=np.float32)
    f = ndimage.gaussian_filter(n, sigma_vox, mode="wrap")
    if dog is not None:
        f -= ndimage.gaussian_filter(f, np.asarray(sigma_vox) * dog, mode="wrap")
    return f / max(float(f.std()), 1e-6)


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume membership of the inside of a signed distance ``d`` (negative inside)."""
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32, copy=False)


def smin(a, b, k: float):
    """Smooth union of two signed distances (polynomial, blend radius ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1 - h)


def smax(a, b, k: float):
    """Smooth intersection: the rounded corner that keeps a recess or an apex anatomical."""
    return -smin(-a, -b, k)


def ellipsoid_sd(z, y, x, centre_zyx, semi_zyx, rot_z: float = 0.0):
    """Approximate signed distance (mm) to an ellipsoid rotated by ``rot_z`` radians about z."""
    dz, dy, dx = z - centre_zyx[0], y - centre_zyx[1], x - centre_zyx[2]
    c, s = np.cos(rot_z), np.sin(rot_z)
    u, v = c * dx + s * dy, -s * dx + c * dy
    q = np.sqrt((u / semi_zyx[2]) ** 2 + (v / semi_zyx[1]) ** 2 + (dz / semi_zyx[0]) ** 2)
    return (q - 1) * min(semi_zyx)


def capsule_sd(axes: Axes, p0, p1, r0: float, r1: float):
    """Signed distance to a tapered cylinder from ``p0`` to ``p1`` (mm, zyx) inside its box: (slices, sd)."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    pad = max(r0, r1) + 2 * axes.step
    sl = axes.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if sl is None:
        return None, None
    z, y, x = axes.sub(sl).mesh()
    seg = (p1 - p0).astype(np.float32)
    length2 = max(float(seg @ seg), 1e-9)
    rz, ry, rx = z - np.float32(p0[0]), y - np.float32(p0[1]), x - np.float32(p0[2])
    t = np.clip((rz * seg[0] + ry * seg[1] + rx * seg[2]) / length2, 0.0, 1.0)
    d = np.sqrt((rz - t * seg[0]) ** 2 + (ry - t * seg[1]) ** 2 + (rx - t * seg[2]) ** 2)
    return sl, d - (r0 + (r1 - r0) * t)


def paint_tubes(target: np.ndarray, axes: Axes, segments, scale: float = 1.0, add: float = 0.0) -> None:
    """Max-composite the partial-volume memberships of tapered segments (p0, p1, r0, r1) into ``target``."""
    for p0, p1, r0, r1 in segments:
        sl, d = capsule_sd(axes, p0, p1, r0 * scale + add, r1 * scale + add)
        if sl is not None:
            np.maximum(target[sl], soft(d, axes.step), out=target[sl])


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_units(rng: np.random.Generator, n: int) -> np.ndarray:
    return unit(rng.standard_normal((n, 3)))


def _uid(*parts: object) -> str:
    """A DICOM UID (2.25 + 128 bits) that is a pure function of ``parts``, distinct from the main generator's."""
    digest = hashlib.sha256("/".join(str(p) for p in ("radlens-independent-phantom", *parts)).encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


@dataclass(frozen=True)
class Finding:
    """What a builder knows of one finding: its type, nominal centre (mm, zyx, on the builder's grid) and size."""

    kind: str
    centre_zyx: tuple[float, float, float]
    diameter_mm: float
    touches: str | None = None
    contrast: str | None = None


def assemble(kind, seed, axes: Axes, array, instances, found, modality, description, windows) -> Phantom:
    """Place the builder's grid in LPS (identity direction) and index its findings: a :class:`Phantom`."""
    origin = (float(axes.x[0]), float(axes.y[0]), float(axes.z[0]))
    spacing = tuple(_step(a) for a in (axes.z, axes.y, axes.x))
    study = StudyInfo(
        patient_name="SYNTHETIC^PHANTOM",
        patient_id=f"INDEP-{kind}-{seed}",
        study_uid=_uid(kind, seed, "study"),
        study_date="20000101",
        study_description=f"SYNTHETIC {kind} phantom (independent generator, seed {seed})",
    )
    volume = Volume(
        array=array, spacing_zyx=spacing, origin_lps=origin, direction=np.eye(3), modality=modality,
        series_uid=_uid(kind, seed, "series"), description=description, study=study, windows=windows,
        source=f"synthetic-independent:{kind}:{seed}",
    )  # fmt: skip
    boxes = ndimage.find_objects(instances, max_label=len(found))
    findings = []
    for i, (f, sl) in enumerate(zip(found, boxes, strict=True), start=1):
        c_lps = tuple(float(v) for v in f.centre_zyx[::-1])  # builder mm are LPS mm
        c_zyx = tuple(float(v) for v in volume.lps_to_index(c_lps))
        box = tuple(s.start for s in sl) + tuple(s.stop for s in sl)
        findings.append(
            PhantomLesion(
                id=i, kind=f.kind, center_zyx=c_zyx, center_lps=c_lps, diameter_mm=float(f.diameter_mm),  # type: ignore[arg-type]
                box_zyx=box, touches=f.touches, contrast=f.contrast,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    labels = instances if kind == "chest-ct" else (instances > 0).astype(np.uint8)
    return Phantom(volume, labels, tuple(findings), kind, int(seed))


def make_independent_chest_ct(seed: int, shape_zyx=None, spacing_zyx=None) -> Phantom:
    """A SYNTHETIC chest CT in HU (int16) from the independent generator, with 1–5 labelled nodules.

    Default grid: 2 or 2.5 mm slices over ~330 mm and 448×448 pixels of 0.68–0.80 mm (the field of
    view follows the body); ``labels`` is the nodule instance map 1..N (uint8), as ``radlens phantom``
    writes for chest-ct. ``shape_zyx`` alone keeps the case's field of view.
    """
    from radlens.imaging.phantom_independent_ct import build_chest

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 101]))
    axes, array, instances, found = build_chest(rng, shape_zyx, spacing_zyx)
    return assemble(
        "chest-ct", seed, axes, array, instances, found, "CT",
        "SYNTHETIC chest CT phantom (independent generator)", (Window(1500.0, -600.0), Window(400.0, 40.0)),
    )  # fmt: skip


def make_independent_brain_mr(seed: int, shape_zyx=None, spacing_zyx=None) -> Phantom:
    """A SYNTHETIC T2-like brain MR (int16, ≥ 0) from the independent generator, with 2–6 lesions.

    Default grid: 256×256 pixels of 0.9 mm, 3–5 mm axial slices made from 1 mm sub-slices (their
    partial volume); ``labels`` is the lesion map (1 = lesion, a tumour's rim and core together).
    """
    from radlens.imaging.phantom_independent_mr import build_brain

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 102]))
    axes, array, instances, found = build_brain(rng, shape_zyx, spacing_zyx)
    return assemble(
        "brain-mr", seed, axes, array, instances, found, "MR",
        "SYNTHETIC brain MR phantom (T2-like, independent generator)", (),
    )  # fmt: skip
