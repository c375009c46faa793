"""What a volume is when its file does not say: CT recognised from its Hounsfield units, and an MR's
contrast (fluid brighter or darker than the brain) from its intensities.

Why: NIfTI and NRRD files carry no modality, so a real chest CT saved as NRRD read as "OT" and no
model offered to run on it. CT values are calibrated: air sits near −1000 HU, fat near −100, soft
tissue and blood near 40, and nothing but padding lies far below air. MR intensities are arbitrary
and non-negative, so an MR (or a PET) never shows both an air peak and a soft-tissue peak there.
The guess is reported as a warning on the volume, and a reader can always override it.

An MR contrast is arbitrary too, but one thing about it is visible without a segmentation: at the
centre of a head, where the ventricles lie in deep white matter, fluid is either brighter than the
parenchyma around it (T2-like) or darker (T1-like, FLAIR). Which of the two matters most to a lesion
model: a model that learned dark fluid outlines bright ventricles as lesions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Fractions of the (sampled) voxels, measured on the phantoms and on pydicom's real CT files: a
# chest CT has ~20-60% air (outside the body and in the lungs) and ~30-60% soft tissue; a head CT
# ~30% air; an abdomen CT with a tight field of view still a few per cent of air.
AIR_HU = (-1100.0, -900.0)
SOFT_TISSUE_HU = (-150.0, 150.0)
MIN_AIR_FRACTION = 0.01
MIN_SOFT_TISSUE_FRACTION = 0.05
SAMPLE_VOXELS = 1 << 20


def _sample(array: np.ndarray) -> np.ndarray:
    """About a million voxels on a regular stride: enough for fractions of a per cent, and cheap."""
    flat = array.reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    return flat[::step].astype(np.float32)


def guess_ct(array: np.ndarray) -> str | None:
    """The reason ``array`` reads as a CT in Hounsfield units, or None when it does not."""
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number) or array.size == 0:
        return None
    v = _sample(array)
    # Padding outside the scanned circle (-1024, -2000, -3024) is neither air nor tissue: leave it out.
    v = v[v > -1500]
    if v.size == 0:
        return None
    air = float(np.mean((v >= AIR_HU[0]) & (v <= AIR_HU[1])))
    tissue = float(np.mean((v >= SOFT_TISSUE_HU[0]) & (v <= SOFT_TISSUE_HU[1])))
    if air < MIN_AIR_FRACTION or tissue < MIN_SOFT_TISSUE_FRACTION:
        return None
    return (
        f"the file names no modality; read as CT from its intensities ({air:.0%} of voxels near -1000 HU "
        f"(air), {tissue:.0%} near 0-40 HU (soft tissue))"
    )


# The head's centre: in each axial slice at least half as wide as the widest, the voxels deeper
# below the outline than this share of that slice's greatest depth (ventricles, deep white matter).
CENTRE_DEPTH = 0.4
WIDE_SLICE = 0.6
# Fluid departs from the parenchyma's mode by more than this share; the side with at least twice the
# voxels of the other, and this share of the centre, is the fluid's. Measured (docs/architecture.md):
# T1-like phantoms dark 0.04, bright 0.00; T2-like phantoms of the independent generator bright
# 0.20-0.35, dark 0.02; a real EPI (nibabel's example4d) bright 0.06, dark 0.02; the MNI152 T1
# template dark 0.13, bright 0.00.
FLUID_STEP = 0.35
MIN_FLUID_SHARE = 0.02
BRIGHT, DARK = "bright", "dark"
# The MR contrasts a reader may say a series is, as a bundle's ``applicability.sequence`` names them.
MR_CONTRASTS = ("T1-like", "T2-like", "FLAIR-like")


def _head_centre(array: np.ndarray, spacing_zyx) -> np.ndarray:
    """The voxels at the centre of the head, on a ~2 mm in-plane grid (cheap, and enough for fractions)."""
    sy, sx = (max(1, round(2.0 / float(s))) for s in spacing_zyx[1:])
    a = np.asarray(array[:, ::sy, ::sx], dtype=np.float32)
    positive = a[a > 0]
    if positive.size < 1000:
        return a[:0]
    head = a > 0.1 * np.percentile(positive, 99.5)
    areas = head.sum(axis=(1, 2))
    centre = np.zeros_like(head)
    for k in np.flatnonzero(areas >= WIDE_SLICE * areas.max()):
        inside = ndimage.binary_fill_holes(ndimage.binary_opening(head[k]))
        depth = ndimage.distance_transform_edt(
            inside, sampling=(float(spacing_zyx[1]) * sy, float(spacing_zyx[2]) * sx)
        )
        centre[k] = depth > CENTRE_DEPTH * depth.max()
    return a[centre]


def fluid_contrast(array: np.ndarray, spacing_zyx) -> str | None:
    """``BRIGHT`` when a head MR's fluid is brighter than its brain, ``DARK`` when darker, None when unclear."""
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number) or array.size == 0:
        return None
    values = _head_centre(array, spacing_zyx)
    if values.size < 500:
        return None
    counts, edges = np.histogram(values, bins=64, range=(0.0, float(np.percentile(values, 99.9)) or 1.0))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(np.float64), 1.5)))
    mode = 0.5 * (edges[peak] + edges[peak + 1])
    bright = float(np.mean(values > (1 + FLUID_STEP) * mode))
    dark = float(np.mean(values < (1 - FLUID_STEP) * mode))
    if bright >= MIN_FLUID_SHARE and bright >= 2 * dark:
        return BRIGHT
    if dark >= MIN_FLUID_SHARE and dark >= 2 * bright:
        return DARK
    return None
