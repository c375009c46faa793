"""The shared grid contracts: Volume's index ↔ LPS, volume files round trips, resampling, planes as
displayed, and display windows. Each test checks what a user would get: the right voxel at the
right place in millimetres, the right pixel at the right screen position, the right grey level."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from radlens.imaging.errors import ImagingError, NotAnImageError
from radlens.imaging.geometry import extract_plane, plane_count, resample_to_grid, resample_to_spacing
from radlens.imaging.volume import Volume, Window
from radlens.imaging.volume_io import read_volume, write_volume
from radlens.imaging.windowing import apply_window, default_window, percentile_window, preset, presets


def _rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    a, c = np.radians(ax_deg), np.radians(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx


TILTED = _rotation(20.0, 10.0)


def _volume(array, spacing=(2.5, 0.8, 0.7), origin=(-120.5, 33.25, -410.0), direction=None, **meta) -> Volume:
    return Volume(array, spacing, origin, np.eye(3) if direction is None else direction, **meta)


# -- Volume ---------------------------------------------------------------------------------------


def test_index_to_lps_follows_the_direction_columns_and_round_trips():
    v = _volume(np.zeros((5, 6, 7), np.int16), direction=TILTED)
    assert np.allclose(v.index_to_lps((0, 0, 0)), v.origin_lps)
    # One step along x (the last index) moves by spacing_x along direction's first column.
    assert np.allclose(v.index_to_lps((0, 0, 1)) - v.origin_lps, 0.7 * TILTED[:, 0])
    assert np.allclose(v.index_to_lps((0, 1, 0)) - v.origin_lps, 0.8 * TILTED[:, 1])
    assert np.allclose(v.index_to_lps((1, 0, 0)) - v.origin_lps, 2.5 * TILTED[:, 2])
    rng = np.random.default_rng(0)
    idx = rng.uniform(-3, 9, size=(4, 10, 3))  # any leading shape, fractional, even outside the grid
    assert np.allclose(v.lps_to_index(v.index_to_lps(idx)), idx)
    lps = rng.uniform(-500, 500, size=(20, 3))
    assert np.allclose(v.index_to_lps(v.lps_to_index(lps)), lps)


def test_same_grid_and_geometry_describe_the_grid():
    v = _volume(np.zeros((2, 3, 4), np.uint8), direction=TILTED)
    mask = v.with_array(np.ones((2, 3, 4), np.uint8))
    assert mask.same_grid(v) and mask.array.sum() == 24
    moved = Volume(v.array, v.spacing_zyx, (0.0, 0.0, 0.0), v.direction)
    assert not moved.same_grid(v)
    g = v.geometry()
    assert g["shape_zyx"] == [2, 3, 4] and g["spacing_zyx"] == [2.5, 0.8, 0.7]
    assert np.allclose(g["direction"], TILTED)


def test_volume_refuses_arrays_that_are_not_3d_or_rgb():
    with pytest.raises(ValueError, match="shape"):
        Volume(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        Volume(np.zeros((2, 4, 4, 2)))


# -- volume files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_volume_files_round_trip_values_dtype_and_lps_geometry(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    array = (rng.uniform(0, 200, size=(6, 9, 11)) - (0 if dtype == np.uint8 else 100)).astype(dtype)
    v = _volume(array, direction=TILTED, modality="CT")
    back = read_volume(write_volume(v, tmp_path / f"vol{suffix}"))
    assert back.array.dtype == dtype
    assert np.array_equal(back.array, array)
    assert back.shape_zyx == (6, 9, 11)
    # NIfTI keeps its geometry in float32: exact to float32 precision, in LPS (not RAS).
    assert np.allclose(back.spacing_zyx, v.spacing_zyx, atol=1e-5)
    assert np.allclose(back.origin_lps, v.origin_lps, atol=1e-4)
    assert np.allclose(back.direction, v.direction, atol=1e-5)
    assert np.allclose(back.index_to_lps((5, 8, 10)), v.index_to_lps((5, 8, 10)), atol=1e-3)
    if suffix.startswith(".nii"):
        assert back.modality == "CT"  # kept in the header's descrip
    else:
        assert back.modality == "OT"  # NRRD/MetaImage through ITK keep no modality: unknown, not made up
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_nifti_written_by_itk_stores_ras_and_reads_back_as_lps(tmp_path):
    """The file on disk is RAS (as NIfTI requires); the Volume is LPS: x and y flip sign, z stays."""
    import gzip
    import struct

    v = _volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(3.0, 2.0, 1.0), origin=(10.0, 20.0, 30.0))
    path = write_volume(v, tmp_path / "ras.nii.gz")
    with gzip.open(path) as f:
        header = f.read(348)
    srow_x = struct.unpack("<4f", header[280:296])
    srow_y = struct.unpack("<4f", header[296:312])
    srow_z = struct.unpack("<4f", header[312:328])
    assert srow_x[3] == -10.0 and srow_y[3] == -20.0 and srow_z[3] == 30.0
    assert srow_x[0] == -1.0 and srow_y[1] == -2.0 and srow_z[2] == 3.0
    assert read_volume(path).origin_lps == (10.0, 20.0, 30.0)


def test_reading_bad_volume_files_gives_one_line_naming_the_file(tmp_path):
    with pytest.raises(ImagingError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(NotAnImageError) as err:
        read_volume(other)
    assert str(other) in str(err.value)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ImagingError) as err:
        read_volume(broken)
    assert str(broken) in str(err.value) and "\n" not in str(err.value)


# -- resampling -----------------------------------------------------------------------------------


def _ball(shape, centre_zyx, radius) -> np.ndarray:
    z, y, x = np.indices(shape)
    c = centre_zyx
    return (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius**2).astype(np.uint8)


def _centroid_lps(v: Volume) -> np.ndarray:
    return v.index_to_lps(np.argwhere(v.array > 0).mean(axis=0))


def test_mask_resampled_to_another_grid_stays_binary_and_in_place():
    src = _volume(_ball((30, 40, 40), (15, 18, 22), 6), spacing=(1.0, 1.0, 1.0), direction=TILTED)
    ref = _volume(np.zeros((20, 30, 30), np.int16), spacing=(2.0, 1.5, 1.5), origin=(-110.0, 30.0, -415.0))
    out = resample_to_grid(src, ref, is_mask=True)
    assert out.same_grid(ref)
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 1}
    assert np.linalg.norm(_centroid_lps(out) - _centroid_lps(src)) < 1.0
    # Volume preserved within the sampling error of a 6 mm ball.
    ml_src = src.array.sum() * np.prod(src.spacing_zyx)
    ml_out = out.array.sum() * np.prod(out.spacing_zyx)
    assert abs(ml_out - ml_src) < 0.2 * ml_src
    assert resample_to_grid(src, src) is src


def test_resample_to_spacing_keeps_the_extent_and_the_place():
    img = _volume(
        np.linspace(-1000, 1000, 20 * 30 * 40, dtype=np.float32).reshape(20, 30, 40),
        spacing=(1.0, 1.0, 1.0),
        direction=TILTED,
    )
    out = resample_to_spacing(img, (2.0, 2.0, 2.0))
    assert out.shape_zyx == (10, 15, 20) and out.spacing_zyx == (2.0, 2.0, 2.0)
    # The corner of the first voxel stays where it was: the physical box is the same.
    corner_in = img.index_to_lps((-0.5, -0.5, -0.5))
    corner_out = out.index_to_lps((-0.5, -0.5, -0.5))
    assert np.allclose(corner_in, corner_out)
    assert out.array.dtype == np.float32
    mask = img.with_array(_ball((20, 30, 40), (10, 14, 20), 5))
    small = resample_to_spacing(mask, (2.0, 2.0, 2.0), is_mask=True)
    assert set(np.unique(small.array)) == {0, 1}
    assert np.linalg.norm(_centroid_lps(small) - _centroid_lps(mask)) < 1.0
    assert resample_to_spacing(img, (1.0, 1.0, 1.0)) is img


def test_resampled_values_come_from_the_same_lps_place():
    """A linear ramp along LPS x resampled onto a shifted grid keeps value = f(LPS x) at every voxel."""
    src = _volume(np.zeros((8, 16, 16), np.float32), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    lps = src.index_to_lps(np.indices(src.shape_zyx).reshape(3, -1).T)
    src = src.with_array((lps[:, 0] * 10).reshape(src.shape_zyx).astype(np.float32))
    ref = _volume(np.zeros((4, 8, 8), np.float32), spacing=(2.0, 1.0, 1.0), origin=(3.5, 2.0, 4.0))
    out = resample_to_grid(src, ref)
    expect = ref.index_to_lps(np.indices(ref.shape_zyx).reshape(3, -1).T)[:, 0] * 10
    assert np.allclose(out.array.reshape(-1), expect, atol=1e-3)


# -- planes ---------------------------------------------------------------------------------------


def _numbered(shape=(6, 20, 60)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape)


def test_axial_pixel_row_5_column_50_is_array_y5_x50():
    a = _numbered()
    v = _volume(a, spacing=(3.0, 0.8, 0.7))
    s = extract_plane(v, "axial", 4)
    assert s.image[5, 50] == a[4, 5, 50]
    assert s.pixel_mm == (0.8, 0.7) and s.image.shape == (20, 60)
    assert plane_count(v, "axial") == 6 and plane_count(v, "coronal") == 20 and plane_count(v, "sagittal") == 60


def test_coronal_and_sagittal_put_the_head_at_the_top():
    a = _numbered()
    v = _volume(a, spacing=(3.0, 0.8, 0.7))  # z increases towards the head (direction[2,2] > 0)
    cor = extract_plane(v, "coronal", 7)
    assert cor.image[0, 50] == a[-1, 7, 50] and cor.image[-1, 50] == a[0, 7, 50]
    assert cor.pixel_mm == (3.0, 0.7) and cor.image.shape == (6, 60)
    sag = extract_plane(v, "sagittal", 33)
    assert sag.image[0, 5] == a[-1, 5, 33] and sag.image[-1, 5] == a[0, 5, 33]
    assert sag.pixel_mm == (3.0, 0.8) and sag.image.shape == (6, 20)
    feet_first = _volume(a, spacing=(3.0, 0.8, 0.7), direction=np.diag([1.0, 1.0, -1.0]))
    # z increasing towards the feet: slice 0 is the highest, so it is already the top row.
    assert extract_plane(feet_first, "coronal", 7).image[0, 50] == a[0, 7, 50]
    assert extract_plane(feet_first, "sagittal", 33).image[0, 5] == a[0, 5, 33]


def test_unknown_plane_is_refused():
    v = _volume(_numbered())
    with pytest.raises(ValueError, match="oblique"):
        extract_plane(v, "oblique", 0)
    with pytest.raises(ValueError, match="oblique"):
        plane_count(v, "oblique")


# -- windowing ------------------------------------------------------------------------------------


def test_presets_come_from_the_resource_file():
    by_name = {p.name: (p.key, p.window) for p in presets()}
    assert by_name["lung"] == ("1", Window(1500.0, -600.0))
    assert by_name["mediastinum"] == ("2", Window(350.0, 50.0))
    assert by_name["bone"] == ("5", Window(1800.0, 400.0))
    assert [k for k, _ in by_name.values()] == ["1", "2", "3", "4", "5", "6", "7"]
    assert preset("Brain") == Window(80.0, 40.0)
    with pytest.raises(KeyError, match="lung"):
        preset("spleen")


def test_default_window_prefers_the_series_then_the_modality_then_percentiles():
    data = np.linspace(0, 1000, 4 * 10 * 10, dtype=np.float32).reshape(4, 10, 10)
    own = Window(400.0, 40.0)
    assert default_window(_volume(data, modality="CT", windows=(own, preset("bone")))) == own
    assert default_window(_volume(data, modality="CT")) == preset("mediastinum")
    mr = default_window(_volume(data, modality="MR"))
    lo, hi = np.percentile(data, [0.5, 99.5])
    assert mr.low == pytest.approx(lo, rel=1e-4) and mr.high == pytest.approx(hi, rel=1e-4)
    flat = percentile_window(np.full((2, 3, 3), 7.0))
    assert flat.width == 1.0 and flat.level == 7.5


def test_apply_window_clips_scales_and_inverts():
    w = Window(400.0, 40.0)  # -160 .. 240
    values = np.array([[-1000.0, -160.0, 40.0, 240.0, 3000.0]])
    out = apply_window(values, w)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 127, 255, 255]]
    inv = apply_window(values, w, invert=True)
    assert inv.tolist() == [[255, 255, 128, 0, 0]]
    assert apply_window(np.array([[5.0]]), Window(0.0, 5.0)).dtype == np.uint8  # a zero width does not divide by 0


def test_ct_read_from_a_sitk_file_without_metadata_is_shown_with_percentiles(tmp_path):
    """A plain volume file carries no modality: the viewer falls back to the data's own range."""
    path = tmp_path / "plain.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)), str(path))
    v = read_volume(path)
    assert v.modality == "OT"
    w = default_window(v)
    assert w.low < 1 and w.high > 58
