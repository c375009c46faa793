"""Volume files (NIfTI, NRRD, MHA/MHD) through SimpleITK, as the same LPS ``Volume`` as DICOM.

ITK already works in LPS (its NIfTI reader converts from RAS), so the conversion here is only
the axis order: SimpleITK's spacing/origin are (x, y, z), its arrays (z, y, x). The NIfTI files ITK
refuses (NIfTI-2, a sheared affine) are read through nibabel instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radlens.imaging.atomic import atomic_path
from radlens.imaging.errors import ImagingError, NotAnImageError
from radlens.imaging.modality import guess_ct
from radlens.imaging.volume import Volume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(VOLUME_SUFFIXES)


def volume_from_sitk(image: sitk.Image, **meta) -> Volume:
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 3 and array.ndim == 3:  # a single RGB slice
        array = array[np.newaxis]
    if image.GetDimension() == 2:
        array = array[np.newaxis]
        spacing = (1.0, *image.GetSpacing()[::-1])
        origin = (*image.GetOrigin(), 0.0)
        d2 = np.asarray(image.GetDirection()).reshape(2, 2)
        direction = np.eye(3)
        direction[:2, :2] = d2
    else:
        spacing = image.GetSpacing()[::-1]
        origin = image.GetOrigin()
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return Volume(array=array, spacing_zyx=spacing, origin_lps=origin, direction=direction, **meta)


def sitk_from_volume(volume: Volume, array: np.ndarray | None = None) -> sitk.Image:
    a = volume.array if array is None else array
    image = sitk.GetImageFromArray(np.ascontiguousarray(a), isVector=a.ndim == 4)
    image.SetSpacing(volume.spacing_zyx[::-1])
    image.SetOrigin(volume.origin_lps)
    image.SetDirection(tuple(volume.direction.reshape(-1)))
    return image


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI/NRRD/MHA/MHD file into a Volume in LPS."""
    path = Path(path)
    if not path.is_file():
        raise ImagingError(path, "no such file")
    if not is_volume_file(path):
        raise NotAnImageError(path, "not a NIfTI, NRRD or MetaImage file")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = next((ln for ln in str(err).splitlines() if ln.strip()), "unreadable")
        if not path.name.lower().endswith((".nii", ".nii.gz")):
            raise ImagingError(path, f"cannot read volume: {first.strip()}") from None
        volume, modality = _read_nifti_with_nibabel(path, first.strip()), "OT"
    else:
        modality = _header_modality(image)
        volume = volume_from_sitk(image, modality=modality, source=str(path), description=path.name)
    if modality == "OT" and (reason := guess_ct(volume.array)):
        volume = volume.with_array(volume.array, modality="CT", warnings=(*volume.warnings, reason))
    return volume


def _read_nifti_with_nibabel(path: Path, itk_error: str) -> Volume:
    """A NIfTI file ITK cannot read: NIfTI-2, or an affine with shear (ITK wants orthonormal axes).

    A sheared grid is shown on the nearest orthonormal one (polar decomposition of the affine's
    directions) and the warning says by how many degrees and millimetres the two differ.
    """
    import nibabel

    try:
        image = nibabel.load(str(path))
        array = np.asanyarray(image.dataobj)
    except Exception as err:  # nibabel raises many kinds for a broken file
        raise ImagingError(path, f"cannot read volume: {itk_error} (nibabel: {err})") from None
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3:
        raise ImagingError(path, f"a {array.ndim}D NIfTI image: only 3D volumes are read")
    affine = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.affine, dtype=np.float64)[:3]  # RAS → LPS
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
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in array.shape])).reshape(3, -1)
        off = np.linalg.norm(axes @ corners - (direction * spacing) @ corners, axis=0).max()
        warnings.append(
            f"sheared affine ({shear:.1f}° from orthogonal): shown on the nearest orthogonal grid, "
            f"positions off by up to {off:.1f} mm"
        )
    if isinstance(image, nibabel.Nifti2Image):
        warnings.append("NIfTI-2 file, read through nibabel")
    return Volume(
        array=np.ascontiguousarray(np.transpose(array, (2, 1, 0))),
        spacing_zyx=tuple(float(v) for v in spacing[::-1]),
        origin_lps=tuple(float(v) for v in affine[:, 3]),
        direction=direction,
        source=str(path),
        description=path.name,
        warnings=tuple(warnings),
    )


def _header_modality(image: sitk.Image) -> str:
    for key in ("modality", "Modality"):
        if image.HasMetaDataKey(key):
            # MetaImage spells it MET_MOD_CT, MET_MOD_MR, ... and MET_MOD_UNKNOWN when it does not know.
            value = image.GetMetaData(key).strip().upper().removeprefix("MET_MOD_")
            return "OT" if value in ("", "UNKNOWN") else value
    if image.HasMetaDataKey("descrip"):
        text = image.GetMetaData("descrip").upper()
        for m in ("CT", "MR", "PT"):
            if text.startswith(m) or f"MODALITY={m}" in text:
                return m
    return "OT"


def write_volume(volume: Volume, path: str | os.PathLike, array: np.ndarray | None = None) -> Path:
    """Write ``array`` (default: the volume's own) on the volume's grid, losslessly and atomically.

    Masks use this to land on exactly the input's grid. The modality is kept in the NIfTI
    description so that a round trip keeps it.
    """
    path = Path(path)
    image = sitk_from_volume(volume, array)
    if volume.modality and volume.modality != "OT":
        # ITK's NIfTI writer fills the header's descrip field from ITK_FileNotes (not from "descrip").
        image.SetMetaData("ITK_FileNotes", f"modality={volume.modality}")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    try:
        with atomic_path(path, suffix) as tmp:
            sitk.WriteImage(image, tmp, useCompression=path.name.endswith(".gz"))
    except RuntimeError as err:
        raise ImagingError(path, f"cannot write volume: {str(err).strip().splitlines()[0]}") from None
    return path
