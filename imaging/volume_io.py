"""Volume files (NIfTI, NRRD, MHA/MHD) through SimpleITK, as the same LPS ``Volume`` as DICOM.

ITK already works in LPS (its NIfTI reader converts from RAS), so the conversion here is only
the axis order: SimpleITK's spacing/origin are (x, y, z), its arrays (z, y, x). The NIfTI files ITK
refuses (NIfTI-2, a sheared affine) and the formats only nibabel reads (MGH, MINC, PAR/REC, AFNI)
go through :mod:`radlens.imaging.volume_nibabel`. A file with a fourth dimension is a 4D set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radlens.imaging import volume_nibabel
from radlens.imaging.atomic import atomic_path
from radlens.imaging.errors import ImagingError, NotAnImageError
from radlens.imaging.kinds import volume_file_kind
from radlens.imaging.modality import guess_ct
from radlens.imaging.presentation import Presentation
from radlens.imaging.volume import Volume
from radlens.imaging.volume_nibabel import NIBABEL_SUFFIXES

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", *NIBABEL_SUFFIXES)


def is_volume_file(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(VOLUME_SUFFIXES)


@dataclass(frozen=True)
class VolumeHeader:
    """A volume file's grid from its header: what discovery lists (``count`` 3D volumes: >1 is a 4D set)."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: np.ndarray
    count: int
    modality: str
    warnings: tuple[str, ...] = ()


def volume_header(path: str | os.PathLike) -> VolumeHeader:
    """The grid of a NIfTI/NRRD/MetaImage (SimpleITK) or of a format only nibabel reads, voxels unread."""
    path = Path(path)
    itk_error = ""
    if not _nibabel_only(path):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            itk_error = _first_line(err)
            if not _nibabel_may_read(path):
                raise ImagingError(path, f"cannot read volume: {itk_error}") from None
        else:
            return _itk_header(reader)
    g = volume_nibabel.grid(path, f"{itk_error} (nibabel: " if itk_error else "")
    return VolumeHeader(g.shape_zyx, g.spacing_zyx, g.origin_lps, g.direction, g.count, "OT", g.warnings)


def _itk_header(reader: sitk.ImageFileReader) -> VolumeHeader:
    dim = reader.GetDimension()
    size, spacing, origin = reader.GetSize(), reader.GetSpacing(), reader.GetOrigin()
    direction = np.asarray(reader.GetDirection()).reshape(dim, dim)
    count = 1
    if dim == 2:
        size, spacing, origin = (*size, 1), (*spacing, 1.0), (*origin, 0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    elif dim > 3:
        count = int(np.prod(size[3:]))
        size, spacing, origin = size[:3], spacing[:3], origin[:3]
        direction = direction[:3, :3]
    return VolumeHeader(
        shape_zyx=(int(size[2]), int(size[1]), int(size[0])),
        spacing_zyx=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_lps=tuple(float(v) for v in origin),
        direction=direction,
        count=count,
        modality=_header_modality(reader),
    )


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


def read_volume(path: str | os.PathLike, index: int = 0) -> Volume:
    """Read a NIfTI/NRRD/MHA/MHD (or MGH, MINC, PAR/REC, AFNI, Analyze) file into a Volume in LPS.

    ``index`` picks the 3D volume of a 4D file (a time point, a b-value).
    """
    path = Path(path)
    if not path.is_file():
        raise ImagingError(path, "no such file")
    if not is_volume_file(path):
        raise NotAnImageError(path, "not a NIfTI, NRRD or MetaImage file")
    meta = {"source": str(path), "description": path.name}
    image = None if _nibabel_only(path) else _read_itk(path)
    if image is None or isinstance(image, str):  # a format or a file only nibabel reads
        why = f"{image} (nibabel: " if image else ""
        volume, modality = Volume(**volume_nibabel.read(path, why, index), **meta), "OT"
    else:
        modality = _header_modality(image)
        if image.GetDimension() > 3:
            image = _one_of_4d(image, index)
        volume = volume_from_sitk(image, modality=modality, **meta)
    if modality == "OT" and (reason := guess_ct(volume.array)):
        volume = volume.with_array(volume.array, modality="CT", warnings=(*volume.warnings, reason))
    return volume.with_array(volume.array, presentation=Presentation(kind=volume_file_kind(volume.shape_zyx[0])))


def _read_itk(path: Path) -> sitk.Image | str:
    """The image through SimpleITK, or ITK's first error line for a file nibabel may read instead."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        if not _nibabel_may_read(path):
            raise ImagingError(path, f"cannot read volume: {_first_line(err)}") from None
        return _first_line(err)


def _one_of_4d(image: sitk.Image, index: int) -> sitk.Image:
    """The ``index``-th 3D volume of a 4D (or higher) image, the trailing axes counted as one."""
    size = list(image.GetSize())
    trailing = size[3:]
    position = [0, 0, 0, *np.unravel_index(index, trailing)]
    return sitk.Extract(image, [*size[:3], *([0] * len(trailing))], [int(v) for v in position])


def _nibabel_only(path: Path) -> bool:
    return path.name.lower().endswith(NIBABEL_SUFFIXES)


def _nibabel_may_read(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz", ".hdr"))


def _first_line(err: BaseException) -> str:
    return next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "unreadable")


def _header_modality(image: sitk.Image | sitk.ImageFileReader) -> str:
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
