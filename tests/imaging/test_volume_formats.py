"""The last formats a reader meets: NIfTI-2 and sheared NIfTI (which ITK refuses; read through
nibabel) and gzip-wrapped DICOM (read from an inflated copy), each with the same voxels and geometry."""

import gzip
import shutil
import tarfile

import nibabel
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from radlens.imaging.discovery import scan
from radlens.imaging.errors import ImagingError
from radlens.imaging.loading import load
from radlens.imaging.volume_io import read_volume

ARRAY_XYZ = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)  # nibabel's (x, y, z) order


def _rotated_affine() -> np.ndarray:
    c, s = np.cos(0.3), np.sin(0.3)
    return np.array([[1.5 * c, -0.8 * s, 0, 10.0], [1.5 * s, 0.8 * c, 0, -5.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])


def test_a_nifti2_file_reads_as_its_nifti1_twin(tmp_path):
    nibabel.save(nibabel.Nifti1Image(ARRAY_XYZ, _rotated_affine()), tmp_path / "one.nii")
    nibabel.save(nibabel.Nifti2Image(ARRAY_XYZ, _rotated_affine()), tmp_path / "two.nii")
    one, two = read_volume(tmp_path / "one.nii"), read_volume(tmp_path / "two.nii")  # ITK, nibabel
    assert np.array_equal(one.array, two.array) and two.shape_zyx == (4, 5, 6)
    np.testing.assert_allclose(two.spacing_zyx, one.spacing_zyx, atol=1e-6)
    np.testing.assert_allclose(two.origin_lps, one.origin_lps, atol=1e-5)
    np.testing.assert_allclose(two.direction, one.direction, atol=1e-6)
    assert two.warnings == ("NIfTI-2 file, read through nibabel",)
    assert two.array[3, 2, 1] == ARRAY_XYZ[1, 2, 3]


def test_a_sheared_nifti_opens_on_the_nearest_orthogonal_grid_and_says_by_how_much(tmp_path):
    affine = np.array([[1.0, 0.2, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])  # ~11° of shear
    nibabel.save(nibabel.Nifti1Image(ARRAY_XYZ, affine), tmp_path / "tilted.nii.gz")
    volume = read_volume(tmp_path / "tilted.nii.gz")
    assert volume.shape_zyx == (4, 5, 6)
    np.testing.assert_allclose(volume.direction @ volume.direction.T, np.eye(3), atol=1e-9)
    (warning,) = volume.warnings
    assert warning.startswith("sheared affine (11.3° from orthogonal)") and "mm" in warning


def test_a_broken_nifti_names_the_file_and_both_readers(tmp_path):
    (tmp_path / "bad.nii").write_bytes(b"\0" * 400)
    with pytest.raises(ImagingError) as err:
        read_volume(tmp_path / "bad.nii")
    assert str(tmp_path / "bad.nii") in str(err.value) and "nibabel" in str(err.value)


def test_gzip_wrapped_dicom_reads_its_voxels_and_other_gzip_files_are_not_inflated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = get_testdata_file("CT_small.dcm")
    plain, wrapped = tmp_path / "plain", tmp_path / "wrapped"
    plain.mkdir(), wrapped.mkdir()
    shutil.copy(src, plain / "CT_small.dcm")
    with open(src, "rb") as f, gzip.open(wrapped / "CT_small.dcm.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    with tarfile.open(wrapped / "notes.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="inside.dcm")
    (expected,), (series,) = scan(plain), scan(wrapped)
    assert np.array_equal(load(series).array, load(expected).array)
    assert len(list((tmp_path / "cache").rglob("*.dcm"))) == 1  # the archive was sniffed, not inflated
