"""Volume files SimpleITK cannot read, through nibabel: NIfTI-2, sheared NIfTI, MGH/MGZ, MINC,
Philips PAR/REC, AFNI BRIK/HEAD and Analyze.

nibabel gives a RAS affine; it is turned into RadLens' LPS grid once, here. A sheared affine is
shown on the nearest orthonormal grid (polar decomposition of its directions) with a warning that
gives the shear in degrees and the largest position error in mm. An image with a fourth dimension
(time, b-values, echoes) is a 4D set: ``index`` picks one of its 3D volumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.imaging.errors import ImagingError

# Formats only nibabel reads (NIfTI goes to SimpleITK first). A header's data file beside it (.rec,
# .brik, .img) is part of the volume, not a file of its own.
NIBABEL_SUFFIXES = (".mgh", ".mgz", ".mnc", ".par", ".head")
DATA_FILE_OF = {".par": (".rec", ".REC"), ".head": (".BRIK", ".BRIK.gz", ".brik", ".brik.gz"), ".hdr": (".img",)}


@dataclass(frozen=True)
class NibabelGrid:
    """What discovery needs of a file: the 3D grid in LPS, how many 3D volumes it holds, its notes."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: np.ndarray
    count: int
    warnings: tuple[str, ...]


def _open(path: Path, why: str):
    import nibabel

    try:
        image = nibabel.load(str(path))
    except ModuleNotFoundError as err:
        raise ImagingError(path, f"cannot read volume: it needs the {err.name} package") from None
    except FileNotFoundError as err:
        raise ImagingError(path, _missing(err)) from None
    except Exception as err:  # nibabel raises many kinds for a broken file
        raise ImagingError(path, f"cannot read volume: {why}{_one_line(err)}") from None
    if type(image).__name__.startswith("Cifti"):
        raise ImagingError(path, "a CIFTI-2 matrix (brain-ordinate data), not an image on a grid")
    if getattr(image, "affine", None) is None:
        raise ImagingError(path, "cannot read volume: no affine (no position in space)")
    return image


def grid(path: Path, why: str = "") -> NibabelGrid:
    """The grid of ``path`` from its header (nibabel reads no voxels for this)."""
    image = _open(path, why)
    shape = _spatial_first(image, tuple(int(n) for n in image.shape))
    if len(shape) < 2:
        raise ImagingError(path, f"a {len(shape)}D image: nothing to show")
    shape3 = (*shape[:3], *([1] * (3 - len(shape[:3]))))
    spacing, origin, direction, warnings = _lps_grid(path, np.asarray(image.affine, dtype=np.float64), shape3)
    count = int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1
    return NibabelGrid(
        (shape3[2], shape3[1], shape3[0]), spacing, origin, direction, count, (*warnings, *_notes(image))
    )


def read(path: Path, why: str = "", index: int = 0) -> dict:
    """Volume fields of the ``index``-th 3D volume of ``path`` (array in (z, y, x), LPS grid)."""
    image = _open(path, why)
    shape = tuple(int(n) for n in image.shape)
    try:
        if len(shape) > 3 and _time_first(image):
            array = np.asanyarray(image.dataobj[index])
        elif len(shape) > 3:  # the trailing axes (5D and more) as one
            array = np.asanyarray(image.dataobj).reshape(*shape[:3], -1)[..., index]
        else:
            array = np.asanyarray(image.dataobj)
    except FileNotFoundError as err:
        raise ImagingError(path, _missing(err)) from None
    except Exception as err:
        raise ImagingError(path, f"cannot read voxels: {_one_line(err)}") from None
    while array.ndim < 3:
        array = array[..., np.newaxis]
    shape3 = array.shape[:3]
    spacing, origin, direction, warnings = _lps_grid(path, np.asarray(image.affine, dtype=np.float64), shape3)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return {
        "array": np.ascontiguousarray(np.transpose(array, (2, 1, 0))),
        "spacing_zyx": spacing,
        "origin_lps": origin,
        "direction": direction,
        "warnings": (*warnings, *_notes(image)),
    }


def _time_first(image) -> bool:
    """MINC puts time first (nibabel keeps the file's order; the affine maps the last three axes)."""
    return type(image).__name__.startswith("Minc") and len(image.shape) == 4


def _spatial_first(image, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[1:], shape[0]) if _time_first(image) else shape


def _lps_grid(path: Path, affine_ras: np.ndarray, shape_xyz) -> tuple:
    affine = np.diag([-1.0, -1.0, 1.0]) @ affine_ras[:3]  # RAS → LPS
    axes = affine[:, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if not np.all(spacing > 0):
        raise ImagingError(path, f"the affine has an axis of length 0 ({list(spacing)})")
    u, _, vt = np.linalg.svd(axes / spacing)
    direction = u @ vt
    warnings = []
    cosines = (axes / spacing).T @ (axes / spacing)
    shear = float(np.degrees(np.max(np.abs(np.arcsin(np.clip(cosines[~np.eye(3, dtype=bool)], -1, 1))))))
    if shear > 0.01:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape_xyz])).reshape(3, -1)
        off = np.linalg.norm(axes @ corners - (direction * spacing) @ corners, axis=0).max()
        warnings.append(
            f"sheared affine ({shear:.1f}° from orthogonal): shown on the nearest orthogonal grid, "
            f"positions off by up to {off:.1f} mm"
        )
    return (
        tuple(float(v) for v in spacing[::-1]),
        tuple(float(v) for v in affine[:, 3]),
        direction,
        tuple(warnings),
    )


def _notes(image) -> tuple[str, ...]:
    name = type(image).__name__.removesuffix("Image")
    if name == "Nifti1":  # a NIfTI-1 ITK refused: its shear warning says why
        return ()
    return (f"{'NIfTI-2' if name == 'Nifti2' else name} file, read through nibabel",)


def _missing(err: FileNotFoundError) -> str:
    return f"a header without its data: {os.path.basename(err.filename or '')} is missing"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
