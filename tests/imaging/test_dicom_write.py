"""The DICOM writer produces series that other readers (pydicom, SimpleITK) take as real CT/MR."""

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.volume import Volume, Window

TILTED = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, -0.6], [0.0, 0.6, 0.8]])


def _ct(shape=(5, 6, 7), direction=None) -> Volume:
    """A small synthetic CT with the full HU range, so the rescale must be exact at both ends."""
    a = np.random.default_rng(1).integers(-1024, 3072, shape).astype(np.int16)
    a[0, 0, 0], a[-1, -1, -1] = -1024, 3071
    return Volume(
        a,
        spacing_zyx=(2.5, 0.7, 0.8),
        origin_lps=(10.0, -20.0, 30.0),
        direction=TILTED if direction is None else direction,
        modality="CT",
        windows=(Window(400, 40), Window(1500, -600)),
    )


def test_ct_series_is_valid_and_round_trips_with_pydicom(tmp_path):
    vol = _ct()
    paths = write_dicom_series(vol, tmp_path, series_description="synthetic chest")
    assert len(paths) == 5 and sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    uids = set()
    for z, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SOPInstanceUID.is_valid and ds.SeriesInstanceUID.is_valid and ds.StudyInstanceUID.is_valid
        uids.add(ds.SOPInstanceUID)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, vol.array[z])
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], vol.index_to_lps((z, 0, 0)))
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 0.8, 0.6])
        assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.8]
        assert float(ds.SliceThickness) == 2.5
        assert [float(v) for v in ds.WindowCenter] == [40, -600]
        assert [float(v) for v in ds.WindowWidth] == [400, 1500]
        assert ds.SeriesDescription == "synthetic chest"
    assert len(uids) == 5


def test_simpleitk_reads_the_same_grid(tmp_path):
    vol = _ct(direction=np.eye(3))
    write_dicom_series(vol, tmp_path, instance_number_order="shuffled")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.array)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.7, 2.5))
    np.testing.assert_allclose(image.GetOrigin(), vol.origin_lps)


@pytest.mark.parametrize("order", ["normal", "reversed", "shuffled"])
def test_instance_numbers_follow_the_requested_order(tmp_path, order):
    paths = write_dicom_series(_ct(), tmp_path, instance_number_order=order)
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]
    assert sorted(numbers) == [1, 2, 3, 4, 5]
    if order == "normal":
        assert numbers == [1, 2, 3, 4, 5]
    elif order == "reversed":
        assert numbers == [5, 4, 3, 2, 1]
    else:
        assert numbers not in ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])


def test_mr_float_values_and_monochrome1(tmp_path):
    a = np.linspace(0.0, 1.5, 2 * 4 * 4).reshape(2, 4, 4).astype(np.float32)
    vol = Volume(a, modality="MR", invert=True)
    paths = write_dicom_series(vol, tmp_path, window=Window(1.0, 0.5))
    ds = pydicom.dcmread(paths[1])
    assert ds.SOPClassUID == MRImageStorage
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert float(ds.WindowWidth) == 1.0
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(values, a[1], atol=1.5 / 65535)


def test_unsigned_integer_mr_is_stored_losslessly(tmp_path):
    a = np.array([[[0, 40000], [65535, 7]]], dtype=np.uint16)
    paths = write_dicom_series(Volume(a, modality="MR"), tmp_path)
    ds = pydicom.dcmread(paths[0])
    assert ds.PixelRepresentation == 0 and float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
    np.testing.assert_array_equal(ds.pixel_array, a[0])
