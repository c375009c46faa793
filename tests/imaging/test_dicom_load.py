"""Loading DICOM series into Volumes: values, geometry, order, defects, preview and cancel.

Every series here is synthetic, written by ``imaging.dicom_write`` (or by pydicom for the
compressed and broken cases), so the expected values are known exactly.
"""

import dataclasses
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from radlens.imaging.dicom import SlicePreview
from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.discovery import scan
from radlens.imaging.errors import GeometryError, ImagingError, UnsupportedError
from radlens.imaging.loading import iter_load, load
from radlens.imaging.progress import Cancelled, run_showing
from radlens.imaging.volume import Volume, Window
from radlens.imaging.volume_io import write_volume

TILTED = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, -0.6], [0.0, 0.6, 0.8]])


def _ct(shape=(6, 5, 4), direction=None, seed=0) -> Volume:
    a = np.random.default_rng(seed).integers(-1024, 3072, shape).astype(np.int16)
    return Volume(
        a,
        spacing_zyx=(2.0, 0.6, 0.9),
        origin_lps=(-12.5, 30.0, -80.0),
        direction=np.eye(3) if direction is None else direction,
        modality="CT",
        windows=(Window(400, 40), Window(1500, -600)),
    )


def _series_of(folder):
    (series,) = scan(folder)
    return series


def test_round_trip_gives_exact_hu_and_the_written_geometry(tmp_path):
    vol = _ct(direction=TILTED)
    paths = write_dicom_series(vol, tmp_path, series_description="synthetic chest")
    out = load(tmp_path)
    assert out.array.dtype == np.int16
    np.testing.assert_array_equal(out.array, vol.array)
    np.testing.assert_allclose(out.spacing_zyx, vol.spacing_zyx)
    np.testing.assert_allclose(out.direction, TILTED, atol=1e-9)
    for z, path in enumerate(paths):
        written = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
        np.testing.assert_allclose(out.index_to_lps((z, 0, 0)), written, atol=1e-6)
    corner = out.index_to_lps((5, 4, 3))
    np.testing.assert_allclose(corner, vol.index_to_lps((5, 4, 3)), atol=1e-6)
    assert out.modality == "CT" and out.description == "synthetic chest"
    assert out.windows == (Window(400, 40), Window(1500, -600))
    assert out.study.patient_name == "ANONYMOUS^SYNTHETIC"
    assert out.files == tuple(str(p) for p in paths)
    assert out.source == str(tmp_path)
    assert out.warnings == ()
    assert out.invert is False


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_slices_are_ordered_by_position_not_instance_number(tmp_path, order):
    vol = _ct(direction=TILTED)
    write_dicom_series(vol, tmp_path, instance_number_order=order)
    np.testing.assert_array_equal(load(tmp_path).array, vol.array)


def test_a_series_given_in_reverse_order_is_put_back_along_the_normal(tmp_path):
    vol = _ct()
    paths = write_dicom_series(vol, tmp_path)
    series = dataclasses.replace(_series_of(tmp_path), files=tuple(str(p) for p in reversed(paths)))
    out = load(series)
    np.testing.assert_array_equal(out.array, vol.array)
    assert out.files == tuple(str(p) for p in paths)
    np.testing.assert_allclose(out.origin_lps, vol.origin_lps)


def test_a_missing_slice_is_reported(tmp_path):
    paths = write_dicom_series(_ct(shape=(8, 4, 4)), tmp_path)
    os.remove(paths[4])
    out = load(tmp_path)
    assert out.shape_zyx == (7, 4, 4)
    assert out.spacing_zyx[0] == pytest.approx(2.0)
    assert any("missing" in w for w in out.warnings), out.warnings


def test_monochrome1_keeps_values_and_is_shown_inverted(tmp_path):
    vol = dataclasses.replace(_ct(), modality="MR", invert=True, windows=())
    vol = vol.with_array(np.abs(vol.array))
    write_dicom_series(vol, tmp_path)
    out = load(tmp_path)
    assert out.invert is True
    np.testing.assert_array_equal(out.array, vol.array)


def test_non_integer_rescale_gives_float32(tmp_path):
    a = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 0.25).astype(np.float32)
    write_dicom_series(Volume(a, modality="MR"), tmp_path)
    out = load(tmp_path)
    assert out.array.dtype == np.float32
    np.testing.assert_allclose(out.array, a, atol=1e-3)


def test_middle_slice_comes_first_then_the_rest(tmp_path):
    vol = _ct(shape=(9, 5, 4))
    write_dicom_series(vol, tmp_path, instance_number_order="shuffled")
    steps = []
    out = run_showing(iter_load(_series_of(tmp_path)), steps.append)
    previews = [(i, p.preview) for i, p in enumerate(steps, start=1) if p.preview is not None]
    assert len(previews) == 1
    first_at, preview = previews[0]
    assert first_at == 1 and isinstance(preview, SlicePreview)
    assert (preview.index, preview.total) == (4, 9)
    np.testing.assert_array_equal(preview.image, vol.array[4])
    assert steps[-1].done == steps[-1].total == 9
    preview.image[:] = 0  # a copy: the volume is untouched
    np.testing.assert_array_equal(out.array, vol.array)


def test_cancel_stops_the_load(tmp_path):
    write_dicom_series(_ct(shape=(10, 4, 4)), tmp_path)
    cancel = threading.Event()
    job = iter_load(_series_of(tmp_path), cancel)
    first = next(job)
    assert first.preview is not None
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in job:
            pass


def test_compressed_slices_decode_to_the_same_values(tmp_path):
    """RLE slices go through pydicom's decoders; one plain slice in between takes the fast path."""
    vol = _ct(shape=(4, 6, 5))
    paths = write_dicom_series(vol, tmp_path)
    for path in paths[:2] + paths[3:]:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    out = load(tmp_path)
    np.testing.assert_array_equal(out.array, vol.array)


def test_volume_files_load_through_the_same_entry(tmp_path):
    vol = _ct()
    write_volume(vol, tmp_path / "ct.nii.gz")
    out = load(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(out.array, vol.array)
    np.testing.assert_allclose(out.origin_lps, vol.origin_lps, atol=1e-4)


# -- bad input: one line naming the file and the reason ------------------------------------------


def _one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_truncated_slice_names_the_file(tmp_path):
    paths = write_dicom_series(_ct(), tmp_path)
    series = dataclasses.replace(_series_of(tmp_path), files=tuple(str(p) for p in paths))
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 7])
    with pytest.raises(ImagingError) as err:
        load(series)
    assert str(paths[2]) in _one_line(err.value) and "truncated" in str(err.value)


def test_mixed_sizes_in_one_stack_is_a_geometry_error(tmp_path):
    write_dicom_series(_ct(shape=(3, 5, 4)), tmp_path / "a")
    write_dicom_series(_ct(shape=(3, 6, 4)), tmp_path / "b")
    a, b = _series_of(tmp_path / "a"), _series_of(tmp_path / "b")
    mixed = dataclasses.replace(a, files=(*a.files[:2], b.files[2]))
    with pytest.raises(GeometryError) as err:
        load(mixed)
    assert b.files[2] in _one_line(err.value) and "mixed sizes" in str(err.value)


def test_a_header_that_lies_about_frames(tmp_path):
    (path,) = write_dicom_series(_ct(shape=(1, 4, 4)), tmp_path)
    ds = pydicom.dcmread(path)
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)
    ds.save_as(path)
    with pytest.raises(ImagingError) as err:
        load(path)
    assert str(path) in _one_line(err.value) and "NumberOfFrames" in str(err.value)


def test_pixel_data_shorter_than_the_header_says(tmp_path):
    (path,) = write_dicom_series(_ct(shape=(1, 4, 4)), tmp_path)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:20]
    ds.save_as(path)
    with pytest.raises(ImagingError) as err:
        load(path)
    assert str(path) in _one_line(err.value) and "shorter" in str(err.value)


def test_missing_pixel_data(tmp_path):
    (path,) = write_dicom_series(_ct(shape=(1, 4, 4)), tmp_path)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImagingError) as err:
        load(path)
    assert str(path) in _one_line(err.value) and "pixel data" in str(err.value)


def test_a_folder_with_two_series_lists_them(tmp_path):
    write_dicom_series(_ct(), tmp_path / "one", series_description="first synthetic")
    write_dicom_series(_ct(shape=(3, 4, 4)), tmp_path / "two", series_description="second synthetic")
    with pytest.raises(ImagingError) as err:
        load(tmp_path)
    text = _one_line(err.value)
    assert "2 series" in text and "first synthetic" in text and "second synthetic" in text


def test_a_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ImagingError) as err:
        load(tmp_path)
    assert "no images" in _one_line(err.value)


def test_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(ImagingError, match="no such file"):
        load(tmp_path / "absent")


def test_a_copy_of_a_slice_loads_on_its_own(tmp_path):
    vol = _ct()
    paths = write_dicom_series(vol, tmp_path / "series")
    single = tmp_path / "single.dcm"
    shutil.copy(paths[3], single)
    out = load(single)
    assert out.shape_zyx == (1, 5, 4)
    np.testing.assert_array_equal(out.array[0], vol.array[3])
    np.testing.assert_allclose(out.origin_lps, vol.index_to_lps((3, 0, 0)))


# -- single files the stack writer does not make ----------------------------------------------------


def _enhanced_mr(path, values, positions, rescales) -> None:
    """A synthetic enhanced MR: frames stored out of order, per-frame positions and rescale."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, uid
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", generate_uid(), generate_uid()
    ds.SeriesDescription = "synthetic enhanced"
    ds.Rows, ds.Columns = values.shape[1:]
    ds.NumberOfFrames = len(values)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.75], 3
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for position, (slope, intercept) in zip(positions, rescales, strict=True):
        item, plane, transform = Dataset(), Dataset(), Dataset()
        plane.ImagePositionPatient = list(position)
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        item.PlanePositionSequence = Sequence([plane])
        item.PixelValueTransformationSequence = Sequence([transform])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = values.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_multiframe_orders_frames_and_applies_per_frame_rescale(tmp_path):
    stored = np.arange(4 * 3 * 2, dtype=np.uint16).reshape(4, 3, 2) * 10
    z_mm = [9.0, 0.0, 6.0, 3.0]  # file order; along the normal the order is frames 1, 3, 2, 0
    rescales = [(1, 0), (2, -5), (1, 100), (1, 0)]
    _enhanced_mr(tmp_path / "enhanced.dcm", stored, [(-4.0, 2.0, z) for z in z_mm], rescales)
    out = load(tmp_path / "enhanced.dcm")
    order = [1, 3, 2, 0]
    expected = np.stack([stored[i].astype(np.int32) * rescales[i][0] + rescales[i][1] for i in order])
    assert out.array.dtype == np.float32  # the slopes differ between frames
    np.testing.assert_array_equal(out.array, expected)
    np.testing.assert_allclose(out.spacing_zyx, (3.0, 0.5, 0.75))
    np.testing.assert_allclose(out.origin_lps, (-4.0, 2.0, 0.0))
    assert out.description == "synthetic enhanced"
    assert not any("missing" in w or "uneven" in w for w in out.warnings), out.warnings


def test_deflated_file_loads_from_its_path():
    """Deflate is inflated by pydicom, for discovery's header and for the pixels alike."""
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "image_dfl.dcm"
    out = load(path)
    np.testing.assert_array_equal(out.array[0], pydicom.dcmread(path).pixel_array)
    assert out.shape_zyx == (1, 512, 512)


def test_a_header_claiming_a_huge_image_is_refused_before_allocating(tmp_path):
    (path,) = write_dicom_series(_ct(shape=(1, 4, 4)), tmp_path)
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 100000
    ds.save_as(path)
    with pytest.raises(ImagingError) as err:
        load(path)
    assert str(path) in _one_line(err.value)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_peak_memory_stays_near_the_volume_size(tmp_path, modality):
    """One preallocated array, filled in place: int16 CT, and float32 MR with a fractional slope."""
    import tracemalloc

    if modality == "CT":
        vol = _ct(shape=(48, 96, 96))
    else:
        a = np.random.default_rng(2).random((48, 96, 96)).astype(np.float32) * 900
        vol = Volume(a, modality="MR")
    write_dicom_series(vol, tmp_path)
    series = _series_of(tmp_path)
    tracemalloc.start()
    try:
        out = load(series)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.array.dtype == (np.int16 if modality == "CT" else np.float32)
    assert peak <= 1.3 * out.nbytes, peak / out.nbytes


def test_unsigned_values_above_int16_keep_their_values(tmp_path):
    """Stored uint16 beyond 32767: int16 when the rescale brings them into range, else float32."""
    a = np.array([[[0, 40000], [65535, 7]]], dtype=np.uint16)
    (path,) = write_dicom_series(Volume(a, modality="MR"), tmp_path / "raw")
    out = load(path)
    assert out.array.dtype == np.float32
    np.testing.assert_array_equal(out.array[0], a[0])
    ds = pydicom.dcmread(path)
    ds.RescaleIntercept = -32768
    ds.save_as(path)
    out = load(path)
    assert out.array.dtype == np.int16
    np.testing.assert_array_equal(out.array[0], a[0].astype(np.int32) - 32768)


@pytest.mark.parametrize(
    ("syntax", "error", "words"),
    [
        ("1.2.3.4.5", UnsupportedError, "unknown transfer syntax"),  # no such syntax
        (JPEGBaseline8Bit, ImagingError, "cannot decode"),  # says JPEG, holds raw pixels
    ],
)
def test_a_wrong_transfer_syntax(tmp_path, syntax, error, words):
    (path,) = write_dicom_series(_ct(shape=(1, 8, 8)), tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([ds.PixelData]) if syntax == JPEGBaseline8Bit else ds.PixelData
    ds.save_as(path)
    with pytest.raises(error) as err:
        load(path)
    assert str(path) in _one_line(err.value) and words in str(err.value)


def test_a_dicomdir_with_one_series_loads(tmp_path):
    from pydicom.fileset import FileSet

    vol = _ct(direction=TILTED)
    paths = write_dicom_series(vol, tmp_path / "written", instance_number_order="shuffled")
    fs = FileSet()
    for path in paths:
        fs.add(path)
    fs.write(tmp_path / "media")
    out = load(tmp_path / "media" / "DICOMDIR")
    np.testing.assert_array_equal(out.array, vol.array)
    np.testing.assert_allclose(out.origin_lps, vol.origin_lps, atol=1e-6)
    assert out.source == str(tmp_path / "media" / "DICOMDIR")
