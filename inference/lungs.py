"""The lungs of a CT, found from Hounsfield units alone, to keep a chest model's findings in the chest.

Why: the shipped nodule detector, run on real CTs without a nodule, put about twenty boxes per
scan above its threshold in abdominal soft tissue, where no lung nodule can be. A lung is the large
volume of air inside the body: voxels below -400 HU that are not connected, within their own
axial slice, to the air around the patient (which reaches the edge of the field of view). Bowel
and stomach gas is air inside the body too, so only components of lung size are kept.

The mask is computed on a coarse grid (about 4 mm), which is enough to say how far a finding lies
from the lungs and costs a fraction of a second on a 512×512×300 CT. A finding is kept when its
centre lies within a margin plus its own radius of aerated lung, so that a juxta-pleural nodule or
a mass on the chest wall, whose centre is outside the air, is kept too. When no lungs are found
(a CT of the head or of a leg), a lung model is not run and the engine says why.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.volume import Volume
from radlens.inference.findings import Detection

AIR_BELOW_HU = -400.0
STEP_MM = 4.0
MIN_LUNGS_ML = 150.0  # both lungs of an adult hold about 4-6 litres; a scan of the lung bases still ~0.3
MIN_FRACTION_OF_LARGEST = 0.2  # the second lung is kept; a pocket of bowel gas is not
MAX_COMPONENTS = 3  # left lung, right lung, and the trachea when it is separate at this step
MARGIN_MM = 10.0


@dataclass(frozen=True, eq=False)
class Lungs:
    """Aerated lung on a coarse grid of the CT, and the distance of every voxel of that grid to it."""

    grid: Volume  # uint8 mask (1 = lung air) on the coarse grid, placed like the CT
    distance_mm: np.ndarray  # float32, 0 inside the lungs
    volume_ml: float

    def distance_at(self, centers_lps: Sequence) -> np.ndarray:
        """Millimetres from each LPS point to the nearest aerated lung (points off the grid: the edge's value)."""
        pts = np.asarray(centers_lps, dtype=np.float64).reshape(-1, 3)
        idx = np.rint(self.grid.lps_to_index(pts)).astype(int)
        idx = np.clip(idx, 0, np.asarray(self.grid.shape_zyx) - 1)
        return self.distance_mm[idx[:, 0], idx[:, 1], idx[:, 2]]

    def touches(self, centers_lps: Sequence, diameters_mm: Sequence[float], margin_mm: float = MARGIN_MM) -> np.ndarray:
        """Per finding, whether one of that size centred there reaches the lungs (within ``margin_mm``)."""
        radius = np.asarray(diameters_mm, dtype=np.float64).reshape(-1) / 2
        return self.distance_at(centers_lps) <= margin_mm + radius

    def keep_detections(self, detections: Sequence[Detection]) -> tuple[Detection, ...]:
        """The detections that touch the lungs, renumbered 1..N."""
        if not detections:
            return ()
        near = self.touches([d.center_lps for d in detections], [d.diameter_mm for d in detections])
        kept = [d for d, ok in zip(detections, near, strict=True) if ok]
        return tuple(dataclasses.replace(d, id=i) for i, d in enumerate(kept, start=1))


NOT_FOUND = "no lungs found in this series, and a lung model's findings must lie in the lungs"


# The lungs found per volume: the lungs crop and each lung model's gating ask for the same volume's.
_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FOUND_LOCK = threading.Lock()


def find_lungs(volume: Volume, step_mm: float = STEP_MM) -> Lungs | None:
    """The lungs of a CT in HU, or None when it holds no lung-sized air inside the body (computed
    once per volume and step)."""
    with _FOUND_LOCK:
        found = _FOUND.get(volume, {})
        if step_mm in found:
            return found[step_mm]
    lungs = _find_lungs(volume, step_mm)
    with _FOUND_LOCK:
        _FOUND.setdefault(volume, {})[step_mm] = lungs
    return lungs


def _find_lungs(volume: Volume, step_mm: float) -> Lungs | None:
    if volume.is_rgb or volume.modality.upper() != "CT":
        return None
    strides = tuple(max(1, round(step_mm / s)) for s in volume.spacing_zyx)
    coarse = volume.array[:: strides[0], :: strides[1], :: strides[2]]
    air = coarse < AIR_BELOW_HU
    # Air components within each axial slice: those reaching the slice's edge are around the patient.
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    slices, _ = ndimage.label(air, structure=in_plane)
    edge = np.zeros(coarse.shape, dtype=bool)
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    outside = np.unique(slices[edge & air])
    inside = air & ~np.isin(slices, outside)
    components, n = ndimage.label(inside)
    if n == 0:
        return None
    spacing = np.asarray(volume.spacing_zyx) * np.asarray(strides)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(components.reshape(-1), minlength=n + 1)[1:] * voxel_ml
    order = np.argsort(sizes)[::-1][:MAX_COMPONENTS]
    kept = [i + 1 for i in order if sizes[i] >= MIN_FRACTION_OF_LARGEST * sizes[order[0]]]
    total = float(sizes[np.asarray(kept) - 1].sum())
    if total < MIN_LUNGS_ML:
        return None
    mask = np.isin(components, kept)
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing).astype(np.float32)
    grid = volume.with_array(mask.astype(np.uint8), spacing_zyx=tuple(spacing))
    return Lungs(grid, distance, total)
