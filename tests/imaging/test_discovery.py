"""Discovery finds series from headers alone, in slice order, with the grid and the defects a reader must see."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import CORONAL, write_enhanced_ct, write_slice, write_stack

from radlens.imaging import dicom_native
from radlens.imaging.dicom_headers import _read_with_pydicom, read_header
from radlens.imaging.dicom_native import walk_header
from radlens.imaging.discovery import describe, iter_scan, scan
from radlens.imaging.errors import ImagingError
from radlens.imaging.progress import Cancelled, Progress, run_to_end
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import write_volume

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _value(path: str) -> int:
    """The pixel value the fixture wrote: the slice's index along the normal."""
    return int(pydicom.dcmread(path).pixel_array[0, 0])


def _only(series):
    assert len(series) == 1, [s.uid for s in series]
    return series[0]


def test_slices_follow_positions_not_instance_numbers(tmp_path):
    numbers = [5, 1, 4, 2, 3]  # deliberately unrelated to position
    uid, _ = write_stack(tmp_path, [0.0, 2.5, 5.0, 7.5, 10.0], origin=(-10.0, 20.0, -30.0), instance_numbers=numbers)
    s = _only(scan(tmp_path))
    assert s.uid == uid
    assert [_value(f) for f in s.files] == [0, 1, 2, 3, 4]
    assert s.shape_zyx == (5, 8, 8)
    assert s.spacing_zyx == pytest.approx((2.5, 0.5, 0.5))
    assert s.origin_lps == pytest.approx((-10.0, 20.0, -30.0))
    np.testing.assert_allclose(s.direction, np.eye(3), atol=1e-9)
    assert s.warnings == ()
    assert s.modality == "CT" and s.description == "synthetic" and s.number == 1
    assert s.study.patient_name == "SYNTHETIC^TEST" and s.study.patient_id == "SYN001"
    assert s.study.study_uid == "1.2.3.4" and s.study.study_date == "20240102"
    assert s.study.study_description == "synthetic test study"


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path):
    write_stack(tmp_path, [0.0, 1.25, 2.5, 3.75], slice_thickness=5.0)
    assert _only(scan(tmp_path)).spacing_zyx[0] == pytest.approx(1.25)


def test_oblique_stack_orders_along_its_normal(tmp_path):
    c, s_ = np.cos(np.radians(20)), np.sin(np.radians(20))
    tilted = (1.0, 0.0, 0.0, 0.0, c, s_)  # rows along x, columns tilted 20° towards z
    # Files written in reverse so that neither file name nor instance number gives the order.
    write_stack(
        tmp_path, [9.0, 6.0, 3.0, 0.0], orientation=tilted, origin=(1.0, 2.0, 3.0), instance_numbers=[1, 2, 3, 4]
    )
    s = _only(scan(tmp_path))
    assert [_value(f) for f in s.files] == [3, 2, 1, 0]
    normal = np.cross(tilted[:3], tilted[3:])
    np.testing.assert_allclose(s.direction[:, 0], tilted[:3], atol=1e-6)
    np.testing.assert_allclose(s.direction[:, 1], tilted[3:], atol=1e-6)
    np.testing.assert_allclose(s.direction[:, 2], normal, atol=1e-6)
    assert s.spacing_zyx[0] == pytest.approx(3.0)
    np.testing.assert_allclose(s.origin_lps, np.array([1.0, 2.0, 3.0]), atol=1e-4)
    # The loader's Volume built from this SeriesInfo puts the last file's slice at its real position.
    grid = Volume(np.zeros(s.shape_zyx), s.spacing_zyx, s.origin_lps, s.direction)
    last = pydicom.dcmread(s.files[-1], stop_before_pixels=True).ImagePositionPatient
    np.testing.assert_allclose(grid.index_to_lps((3, 0, 0)), [float(v) for v in last], atol=1e-4)


def test_missing_slice_is_reported_with_its_numbers(tmp_path):
    write_stack(tmp_path, [0.0, 2.0, 4.0, 8.0, 10.0, 12.0])
    s = _only(scan(tmp_path))
    assert s.shape_zyx[0] == 6 and s.spacing_zyx[0] == pytest.approx(2.0)
    (warning,) = s.warnings
    assert warning.startswith("missing slices: gap of 4 mm between positions 4.00 and 8.00 mm")
    assert "2× the 2 mm spacing (1 missing)" in warning


def test_uneven_gap_is_reported(tmp_path):
    write_stack(tmp_path, [0.0, 2.0, 4.0, 7.0, 9.0, 11.0])
    (warning,) = _only(scan(tmp_path)).warnings
    assert warning == "uneven spacing: gap of 3 mm between positions 4.00 and 7.00 mm along the normal (median 2 mm)"


def test_duplicate_position_keeps_one_file_and_lists_the_other(tmp_path):
    _, paths = write_stack(tmp_path, [0.0, 2.0, 4.0])
    shutil.copy(paths[1], tmp_path / "copy_of_im0001.dcm")
    result = run_to_end(iter_scan(tmp_path))
    s = _only(result.series)
    assert s.shape_zyx[0] == 3 and s.spacing_zyx[0] == pytest.approx(2.0)
    assert any(w.startswith("duplicate positions: 1 file(s) repeat the position") for w in s.warnings)
    (skipped,) = result.skipped
    assert {Path(skipped.path).name, Path(s.files[1]).name} == {"copy_of_im0001.dcm", "im0001.dcm"}
    assert skipped.reason.startswith("same position as ")


def test_repeated_positions_are_a_4d_set_split_by_acquisition(tmp_path):
    uid = "1.2.3.99"
    write_stack(tmp_path, [0.0, 3.0, 6.0], series_uid=uid, acquisition_number=1, prefix="a")
    write_stack(tmp_path, [0.0, 3.0, 6.0], series_uid=uid, acquisition_number=2, prefix="b")
    (series,) = scan(tmp_path)
    assert (series.uid, series.kind, series.dimension) == (uid, "4d", "acquisition")
    assert series.part_labels == ("acquisition 1", "acquisition 2")
    assert [p.uid for p in series.parts] == [uid, f"{uid}.2"]
    for part, prefix in zip(series.parts, "ab", strict=True):
        assert part.kind == "volume" and part.shape_zyx[0] == 3
        assert all(Path(f).name.startswith(prefix) for f in part.files)
    assert series.warnings[0] == "4D set: 2 stacks of 3 slices at the same positions, one per acquisition"
    assert describe(tmp_path)["series"][0] | {"warnings": []} == {
        "uid": uid, "modality": "CT", "description": "synthetic", "shape_zyx": [3, 8, 8],
        "spacing_zyx": [3.0, 0.5, 0.5], "files": 6, "kind": "4d", "parts": 2, "dimension": "acquisition",
        "warnings": [],
    }  # fmt: skip


def test_two_series_in_one_folder(tmp_path):
    uid_a, _ = write_stack(tmp_path / "mixed", [0.0, 5.0, 10.0], series_number=2, prefix="a")
    uid_b, _ = write_stack(tmp_path / "mixed", [0.0, 1.0], series_number=1, prefix="b", rows=4, cols=6)
    series = scan(tmp_path)
    assert [(s.uid, s.shape_zyx) for s in series] == [(uid_b, (2, 4, 6)), (uid_a, (3, 8, 8))]


def test_one_uid_with_two_orientations_is_split_with_a_warning(tmp_path):
    uid = "1.2.3.42"
    write_stack(tmp_path, [0.0, 2.0, 4.0, 6.0], series_uid=uid, prefix="ax")
    write_stack(tmp_path, [0.0, 3.0], series_uid=uid, orientation=CORONAL, prefix="co")
    series = scan(tmp_path)
    assert [(s.uid, s.shape_zyx[0]) for s in series] == [(uid, 4), (f"{uid}.2", 2)]
    for s in series:
        (warning,) = s.warnings
        assert warning.startswith(f"series {uid} split into 2 stacks (orientations differ: axial, coronal)")
    coronal = series[1]
    np.testing.assert_allclose(coronal.direction[:, 2], [0.0, 1.0, 0.0], atol=1e-9)  # cross(x, -z) = +y
    assert coronal.spacing_zyx[0] == pytest.approx(3.0)


def test_one_uid_with_two_sizes_is_split(tmp_path):
    uid = "1.2.3.43"
    write_stack(tmp_path, [0.0, 2.0], series_uid=uid, prefix="big")
    write_stack(tmp_path, [0.0, 2.0, 4.0], series_uid=uid, prefix="small", rows=4, cols=4)
    series = scan(tmp_path)
    assert [(s.uid, s.shape_zyx) for s in series] == [(uid, (3, 4, 4)), (f"{uid}.2", (2, 8, 8))]
    assert "sizes differ: 4×4, 8×8" in series[0].warnings[0]


def test_empty_uids_group_by_geometry_and_acquisition(tmp_path):
    write_stack(tmp_path, [0.0, 2.0, 4.0], series_uid="", prefix="a")
    write_stack(tmp_path, [0.0, 2.0, 4.0], series_uid="", prefix="c", orientation=CORONAL)
    series = scan(tmp_path)
    assert sorted(s.shape_zyx[0] for s in series) == [3, 3]
    assert len({s.uid for s in series}) == 2
    for s in series:
        assert s.uid.startswith("2.25.")
        assert s.warnings[0].startswith("no SeriesInstanceUID: grouped by study, modality")
        assert len({Path(f).name[0] for f in s.files}) == 1  # a stack never mixes the two groups
    moved = shutil.copytree(tmp_path, tmp_path.parent / (tmp_path.name + "_copy"))
    assert [s.uid for s in scan(moved)] == [s.uid for s in series]  # the made-up uid is stable


def test_gantry_tilt_shear_is_reported(tmp_path):
    for i in range(4):  # each slice 2 mm further along z and 0.54 mm further along y: a 15° tilt
        write_slice(tmp_path / f"t{i}.dcm", position=(0.0, 0.536 * i, 2.0 * i), series_uid="1.2.7", instance_number=i)
    (warning,) = _only(scan(tmp_path)).warnings
    assert warning.startswith("slices are sheared: positions drift 1.61 mm in-plane over the stack (gantry tilt?)")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the files broken on purpose
def test_every_pydicom_test_file_is_a_series_or_skipped_with_a_reason():
    """pydicom ships broken files on purpose; none may stop a scan or vanish from its report."""
    result = run_to_end(iter_scan(TEST_FILES))
    listed = [f for s in result.series for f in s.files] + [s.path for s in result.skipped]
    on_disk = [str(p) for p in TEST_FILES.rglob("*") if p.is_file()]
    assert sorted(listed) == sorted(on_disk)
    assert all(s.reason and "\n" not in s.reason for s in result.skipped)
    by_name = {Path(s.path).name: s.reason for s in result.skipped}
    assert by_name["badVR.dcm"] == "invalid NumberOfFrames '1A'"
    assert by_name["MR_truncated.dcm"] == "truncated: pixel data needs 8192 bytes, the file holds 8130 of them"
    assert by_name["README.txt"] == "not a DICOM file"
    ct = next(s for s in result.series if s.files == (str(TEST_FILES / "CT_small.dcm"),))
    assert ct.shape_zyx == (1, 128, 128) and ct.spacing_zyx[1:] == pytest.approx((0.661468, 0.661468))
    # Deflated: pydicom parses an inflated copy, so no byte offset in the file can be checked.
    deflated = next(s for s in result.series if s.files == (str(TEST_FILES / "image_dfl.dcm"),))
    assert deflated.shape_zyx == (1, 512, 512)


def test_without_positions_falls_back_to_instance_numbers(tmp_path):
    for i, number in enumerate([3, 1, 2]):
        write_slice(
            tmp_path / f"x{i}.dcm",
            position=None,
            series_uid="1.2.5",
            instance_number=number,
            value=number,
            slice_thickness=4.0,
        )
    s = _only(scan(tmp_path))
    assert [_value(f) for f in s.files] == [1, 2, 3]
    assert s.spacing_zyx[0] == pytest.approx(4.0)
    assert s.warnings == (
        "no ImagePositionPatient: slices ordered by InstanceNumber, "
        "spacing taken from SpacingBetweenSlices/SliceThickness",
    )


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS:UserWarning")
def test_junk_and_truncated_files_are_skipped_with_reasons(tmp_path):
    _, paths = write_stack(tmp_path, [0.0, 1.0, 2.0, 3.0])
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "zeros.bin").write_bytes(b"\0" * 300)
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[:-50])  # pixel data cut short
    half = tmp_path / "half_header.dcm"
    half.write_bytes(data[:200])  # cut inside the header
    lying = tmp_path / "lying.dcm"
    write_slice(lying, position=(0, 0, 50), series_uid="1.2.6")
    ds = pydicom.dcmread(lying)
    ds.NumberOfFrames = 11
    ds.save_as(lying)
    lying.write_bytes(lying.read_bytes().replace(b"IS\x02\x0011", b"IS\x02\x001A"))  # pydicom refuses to write it
    os.mkfifo(tmp_path / "pipe")  # opening it would block forever
    os.symlink(tmp_path / "gone.dcm", tmp_path / "dangling.dcm")
    result = run_to_end(iter_scan(tmp_path))
    assert _only(result.series).shape_zyx[0] == 3
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["zeros.bin"] == "not a DICOM file"
    assert reasons["im0003.dcm"] == "truncated: pixel data needs 128 bytes, the file holds 78 of them"
    assert reasons["half_header.dcm"]  # whatever the parser tripped over, it is a one-line reason
    assert reasons["lying.dcm"] == "invalid NumberOfFrames '1A'"
    assert reasons["pipe"] == reasons["dangling.dcm"] == "not a regular file"
    assert all("\n" not in r for r in reasons.values())


def test_files_without_images_are_skipped_as_such(tmp_path):
    for name in ("rtstruct.dcm", "test-SR.dcm", "dicomdirtests/DICOMDIR"):
        shutil.copy(TEST_FILES / name, tmp_path / Path(name).name)
    result = run_to_end(iter_scan(tmp_path))
    assert result.series == ()
    assert {Path(s.path).name: s.reason for s in result.skipped} == {
        "rtstruct.dcm": "no image (SOP class RT Structure Set Storage / modality RTSTRUCT)",
        "test-SR.dcm": "no image (SOP class Comprehensive SR Storage / modality SR)",
        "DICOMDIR": "no image (a DICOMDIR: the index of a folder, not an image)",
    }
    assert describe(tmp_path / "rtstruct.dcm") == {
        "path": str(tmp_path / "rtstruct.dcm"),
        "ok": False,
        "error": "no image (SOP class RT Structure Set Storage / modality RTSTRUCT)",
    }


def test_dicomdir_lists_its_series(tmp_path):
    result = run_to_end(iter_scan(TEST_FILES / "dicomdirtests" / "DICOMDIR"))
    by_description = {s.description: s for s in result.series}
    ct = by_description["SmartScore - Gated 0.5 sec"]
    assert ct.modality == "CT" and ct.shape_zyx == (5, 16, 16)
    assert all(Path(f).is_file() and "98892001" in f for f in ct.files)
    positions = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in ct.files]
    assert positions == sorted(positions, reverse=bool(ct.direction[2, 2] < 0))
    assert {s.modality for s in result.series} == {"CT", "CR", "MR"}
    assert sum(len(s.files) for s in result.series) == 31  # every image record resolved, none missing
    assert result.skipped == ()


def test_dicomdir_with_a_missing_file_reports_it(tmp_path):
    src = TEST_FILES / "dicomdirtests"
    shutil.copy(src / "DICOMDIR", tmp_path / "DICOMDIR")
    shutil.copytree(src / "77654033", tmp_path / "77654033")
    result = run_to_end(iter_scan(tmp_path / "DICOMDIR"))
    assert {s.modality for s in result.series} == {"CT", "CR"}
    missing = [s for s in result.skipped if s.reason == "listed in the DICOMDIR but missing"]
    assert len(missing) == 31 - 7


def test_enhanced_multiframe_geometry_from_functional_groups(tmp_path):
    # Frames stored out of order: positions along z are 4, 0, 2 mm.
    path = write_enhanced_ct(tmp_path / "enhanced.dcm", [(0, 0, 4.0), (0, 0, 0.0), (0, 0, 2.0)])
    s = _only(scan(path))
    assert s.files == (str(path),) and s.frames_per_file == 3
    assert s.shape_zyx == (3, 6, 5)
    assert s.spacing_zyx == pytest.approx((2.0, 0.7, 0.6))  # from positions, not SliceThickness 9
    assert s.origin_lps == pytest.approx((0.0, 0.0, 0.0))
    assert s.warnings == ("frames are stored out of slice order; they are sorted along the normal when loaded",)
    assert s.description == "synthetic enhanced" and s.number == 7


def test_pydicom_multiframe_files():
    dose = _only(scan(TEST_FILES / "rtdose.dcm"))  # positions from GridFrameOffsetVector
    assert dose.modality == "RTDOSE" and dose.shape_zyx == (15, 10, 10) and dose.frames_per_file == 15
    assert dose.spacing_zyx[0] == pytest.approx(5.0)
    cine = _only(scan(TEST_FILES / "examples_ybr_color.dcm"))  # no geometry at all
    assert cine.shape_zyx == (30, 240, 320) and cine.frames_per_file == 30
    seg = _only(scan(TEST_FILES / "liver_1frame.dcm"))  # enhanced, spacing from PixelMeasuresSequence
    assert seg.modality == "SEG" and seg.spacing_zyx[1:] == pytest.approx((0.810547, 0.810547), rel=1e-4)


def test_volume_files_are_described_from_their_header(tmp_path):
    vol = Volume(
        np.zeros((4, 5, 6), dtype=np.int16), spacing_zyx=(3.0, 0.5, 0.25), origin_lps=(1.0, 2.0, 3.0), modality="CT"
    )
    path = write_volume(vol, tmp_path / "ct.nii.gz")
    s = _only(scan(path))
    assert s.files == (str(path),)
    assert s.shape_zyx == (4, 5, 6) and s.spacing_zyx == pytest.approx((3.0, 0.5, 0.25))
    assert s.origin_lps == pytest.approx((1.0, 2.0, 3.0)) and s.modality == "CT"
    write_volume(vol, tmp_path / "luna" / "case.mhd")  # writes case.mhd + case.raw (or .zraw)
    (tmp_path / "broken.nrrd").write_text("NRRD0004\ngarbage\n")
    result = run_to_end(iter_scan(tmp_path))
    assert sorted(Path(s.files[0]).name for s in result.series) == ["case.mhd", "ct.nii.gz"]
    (skipped,) = result.skipped  # the .raw beside case.mhd is part of it, not a skipped file
    assert skipped.path.endswith("broken.nrrd") and skipped.reason.startswith("cannot read volume")


def test_threads_and_one_thread_agree(tmp_path):
    for k in range(3):
        write_stack(tmp_path / f"s{k}", [float(z) for z in range(0, 60, 2)], series_number=k + 1)
    (tmp_path / "junk.txt").write_text("x")
    one = run_to_end(iter_scan(tmp_path, workers=1))
    many = run_to_end(iter_scan(tmp_path, workers=4))
    assert [(s.uid, s.files) for s in one.series] == [(s.uid, s.files) for s in many.series]
    assert one.skipped == many.skipped


def test_progress_and_cancel(tmp_path):
    write_stack(tmp_path, [float(z) for z in range(80)])
    job = iter_scan(tmp_path, workers=1)
    first = next(job)
    assert isinstance(first, Progress) and first.total == 80
    cancel = threading.Event()
    job = iter_scan(tmp_path, cancel=cancel, workers=2)
    next(job)
    cancel.set()
    with pytest.raises(Cancelled):
        run_to_end(job)


def test_describe_reports_bad_paths_without_raising(tmp_path):
    assert describe(tmp_path / "nope") == {
        "path": str(tmp_path / "nope"),
        "ok": False,
        "error": "no such file or folder",
    }
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    assert describe(tmp_path)["error"] == "no images found (2 files skipped)"
    with pytest.raises(ImagingError, match="no images found"):
        scan(tmp_path)
    write_stack(tmp_path, [0.0, 1.0])
    report = describe(tmp_path)
    assert report["ok"] is True
    assert report["series"][0]["shape_zyx"] == [2, 8, 8] and report["series"][0]["files"] == 2
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == ["a.txt", "b.txt"]


def _header_or_reason(read, path):
    try:
        h = read(path)
    except ImagingError as err:
        return err.reason
    g = h.geometry
    positions = None if g.positions is None else g.positions.tolist()
    fields = {k: getattr(h, k) for k in h.__dataclass_fields__ if k != "geometry"}
    return fields, (g.orientation, g.pixel_spacing, positions, g.fallback_spacing_z, g.warnings)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the files broken on purpose
def test_the_native_walker_and_pydicom_read_the_same_headers(tmp_path, monkeypatch):
    """Discovery walks plain files itself and hands the rest to pydicom: both must give one answer."""
    monkeypatch.setattr(dicom_native, "FAST", True)  # also when the suite runs with RADLENS_DICOM_FAST=0
    _, stack = write_stack(tmp_path / "explicit", [0.0, 2.5], instance_numbers=[7, 3])
    implicit = tmp_path / "implicit.dcm"
    ds = pydicom.dcmread(stack[0])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(implicit, implicit_vr=True, little_endian=True)
    files = [*stack, implicit, *sorted(p for p in TEST_FILES.rglob("*") if p.is_file())]
    walked = [f for f in files if walk_header(str(f)) is not None]
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "rtdose.dcm", "im0000.dcm", "implicit.dcm"):
        assert name in {f.name for f in walked}  # plain, implicit and compressed files are walked natively
    assert "MR_small_bigendian.dcm" not in {f.name for f in walked}  # big endian goes to pydicom
    for f in files:
        assert _header_or_reason(read_header, str(f)) == _header_or_reason(_read_with_pydicom, str(f)), f


def test_names_outside_ascii_are_read_with_their_character_set(tmp_path):
    path = write_slice(tmp_path / "a.dcm", position=(0.0, 0.0, 0.0), series_uid="1.2.8")
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.save_as(path)
    assert walk_header(str(path)) is None  # the walker leaves character sets to pydicom
    assert _only(scan(tmp_path)).study.patient_name == "Müller^Jürgen"


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_radiograph_with_zero_pixel_spacing_opens_with_the_reason(tmp_path, monkeypatch, fast):
    """pydicom-data's RG1 chest CRs say PixelSpacing 0\\0: the image is still shown, uncalibrated."""
    from radlens.imaging.loading import load

    monkeypatch.setattr(dicom_native, "FAST", fast == "1")
    write_slice(tmp_path / "cr.dcm", position=None, orientation=None, pixel_spacing=(0.0, 0.0), modality="CR", value=7)
    (series,) = scan(tmp_path)
    volume = load(series)
    assert volume.shape_zyx == (1, 8, 8) and (volume.array == 7).all()
    assert "uncalibrated (PixelSpacing 0\\0): lengths in px" in volume.warnings
    assert (series.kind, volume.kind, volume.presentation.pixel_unit) == ("projection", "projection", "px")


@pytest.mark.parametrize("fast", ["1", "0"])
@pytest.mark.parametrize(
    ("codes", "letters"),
    [(["L", "F"], {"right": "L", "left": "R", "bottom": "I", "top": "S"}),  # a PA chest film
     (["P", "F"], {"right": "P", "left": "A", "bottom": "I", "top": "S"}),  # a lateral one
     (["A", "A"], {"right": "L", "left": "R", "bottom": "P", "top": "A"})],  # nonsense: the default axes
)  # fmt: skip
def test_a_radiographs_letters_come_from_its_patient_orientation(tmp_path, monkeypatch, fast, codes, letters):
    from radlens.imaging.loading import load
    from radlens.viewer.state import orientation_letters

    monkeypatch.setattr(dicom_native, "FAST", fast == "1")
    path = write_slice(tmp_path / "cr.dcm", position=None, orientation=None, modality="CR")
    ds = pydicom.dcmread(path)
    ds.PatientOrientation = codes
    ds.save_as(path)
    (series,) = scan(tmp_path)
    assert orientation_letters(load(series), "axial") == letters
