"""Grids: resampling a volume or a mask onto another grid, and plane extraction with its aspect."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import sitk_from_volume

PLANES = ("axial", "coronal", "sagittal")


def resample_to_grid(volume: Volume, reference: Volume, *, is_mask: bool = False, fill: float | None = None) -> Volume:
    """``volume``'s values on ``reference``'s grid (nearest neighbour for masks, linear otherwise)."""
    if volume.same_grid(reference):
        return volume
    interp = sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear
    if fill is None:
        fill = 0.0 if is_mask else float(np.min(volume.array))
    ref = sitk_from_volume(reference, np.zeros(reference.shape_zyx, dtype=np.uint8))
    out = sitk.Resample(sitk_from_volume(volume), ref, sitk.Transform(), interp, fill, _sitk_pixel_id(volume.array))
    return reference.with_array(
        sitk.GetArrayFromImage(out).astype(volume.array.dtype, copy=False), modality=volume.modality
    )


def resample_to_spacing(volume: Volume, spacing_zyx, *, is_mask: bool = False) -> Volume:
    """The same physical extent on a grid of ``spacing_zyx`` mm (what a model was trained on)."""
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    if np.allclose(spacing_zyx, volume.spacing_zyx, rtol=1e-3):
        return volume
    extent = np.asarray(volume.shape_zyx) * np.asarray(volume.spacing_zyx)
    shape = tuple(max(1, round(e / s)) for e, s in zip(extent, spacing_zyx, strict=True))
    # Keep the physical centre of the first voxel's corner aligned: origin shifts by half a voxel change.
    shift_zyx = (np.asarray(spacing_zyx) - np.asarray(volume.spacing_zyx)) / 2
    origin = np.asarray(volume.origin_lps) + volume.direction @ shift_zyx[::-1]
    target = Volume(np.zeros(shape, dtype=np.uint8), spacing_zyx, tuple(origin), volume.direction)
    return resample_to_grid(volume, target, is_mask=is_mask)


def _sitk_pixel_id(array: np.ndarray) -> int:
    return sitk.GetImageFromArray(np.zeros((1, 1, 1), dtype=array.dtype)).GetPixelID()


@dataclass(frozen=True)
class PlaneSlice:
    """A 2D view of a volume: ``image`` is (rows, columns); ``pixel_mm`` = (row, column) spacing."""

    image: np.ndarray
    pixel_mm: tuple[float, float]
    plane: str
    index: int


def plane_count(volume: Volume, plane: str) -> int:
    """How many slices a plane has (axial: z, coronal: y, sagittal: x)."""
    return volume.shape_zyx[_axis(plane)]


def extract_plane(volume: Volume, plane: str, index: int) -> PlaneSlice:
    """The slice ``index`` of a plane, as displayed: rows go top→bottom, columns left→right.

    Axial: rows = y, columns = x (index axes). Coronal and sagittal: rows = z, reversed when z
    increases towards the head (the usual case), so that the head is at the top. No copy: a view.
    """
    sl = [slice(None)] * 3
    sl[_axis(plane)] = index
    return _as_shown(volume, plane, index, volume.array[tuple(sl)])


SLAB_MODES = {"mip": np.max, "minip": np.min, "mean": np.mean}


def extract_slab(volume: Volume, plane: str, index: int, half: int, mode: str) -> PlaneSlice:
    """A thick slab centred on slice ``index``: the maximum (MIP), minimum (MinIP) or mean of the
    ``2·half + 1`` slices around it (fewer at the volume's ends), displayed like ``extract_plane``."""
    axis = _axis(plane)
    sl = [slice(None)] * 3
    sl[axis] = slice(max(0, index - half), min(volume.shape_zyx[axis], index + half + 1))
    block = volume.array[tuple(sl)]
    if mode == "mean":
        image = block.mean(axis=axis, dtype=np.float32)
    else:
        image = SLAB_MODES[mode](block, axis=axis)
    return _as_shown(volume, plane, index, image)


def _as_shown(volume: Volume, plane: str, index: int, image: np.ndarray) -> PlaneSlice:
    sz, sy, sx = volume.spacing_zyx
    if plane == "axial":
        return PlaneSlice(image, (sy, sx), plane, index)
    head_up = z_rows_reversed(volume)
    return PlaneSlice(image[::-1] if head_up else image, (sz, sx) if plane == "coronal" else (sz, sy), plane, index)


def _axis(plane: str) -> int:
    try:
        return {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    except KeyError:
        raise ValueError(f"unknown plane {plane!r} (known: {', '.join(PLANES)})") from None


def z_rows_reversed(volume: Volume) -> bool:
    """True when coronal/sagittal displays show z reversed: increasing z goes to the head (LPS +z)."""
    return bool(volume.direction[2, 2] > 1e-6)
