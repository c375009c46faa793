"""Every series is classified once, at discovery: volume, projection, cine or 4D set (issue 21).

Real files from pydicom's test data and pydicom-data, and files the tests write: a 4D set in files
and in the frames of one enhanced object, a 4D NIfTI, radiograph calibration, frame timing,
shutters, laterality and Presentation LUT Shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radlens.imaging import load, scan
from radlens.imaging.calibration import UsRegion, calibrate, length_text
from radlens.imaging.presentation import DEFAULT_FPS, frame_timing, shutter_of
from tests.imaging.dicom_fixtures import write_slice, write_stack
from tests.imaging.kind_fixtures import write_4d_enhanced, write_cine, write_radiograph

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("CT_small.dcm", "volume"),  # one CT slice: a cross-section, read in one view
        ("rtdose.dcm", "volume"),  # frames placed by GridFrameOffsetVector
        ("emri_small.dcm", "volume"),  # enhanced MR
        ("RG3_UNCR.dcm", "projection"),  # pydicom-data CR of a leg
        ("RG1_UNCR.dcm", "projection"),  # CR chest, PixelSpacing 0\0
        ("US1_UNCR.dcm", "projection"),  # one ultrasound frame, RGB
        ("JPEG2000.dcm", "projection"),  # a planar NM secondary capture
        ("examples_ybr_color.dcm", "cine"),  # 30-frame YBR_FULL_422 echo with a FrameTime
        ("OBXXXX1A_2frame.dcm", "cine"),  # 2-frame palette ultrasound
        ("SC_rgb_2frame.dcm", "cine"),  # frames without positions
    ],
)
def test_real_files_are_classified(name, kind):
    (series,) = scan(get_testdata_file(name))
    assert series.kind == kind
    assert load(series).kind == kind


def test_info_json_shows_the_kind():
    paths = [get_testdata_file(n) for n in ("examples_ybr_color.dcm", "RG3_UNCR.dcm", "CT_small.dcm")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "radlens", "info", *paths, "--json"], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT, check=True)  # fmt: skip
    kinds = [json.loads(line)["series"][0]["kind"] for line in proc.stdout.splitlines()]
    assert kinds == ["cine", "projection", "volume"]


def test_radiographs_of_one_series_are_one_projection_each(tmp_path):
    for i in range(3):
        write_radiograph(tmp_path / f"cr{i}.dcm", np.full((8, 8), i), SeriesInstanceUID="1.2.3.7", InstanceNumber=i + 1)
    series = scan(tmp_path)
    assert [s.kind for s in series] == ["projection"] * 3
    assert [int(load(s).array[0, 0, 0]) for s in series] == [0, 1, 2]


def test_files_repeating_positions_by_temporal_position_are_a_4d_set(tmp_path):
    uid = "1.2.3.50"
    for t in (1, 2, 3):
        _, paths = write_stack(tmp_path, [0.0, 2.0, 4.0], series_uid=uid, prefix=f"t{t}_")
        for z, path in enumerate(paths):
            ds = pydicom.dcmread(path)
            ds.TemporalPositionIdentifier = t
            ds.InstanceNumber = 10 * z + t  # interleaved numbering, as a scanner writes it
            ds.PixelData = np.full((8, 8), 100 * t + z, dtype="<i2").tobytes()
            ds.save_as(path)
    (series,) = scan(tmp_path)
    assert (series.kind, series.dimension, len(series.parts)) == ("4d", "temporal position", 3)
    assert series.part_labels == ("temporal position 1", "temporal position 2", "temporal position 3")
    third = load(series.parts[2])
    assert third.kind == "volume" and third.array[:, 0, 0].tolist() == [300, 301, 302]
    first = load(series)  # a set loads as its first part, saying so
    assert first.array[:, 0, 0].tolist() == [100, 101, 102]
    assert first.warnings[0] == "4D set of 3 stacks by temporal position: temporal position 1 shown"


def test_b_values_split_a_diffusion_series(tmp_path):
    uid = "1.2.3.51"
    for b in (0.0, 1000.0):
        _, paths = write_stack(tmp_path, [0.0, 2.0], series_uid=uid, prefix=f"b{int(b)}_")
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.DiffusionBValue = b
            ds.save_as(path)
    (series,) = scan(tmp_path)
    assert series.dimension == "b-value"
    assert series.part_labels == ("b-value 0 s/mm²", "b-value 1000 s/mm²")


def test_an_enhanced_object_repeating_positions_is_split_by_its_frames(tmp_path):
    path = write_4d_enhanced(tmp_path / "dce.dcm", times=2, slices=3)
    (series,) = scan(path)
    assert (series.kind, series.dimension, series.part_labels) == (
        "4d", "temporal position", ("temporal position 1", "temporal position 2"))  # fmt: skip
    assert [p.frames for p in series.parts] == [(0, 2, 4), (1, 3, 5)]
    second = load(series.parts[1])
    assert second.shape_zyx[0] == 3 and second.array[:, 0, 0].tolist() == [20, 21, 22]
    assert second.spacing_zyx[0] == pytest.approx(2.0)


def test_a_4d_nifti_is_a_4d_set_and_round_trips_each_volume(tmp_path):
    data = np.stack([np.full((4, 5, 6), t, dtype=np.int16) for t in (7, 8, 9)], axis=-1)
    data[1, 2, 3, :] = [70, 80, 90]
    nibabel.save(nibabel.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "dyn.nii.gz")
    (series,) = scan(tmp_path / "dyn.nii.gz")
    assert (series.kind, len(series.parts), series.shape_zyx) == ("4d", 3, (6, 5, 4))
    for t, part in enumerate(series.parts):
        volume = load(part)
        assert volume.array[3, 2, 1] == 70 + 10 * t and volume.array[0, 0, 0] == 7 + t


def test_nifti2_opens_through_scan_and_load(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nibabel.save(nibabel.Nifti2Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), tmp_path / "two.nii")
    volume = load(tmp_path / "two.nii")
    assert np.array_equal(volume.array, np.transpose(data, (2, 1, 0)))
    assert "NIfTI-2 file, read through nibabel" in volume.warnings


def test_nibabel_formats_open():
    """MGH and MINC from nibabel's own test data; a PAR without its REC fails in one line."""
    data = Path(nibabel.__file__).parent / "tests" / "data"
    assert load(scan(data / "test.mgz")[0]).shape_zyx == (5, 4, 3)
    assert load(data / "tiny.mnc").shape_zyx == (20, 20, 10)
    with pytest.raises(Exception, match=r"a header without its data: T1\.REC is missing$"):
        load(data / "T1.PAR")


# -- calibration -----------------------------------------------------------------------------------


def test_imager_pixel_spacing_is_corrected_for_magnification(tmp_path):
    path = write_radiograph(tmp_path / "dx.dcm", np.zeros((8, 8)), modality="DX",
                            ImagerPixelSpacing=[0.2, 0.2], EstimatedRadiographicMagnificationFactor=1.25)  # fmt: skip
    volume = load(path)
    assert volume.spacing_zyx[1:] == pytest.approx((0.16, 0.16))
    assert volume.presentation.pixel_unit == "mm"
    assert volume.presentation.calibration.startswith("ImagerPixelSpacing ÷ magnification 1.25")


def test_pixel_spacing_wins_and_uncalibrated_says_why():
    assert calibrate([("PixelSpacing", (0.5, 0.5)), ("ImagerPixelSpacing", (0.2, 0.2))]).source == "PixelSpacing"
    plain = calibrate([("ImagerPixelSpacing", (0.2, 0.1))])
    assert plain.spacing_yx == (0.2, 0.1) and "not corrected for magnification" in plain.source
    none = calibrate([("PixelSpacing", (0.0, 0.0))])
    assert none.unit == "px" and none.source == "uncalibrated (PixelSpacing 0\\0): lengths in px"
    assert calibrate([]).source == "uncalibrated (no pixel size in the header): lengths in px"


def test_ultrasound_is_calibrated_by_its_region():
    volume = load(get_testdata_file("examples_ybr_color.dcm"))
    (region,) = volume.presentation.us_regions
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"), stop_before_pixels=True)
    item = ds.SequenceOfUltrasoundRegions[0]
    assert region.spacing_yx == pytest.approx((item.PhysicalDeltaY * 10, item.PhysicalDeltaX * 10))
    assert volume.spacing_zyx[1:] == pytest.approx(region.spacing_yx)
    regions = (UsRegion(10, 10, 109, 109, (0.5, 0.25)),)
    assert length_text((20, 20), (20, 60), (1.0, 1.0), "mm", regions) == "length 10.0 mm"  # 40 columns × 0.25 mm
    outside = length_text((20, 20), (20, 150), (1.0, 1.0), "mm", regions)
    assert outside == "length 130.0 px (outside the calibrated ultrasound region)"


# -- frame timing, shutters, laterality, inversion ----------------------------------------------------


def test_frame_timing_from_the_header():
    def ds(**kw):
        d = pydicom.Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    assert frame_timing(ds(FrameTime=33.333), 10) == ((33.333,), "FrameTime")
    assert frame_timing(ds(FrameTimeVector=[0, 40, 50, 60]), 4) == ((40.0, 50.0, 60.0, 60.0), "FrameTimeVector")
    assert frame_timing(ds(CineRate=25), 10) == ((40.0,), "CineRate")
    assert frame_timing(ds(RecommendedDisplayFrameRate=10), 10) == ((100.0,), "RecommendedDisplayFrameRate")
    assert frame_timing(ds(), 10) == ((), f"no frame time in the header: {DEFAULT_FPS:g} frames/s assumed")


def test_a_cine_carries_its_frame_time(tmp_path):
    volume = load(write_cine(tmp_path / "xa.dcm", 6, FrameTime=66.7))
    assert (volume.kind, volume.presentation.frame_interval_ms(3)) == ("cine", 66.7)
    assert volume.array[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_shutters_cover_what_lies_outside_them(tmp_path):
    path = write_radiograph(tmp_path / "cr.dcm", np.zeros((20, 30)), ShutterShape="RECTANGULAR\\CIRCULAR",
                            ShutterLeftVerticalEdge=3, ShutterRightVerticalEdge=28, ShutterUpperHorizontalEdge=2,
                            ShutterLowerHorizontalEdge=19, CenterOfCircularShutter=[10, 15], RadiusOfCircularShutter=9,
                            ShutterPresentationValue=0xFFFF)  # fmt: skip
    shutter = load(path).presentation.shutter
    visible = shutter.visible(20, 30)
    assert shutter.grey == 255
    assert visible[9, 14]  # the centre (row 10, column 15 counted from 1)
    assert not visible[0, 14] and not visible[9, 1]  # above the rectangle; left of it
    assert not visible[9, 24]  # inside the rectangle, outside the circle (10 columns from the centre)
    polygon = pydicom.Dataset()
    polygon.ShutterShape = "POLYGONAL"
    polygon.VerticesOfThePolygonalShutter = [1, 1, 1, 10, 10, 1]  # a triangle in the top-left corner
    tri = shutter_of(polygon).visible(12, 12)
    assert tri[1, 1] and not tri[10, 10] and shutter_of(polygon).grey == 0


def test_laterality_view_and_presentation_lut_shape(tmp_path):
    path = write_radiograph(tmp_path / "mg.dcm", np.zeros((8, 8)), modality="MG", ImageLaterality="L",
                            ViewPosition="CC", PresentationLUTShape="INVERSE")  # fmt: skip
    volume = load(path)
    assert (volume.presentation.laterality, volume.presentation.view, volume.invert) == ("L", "CC", True)
    plain = load(write_slice(tmp_path / "ct.dcm", position=(0.0, 0.0, 0.0)))
    assert not plain.invert
