"""What a volume is when its file does not say: CT recognised from its Hounsfield units.

Why: NIfTI and NRRD files carry no modality, so a real chest CT saved as NRRD read as "OT" and no
model offered to run on it. CT values are calibrated: air sits near −1000 HU, fat near −100, soft
tissue and blood near 40, and nothing but padding lies far below air. MR intensities are arbitrary
and non-negative, so an MR (or a PET) never shows both an air peak and a soft-tissue peak there.
The guess is reported as a warning on the volume, and a reader can always override it.
"""

from __future__ import annotations

import numpy as np

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
