"""A lesion from one click: seeded region growing that works on any scan without a trained model.

In a box around the click (``ROI_MM``), lightly smoothed, the values fall in two classes (Otsu: lung
and soft tissue on a chest CT). The lesion's edge is placed a quarter of the way from the value around
it to its own peak near the click (and at least a few noise sigmas away), the connected region beyond
it is taken from the peak, and a watershed of the region's distance map cuts it from the vessel or
chest wall it touches where it narrows. The value around the lesion is then measured again on its own
rim and the region taken once more; holes are filled. Nothing is learned, so it fails where a lesion
has no edge of its own (one fused broadly with the wall) and on lesions of a voxel or two.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radlens.imaging.volume import Volume

ROI_MM = 80.0  # side of the cube around the seed that the region may grow in
SMOOTH_MM = 0.5  # Gaussian sigma before thresholding
NOISE_STEPS = 5.0  # the edge is at least this many noise sigmas from the background
PEAK_MM = 2.0  # the lesion's peak is looked for this close to the click
RIM_MM = 3.0  # the rim whose values are the lesion's surroundings
H_MM = 1.0  # distance-map peaks lower than this above their saddle are one object
LEVEL = 0.25  # where the edge is: this far from the background value towards the lesion's peak


def roi_around(volume: Volume, seed_zyx, side_mm: float = ROI_MM) -> tuple[slice, slice, slice]:
    """The box of ``side_mm`` around the seed, clipped to the volume."""
    half = [max(2, round(side_mm / 2 / s)) for s in volume.spacing_zyx]
    return tuple(
        slice(max(0, int(c) - h), min(n, int(c) + h + 1))
        for c, h, n in zip(seed_zyx, half, volume.shape_zyx, strict=True)
    )


def grow_from_seed(volume: Volume, seed_zyx, *, side_mm: float = ROI_MM) -> np.ndarray:
    """A bool mask on ``volume``'s grid of the object under ``seed_zyx`` (empty if nothing grows)."""
    seed = tuple(round(v) for v in seed_zyx)
    out = np.zeros(volume.shape_zyx, dtype=bool)
    if volume.is_rgb or not all(0 <= c < n for c, n in zip(seed, volume.shape_zyx, strict=True)):
        return out
    roi = roi_around(volume, seed, side_mm)
    spacing = np.asarray(volume.spacing_zyx)
    crop = ndimage.gaussian_filter(np.asarray(volume.array[roi], dtype=np.float32), SMOOTH_MM / spacing)
    local = tuple(c - r.start for c, r in zip(seed, roi, strict=True))
    noise = noise_sigma(crop)
    background, bright = _background(crop, float(crop[local]), noise)
    peak_at = _peak_near(crop, local, spacing, bright)
    peak = float(crop[peak_at])
    region = None
    for _ in range(2):  # the background, once from the whole box, then from the lesion's own rim
        step = max(LEVEL * abs(peak - background), NOISE_STEPS * noise)
        level = background + step if bright else background - step
        grown = crop >= level if bright else crop <= level
        if not grown[peak_at]:
            break
        region = cut_bridges(keep_seed_piece(grown, peak_at), spacing, peak_at)
        rim = ndimage.binary_dilation(region, iterations=max(1, round(RIM_MM / spacing.min()))) & ~region
        if not rim.any():
            break
        # the rim's side away from the lesion (lung rather than the chest wall a nodule touches)
        background = float(np.percentile(crop[rim], 25 if bright else 75))
    if region is None:
        return out
    if _reaches_faces(region):  # it leaked (a tiny lesion in a vessel tree): keep what is near the seed
        region = keep_seed_piece(region & _ball_near(region, peak_at, spacing), peak_at)
    out[roi] = ndimage.binary_fill_holes(region)
    return out


def _background(crop: np.ndarray, seed_value: float, noise: float) -> tuple[float, bool]:
    """(the value around the lesion, whether the lesion is brighter than it). The box holds two classes
    of values (Otsu: lung and soft tissue on a chest CT). A seed in the upper class is a lesion of it set
    in the lower (a solid nodule in the lung); a seed in the lower class but clearly above its mean stands
    out within it (ground glass in the lung); a seed at the lower class's level is a dark lesion set in
    the upper one (a cyst in the liver)."""
    _, low, high = two_classes(crop)
    if seed_value - low >= 0.5 * (high - low) or seed_value - low > NOISE_STEPS * noise:
        return low, True
    return high, False


def two_classes(values: np.ndarray, bins: int = 256) -> tuple[float, float, float]:
    """Otsu's split of the values into two classes: (threshold, mean below, mean above)."""
    v = values.reshape(-1)
    lo, hi = np.percentile(v, [0.5, 99.5])
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi + 1e-6))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    k = int(np.argmax(w0 * w1 * (m0 - m1) ** 2))
    return float(edges[k + 1]), float(m0[k]), float(m1[k])


def _reaches_faces(region: np.ndarray) -> bool:
    return any(np.take(region, i, axis=a).any() for a in range(3) for i in (0, -1))


def _ball_near(region: np.ndarray, seed, spacing) -> np.ndarray:
    """The ball around the seed of three times the region's inscribed radius there (at least two voxels)."""
    radius = 3 * float(ndimage.distance_transform_edt(region, sampling=spacing)[tuple(seed)])
    radius = max(radius, 2 * float(np.max(spacing)))
    axes = [(np.arange(n) - c) * s for n, c, s in zip(region.shape, seed, spacing, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return z**2 + y**2 + x**2 <= radius**2


def noise_sigma(image: np.ndarray) -> float:
    """The noise's standard deviation, robustly: the median absolute difference of neighbouring voxels
    (mostly inside one tissue), scaled for a normal distribution."""
    d = np.abs(np.diff(image, axis=-1))
    return float(np.median(d) / (0.6745 * np.sqrt(2)))


def _peak_near(crop: np.ndarray, seed, spacing, bright: bool) -> tuple[int, int, int]:
    """The brightest (or darkest) voxel within PEAK_MM of the click: a click near a lesion's edge still
    finds its core."""
    k = np.maximum(1, np.round(PEAK_MM / spacing)).astype(int)
    near = tuple(slice(max(0, c - r), c + r + 1) for c, r in zip(seed, k, strict=True))
    patch = crop[near]
    at = np.unravel_index(int(np.argmax(patch) if bright else np.argmin(patch)), patch.shape)
    return tuple(int(p + s.start) for p, s in zip(at, near, strict=True))


def cut_bridges(region: np.ndarray, spacing, seed) -> np.ndarray:
    """The region without the structures it touches (a vessel, the chest wall): a watershed of its
    distance map cuts it where it narrows, and the basin at the seed is kept."""
    dist = ndimage.distance_transform_edt(region, sampling=spacing).astype(np.float32)
    peaks = sitk.GetArrayFromImage(sitk.HMaxima(sitk.GetImageFromArray(dist), H_MM))
    maxima = region & (peaks > 0) & (peaks == ndimage.maximum_filter(peaks, size=3))
    markers, n = ndimage.label(maxima, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return region
    basins = sitk.GetArrayFromImage(
        sitk.MorphologicalWatershedFromMarkers(
            sitk.GetImageFromArray(-dist), sitk.GetImageFromArray(markers.astype(np.uint32)), markWatershedLine=False
        )
    )
    basins[~region] = 0
    at = basins[tuple(seed)]
    return keep_seed_piece(basins == at, seed) if at else region


def keep_seed_piece(mask: np.ndarray, seed) -> np.ndarray:
    """The connected piece of ``mask`` at the seed, or the nearest to it (26-connectivity)."""
    if not mask.any():
        return mask
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    at = comp[tuple(seed)]
    if at == 0:
        _, (iz, iy, ix) = ndimage.distance_transform_edt(comp == 0, return_indices=True)
        at = comp[iz[tuple(seed)], iy[tuple(seed)], ix[tuple(seed)]]
    return comp == at
