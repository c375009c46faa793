"""Pre-processing shared by training and inference, so the intensity window cannot drift between them.

Small callables in MONAI's style (settings in ``__init__``, work in ``__call__``), built from a
bundle's ``input`` block by :class:`Preprocess`. Order: crop to the body on the input grid (cheap
slicing, and every later step works on fewer voxels), resample to the model spacing, normalise.
:class:`Prepared` remembers the crop and both grids so results map back to the input grid.
numpy + imaging only: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens.imaging.errors import ImagingError
from radlens.imaging.geometry import resample_to_grid, resample_to_spacing
from radlens.imaging.volume import Volume
from radlens.inference.metadata import InputSpec, Normalization

# CT voxels above this are "body" (air is about -1000 HU, lung parenchyma about -850 to -600 HU).
BODY_HU = -500.0


def crop_volume(volume: Volume, box_zyx) -> Volume:
    """The voxels inside a half-open box, as a Volume placed where they were (origin moved to the box corner)."""
    z0, y0, x0, z1, y1, x1 = (int(v) for v in box_zyx)
    if (z0, y0, x0, z1, y1, x1) == (0, 0, 0, *volume.shape_zyx):
        return volume
    origin = volume.index_to_lps((z0, y0, x0))
    return volume.with_array(volume.array[z0:z1, y0:y1, x0:x1], origin_lps=tuple(origin))


class CropToBody:
    """Bounding box of the voxels above ``threshold`` (CT: the body), plus a margin in millimetres.

    Computed on a strided copy (every ``step``-th voxel), then widened by one step, so it costs a
    few per cent of a full pass. Lung is inside the box because the chest wall surrounds it.
    """

    def __init__(self, threshold: float = BODY_HU, margin_mm: float = 8.0, step_zyx=(2, 4, 4)):
        self.threshold = float(threshold)
        self.margin_mm = float(margin_mm)
        self.step = tuple(int(s) for s in step_zyx)

    def __call__(self, volume: Volume) -> tuple[int, int, int, int, int, int]:
        shape = volume.shape_zyx
        sz, sy, sx = self.step
        inside = volume.array[::sz, ::sy, ::sx] > self.threshold
        if not inside.any():
            return (0, 0, 0, *shape)
        box = []
        for axis in range(3):
            hit = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append((int(hit[0]) * self.step[axis], (int(hit[-1]) + 1) * self.step[axis]))
        lo, hi = [], []
        for axis, (a, b) in enumerate(box):
            pad = self.step[axis] + int(np.ceil(self.margin_mm / volume.spacing_zyx[axis]))
            lo.append(max(0, a - pad))
            hi.append(min(shape[axis], b + pad))
        return (*lo, *hi)


class CropToLungs:
    """The lungs' bounding box (:func:`radlens.inference.lungs.find_lungs`) plus a margin in millimetres.

    Why: a chest model then never sees the abdomen or the neck (no findings there, and on a
    chest-abdomen CT a third of the voxels to run on). The margin keeps a juxta-pleural nodule or a
    mass on the lung's edge whole. Without lungs (a head CT), the body's box.
    """

    def __init__(self, margin_mm: float = 20.0):
        self.margin_mm = float(margin_mm)

    def __call__(self, volume: Volume) -> tuple[int, int, int, int, int, int]:
        from radlens.inference.lungs import find_lungs

        lungs = find_lungs(volume)
        if lungs is None:
            return CropToBody()(volume)
        mask = lungs.grid.array > 0
        shape = volume.shape_zyx
        lo, hi = [], []
        for axis in range(3):
            hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            step = round(lungs.grid.spacing_zyx[axis] / volume.spacing_zyx[axis])
            pad = step + int(np.ceil(self.margin_mm / volume.spacing_zyx[axis]))
            lo.append(max(0, int(hit[0]) * step - pad))
            hi.append(min(shape[axis], (int(hit[-1]) + 1) * step + pad))
        return (*lo, *hi)


class ResampleToSpacing:
    """A volume (or a label map, nearest neighbour) on a grid of the model's spacing, same extent."""

    def __init__(self, spacing_zyx, is_mask: bool = False):
        self.spacing_zyx = tuple(float(s) for s in spacing_zyx)
        self.is_mask = bool(is_mask)

    def __call__(self, volume: Volume) -> Volume:
        return resample_to_spacing(volume, self.spacing_zyx, is_mask=self.is_mask)


class NormalizeIntensity:
    """A bundle's normalisation (:class:`radlens.inference.metadata.Normalization`) as a function of the array.

    ``ct-clip``: clip to the window in HU, then map to [0, 1] (``scale="zscore"``: by the training
    set's mean and std instead). ``zscore``: per-volume z-score over the voxels above
    ``foreground_above`` (MR, whose scale differs from scan to scan); background keeps the
    foreground's low end.
    """

    def __init__(self, settings: Normalization):
        self.kind = settings.kind
        self.clip = settings.clip
        self.scale = settings.scale
        self.mean = settings.mean
        self.std = settings.std or 1.0
        self.foreground_above = settings.foreground_above

    def ct_affine(self) -> tuple[float, float, float, float]:
        """A CT window as ``(lo, hi, scale, offset)``: the output is ``clip(HU, lo, hi) * scale + offset``."""
        if self.kind != "ct-clip":
            raise ValueError(f"a {self.kind!r} normalization is not a fixed CT window")
        lo, hi = self.clip
        if self.scale == "zscore":
            return lo, hi, 1.0 / self.std, -self.mean / self.std
        return lo, hi, 1.0 / (hi - lo), -lo / (hi - lo)

    def __call__(self, array: np.ndarray) -> np.ndarray:
        a = np.asarray(array, dtype=np.float32)
        if self.kind == "ct-clip":
            lo, hi = self.clip
            out = np.clip(a, lo, hi)
            if self.scale == "zscore":
                out -= self.mean
                out /= self.std
            else:
                out -= lo
                out /= hi - lo
            return out
        fg = a[a > self.foreground_above]
        if fg.size < 16:
            fg = a.reshape(-1)
        mean, std = float(fg.mean()), float(fg.std()) or 1.0
        out = (a - mean) / std
        return np.maximum(out, (float(fg.min()) - mean) / std, out=out)


@dataclass(frozen=True, eq=False)
class Prepared:
    """An input volume ready for a network, and what is needed to map results back.

    ``image`` is the normalised float32 array on ``grid`` (the model-spacing grid of the cropped
    region); ``crop_zyx`` the half-open box of the input grid that was kept; ``cropped`` the input
    restricted to it (the reference grid results are resampled onto before being pasted back).
    """

    image: np.ndarray
    grid: Volume
    crop_zyx: tuple[int, int, int, int, int, int]
    cropped: Volume
    source: Volume

    def label_on_model_grid(self, label: Volume) -> np.ndarray:
        """A label map on the input grid, cropped and resampled (nearest) like the image: for training."""
        cropped = crop_volume(label, self.crop_zyx)
        return resample_to_grid(cropped, self.grid, is_mask=True, fill=0).array

    def to_input_grid(self, array: np.ndarray, *, is_mask: bool, fill: float = 0) -> np.ndarray:
        """An array on the model grid, resampled onto the whole input grid (outside the crop: ``fill``)."""
        on_crop = resample_to_grid(self.grid.with_array(array), self.cropped, is_mask=is_mask, fill=fill).array
        if self.cropped is self.source:
            return on_crop
        out = np.full(self.source.shape_zyx, fill, dtype=on_crop.dtype)
        z0, y0, x0, z1, y1, x1 = self.crop_zyx
        out[z0:z1, y0:y1, x0:x1] = on_crop
        return out

    def to_input_grid_region(self, array: np.ndarray, box_model_zyx) -> tuple[np.ndarray, tuple[slice, ...]]:
        """A label map on the model grid, resampled (nearest) onto the input voxels its box covers.

        Returns the values and the slices of the input grid they belong to. Masks are sparse, so
        resampling only the box costs a fraction of the whole 512×512×N grid. ``None`` → empty.
        """
        if box_model_zyx is None:
            where = (slice(0, 0),) * 3
            return np.zeros((0, 0, 0), dtype=array.dtype), where
        b = np.asarray(box_model_zyx, dtype=np.float64)
        corners = np.stack(np.meshgrid(*[(b[a] - 0.5, b[a + 3] - 0.5) for a in range(3)], indexing="ij"), -1)
        idx = self.model_index_to_input_index(corners.reshape(-1, 3))
        lo = np.floor(idx.min(axis=0)).astype(int) - 1
        hi = np.ceil(idx.max(axis=0)).astype(int) + 2
        c = self.crop_zyx
        lo = np.maximum(lo, c[:3])
        hi = np.minimum(hi, c[3:])
        region = (*lo.tolist(), *np.maximum(hi, lo).tolist())
        reference = crop_volume(self.source, region)
        values = resample_to_grid(self.grid.with_array(array), reference, is_mask=True, fill=0).array
        return values, tuple(slice(a, z) for a, z in zip(region[:3], region[3:], strict=True))

    def model_index_to_input_index(self, index_zyx) -> np.ndarray:
        """Fractional model-grid indices (…, 3) → fractional input-grid indices (…, 3)."""
        return self.source.lps_to_index(self.grid.index_to_lps(index_zyx))


class Preprocess:
    """A bundle's ``input`` block (spacing, normalisation, crop) as one callable: Volume → Prepared."""

    def __init__(self, spec: InputSpec):
        self.resample = ResampleToSpacing(spec.spacing_zyx)
        self.normalize = NormalizeIntensity(spec.normalization)
        self.crop = {"body": CropToBody, "lungs": CropToLungs}[spec.crop]() if spec.crop else None

    def __call__(self, volume: Volume) -> Prepared:
        if volume.is_rgb:
            raise ImagingError(volume.source or "volume", "a colour image cannot be fed to a 3D model")
        box = self.crop(volume) if self.crop is not None else (0, 0, 0, *volume.shape_zyx)
        cropped = crop_volume(volume, box)
        grid = self.resample(cropped)
        image = self.normalize(grid.array)
        return Prepared(image, grid.with_array(image), box, cropped, volume)
