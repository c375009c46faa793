"""The synthetic phantoms: what a reader would see in them, that their labels are exact, and that
`radlens phantom` writes a labelled folder the training code and any viewer can read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radlens.imaging.errors import ImagingError
from radlens.imaging.loading import load
from radlens.imaging.phantom import case_seed, iter_write_phantoms, make_brain_mr, make_chest_ct
from radlens.imaging.phantom_chest import BODY_B_ANT, KINDS, LUNG_CX, LUNG_CY, draw_acquisition
from radlens.imaging.progress import Cancelled, run_to_end
from radlens.imaging.volume_io import read_volume
from radlens.imaging.windowing import preset

SEEDS = (0, 1, 2, 3)
SMALL_CHEST = (40, 96, 96)
SMALL_BRAIN = (40, 80, 80)


@pytest.fixture(scope="module")
def chests():
    return {s: make_chest_ct(s) for s in SEEDS}


@pytest.fixture(scope="module")
def brains():
    return {s: make_brain_mr(s) for s in SEEDS[:2]}


def _hu_near(ph, offset_xyz, radius_vox=2) -> float:
    """Median HU in a small cube around a point given in mm from the body's centre."""
    v = ph.volume
    centre_lps = np.asarray(v.index_to_lps((np.asarray(v.shape_zyx) - 1) / 2))
    z, y, x = np.rint(v.lps_to_index(centre_lps + np.asarray(offset_xyz))).astype(int)
    r = radius_vox
    return float(np.median(v.array[z - r : z + r + 1, y - r : y + r + 1, x - r : x + r + 1]))


def _acquisition(seed: int):
    """A chest case's patient and scan: build_chest draws them first from make_chest_ct's generator."""
    return draw_acquisition(np.random.default_rng(np.random.SeedSequence([seed, 1])))


# -- chest CT -----------------------------------------------------------------------------------


def test_same_seed_same_chest_and_different_seed_different():
    a, b, c = (make_chest_ct(s, SMALL_CHEST) for s in (7, 7, 8))
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.labels, b.labels)
    assert a.findings == b.findings
    assert a.volume.series_uid == b.volume.series_uid
    assert not np.array_equal(a.volume.array, c.volume.array)
    assert a.volume.series_uid != c.volume.series_uid
    assert a.volume.study.study_uid != c.volume.study.study_uid


def test_chest_tissues_have_their_hounsfield_units(chests):
    ph = chests[0]
    assert ph.volume.array.dtype == np.int16
    assert ph.volume.modality == "CT"
    assert _hu_near(ph, (0, 0, 0), 0) > -1100  # inside the array
    corner = ph.volume.array[:4, :4, :4]
    assert np.median(corner) < -950  # air outside the body
    # Anatomical points move with the case's patient size, position and field of view.
    acq = _acquisition(0)
    assert ph.volume.description == f"SYNTHETIC chest CT phantom ({acq.describe()})"
    for side in (-1, 1):  # upper lobes, clear of the heart and the hilum
        assert _hu_near(ph, acq.to_scanner((side * (LUNG_CX + 15), LUNG_CY - 30, 40))) < -700
    assert -20 < _hu_near(ph, acq.to_scanner((10, -40, -50))) < 100  # heart: soft tissue
    fat = acq.to_scanner((0, -(BODY_B_ANT - 0.5 * acq.fat_mm / acq.scale), 0))
    assert -160 < _hu_near(ph, fat, 1) < -40  # subcutaneous fat in front of the chest
    v = ph.volume
    spine = v.array[:, :, v.shape_zyx[2] // 2 - 3 : v.shape_zyx[2] // 2 + 4]
    assert np.percentile(spine, 99.5) > 300  # vertebrae (and the sternum) are bone
    assert v.array.max() < 1500


def test_chest_volume_is_an_axial_lps_study_called_synthetic(chests):
    v = chests[0].volume
    assert np.array_equal(v.direction, np.eye(3))
    centre = v.index_to_lps((np.asarray(v.shape_zyx) - 1) / 2)
    assert abs(centre[0]) < 1e-6  # x centred on the patient
    assert v.index_to_lps((0, 0, 0))[2] < v.index_to_lps((v.shape_zyx[0] - 1, 0, 0))[2] < 0  # z up, clinical
    assert "SYNTHETIC" in v.description
    assert v.study.patient_name == "SYNTHETIC^PHANTOM"
    assert v.windows == (preset("lung"),)
    for uid in (v.series_uid, v.study.study_uid):
        assert re.fullmatch(r"[1-9][0-9]*(\.(0|[1-9][0-9]*))+", uid) and len(uid) <= 64


def test_every_nodule_label_is_where_the_finding_says(chests):
    for ph in chests.values():
        ids = sorted(int(v) for v in np.unique(ph.labels) if v)
        assert ids == [f.id for f in ph.findings] == list(range(1, len(ph.findings) + 1))
        assert 2 <= len(ph.findings) <= 6
        for f in ph.findings:
            assert ph.labels[tuple(round(c) for c in f.center_zyx)] == f.id
            zz, yy, xx = np.nonzero(ph.labels == f.id)
            assert f.box_zyx == (zz.min(), yy.min(), xx.min(), zz.max() + 1, yy.max() + 1, xx.max() + 1)
            assert np.allclose(ph.volume.index_to_lps(f.center_zyx), f.center_lps)
            assert 3.0 <= f.diameter_mm <= (50.0 if f.kind == "mass" else 30.0)
            extent_mm = (np.asarray(f.box_zyx[3:]) - f.box_zyx[:3]) * ph.volume.spacing_zyx
            assert extent_mm.max() <= f.diameter_mm * 1.25 + 2 * max(ph.volume.spacing_zyx)  # lobulated: ±22 %
            assert f.kind in KINDS


def test_nodules_are_visible_and_part_solid_ones_have_ground_glass(chests):
    """Nodules of 10 mm or more (smaller ones fade into slices up to 5 mm thick, as on real scans)."""
    kinds = set()
    for ph in chests.values():
        for f in (f for f in ph.findings if f.diameter_mm >= 10):
            hu = ph.volume.array[ph.labels == f.id]
            kinds.add(f.kind)
            if f.kind in ("solid", "mass"):
                assert hu.max() > -100, f  # soft tissue at its core
                assert np.sum(hu > -250) > 0.25 * hu.size, f
            elif f.kind == "part-solid":
                assert np.sum((hu > -750) & (hu < -250)) > 0.2 * hu.size, f  # ground glass
                assert hu.max() > -150, f  # and a solid part
            elif f.kind == "ground-glass":
                assert -750 < hu.mean() < -300, f
            else:
                assert hu.max() > 200, f  # calcium
    assert {"solid", "part-solid"} <= kinds


def test_some_nodules_touch_the_pleura_or_a_vessel(chests):
    touches = [f.touches for ph in chests.values() for f in ph.findings]
    assert "pleura" in touches and "vessel" in touches
    assert set(touches) <= {"pleura", "vessel", "fissure", None}
    # A juxtapleural nodule really reaches the chest wall: soft tissue right next to its mask.
    ph, f = next((ph, f) for ph in chests.values() for f in ph.findings if f.touches == "pleura")
    from scipy import ndimage

    mask = ph.labels == f.id
    shell = ndimage.binary_dilation(mask, iterations=2) & ~mask
    assert (ph.volume.array[shell] > -200).sum() > 0


def test_requested_shape_and_spacing_are_honoured_and_the_body_keeps_its_size():
    ph = make_chest_ct(5, shape_zyx=(30, 100, 80))
    v = ph.volume
    assert v.shape_zyx == ph.labels.shape == (30, 100, 80)
    middle = v.array[15, 50]  # a row across the body (blur and noise aside)
    inside = np.flatnonzero(middle > -500)
    width_mm = (inside[-1] - inside[0] + 1) * v.spacing_zyx[2]
    assert 300 < width_mm < 380
    assert all(1.5 * max(v.spacing_zyx) <= f.diameter_mm <= 50 for f in ph.findings)  # ≥ 1.5 voxels
    fixed = make_chest_ct(5, shape_zyx=(20, 64, 64), spacing_zyx=(3.0, 2.5, 2.5))
    assert fixed.volume.spacing_zyx == (3.0, 2.5, 2.5)
    with pytest.raises(ValueError, match="at least 8"):
        make_chest_ct(0, shape_zyx=(4, 64, 64))


# -- brain MR -----------------------------------------------------------------------------------


def test_brain_keeps_its_physical_size_on_any_grid():
    for shape in ((40, 80, 80), (64, 128, 96)):
        v = make_brain_mr(2, shape).volume
        assert v.shape_zyx == shape
        row = v.array[shape[0] // 2, shape[1] // 2]
        inside = np.flatnonzero(row > 300)  # scalp to scalp across the head
        width_mm = (inside[-1] - inside[0] + 1) * v.spacing_zyx[2]
        assert 135 < width_mm < 160


def test_brain_is_deterministic_and_labels_its_lesions(brains):
    again = make_brain_mr(0)
    assert np.array_equal(again.volume.array, brains[0].volume.array)
    assert not np.array_equal(brains[1].volume.array, brains[0].volume.array)
    for ph in brains.values():
        v = ph.volume
        assert v.modality == "MR" and "SYNTHETIC" in v.description
        assert set(np.unique(ph.labels)) <= {0, 1} and ph.labels.any()
        assert 2 <= len(ph.findings) <= 6
        assert v.array.min() >= 0 and v.array.max() < 1400
        for f in ph.findings:
            assert f.kind == "lesion" and f.contrast in ("hyper", "hypo")
            assert 3.0 <= f.diameter_mm <= 25.0
            centre = tuple(round(c) for c in f.center_zyx)
            assert ph.labels[centre] == 1
            z0, y0, x0, z1, y1, x1 = f.box_zyx
            assert ph.labels[z0:z1, y0:y1, x0:x1].any()


def test_brain_has_dark_csf_bright_white_matter_and_contrasted_lesions(brains):
    ph = brains[0]
    a = ph.volume.array
    assert np.median(a[:3, :3, :3]) < 80  # air
    body = a[a > 300]
    wm = np.percentile(body, 60)
    ventricle = _hu_near(ph, (11, 4, 14), 1)  # the right lateral ventricle
    assert ventricle < 0.5 * wm
    for f in ph.findings:
        z, y, x = (round(c) for c in f.center_zyx)
        core = float(np.median(a[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2]))
        assert (core > 1.15 * wm) if f.contrast == "hyper" else (core < 0.6 * wm), f


# -- labelled folders ---------------------------------------------------------------------------


def test_more_cases_with_the_same_seed_share_the_first_ones(tmp_path):
    one = run_to_end(iter_write_phantoms(tmp_path / "a", kind="chest-ct", cases=1, seed=1, shape_zyx=SMALL_CHEST))
    two = run_to_end(iter_write_phantoms(tmp_path / "b", kind="chest-ct", cases=2, seed=1, shape_zyx=SMALL_CHEST))
    first_a = read_volume(one / "imagesTr" / "chest_000_0000.nii.gz").array
    first_b = read_volume(two / "imagesTr" / "chest_000_0000.nii.gz").array
    second = read_volume(two / "imagesTr" / "chest_001_0000.nii.gz").array
    assert np.array_equal(first_a, first_b)
    assert not np.array_equal(first_b, second)
    assert case_seed(1, 0) != case_seed(1, 1) != case_seed(2, 1)


def test_writing_reports_progress_and_stops_when_cancelled(tmp_path):
    steps = []
    cancel = threading.Event()
    job = iter_write_phantoms(tmp_path / "p", kind="brain-mr", cases=3, seed=0, shape_zyx=SMALL_BRAIN, cancel=cancel)
    with pytest.raises(Cancelled):
        for p in job:
            steps.append(p)
            if p.done == 1:
                cancel.set()
    assert steps[0].total == 3 and steps[-1].done == 1 and "brain_000" in steps[-1].message
    assert not (tmp_path / "p" / "dataset.json").exists()  # a cancelled run does not claim a dataset
    assert not list((tmp_path / "p").rglob(".*"))  # and leaves no temporary files


def _radlens(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from radlens.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


def test_radlens_phantom_writes_a_nifti_labelled_folder(tmp_path):
    out = tmp_path / "chest"
    done = _radlens(
        "phantom", str(out), "--kind", "chest-ct", "--cases", "2", "--seed", "3", "--shape", "40", "96", "96"
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "nodule": 1}
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == 2 and meta["synthetic"] is True
    assert "synthetic" in meta["description"].lower() and "seed 3" in meta["description"]
    for case in ("chest_000", "chest_001"):
        image = read_volume(out / "imagesTr" / f"{case}_0000.nii.gz")
        label = read_volume(out / "labelsTr" / f"{case}.nii.gz")
        boxes = json.loads((out / "labelsTr" / f"{case}.json").read_text())
        assert image.modality == "CT" and image.array.dtype == np.int16
        assert label.same_grid(image, tol=1e-6)
        nodules = boxes["nodules"]
        assert boxes["synthetic"] is True
        assert sorted(int(v) for v in np.unique(label.array) if v) == [n["id"] for n in nodules]
        for n in nodules:
            zz, yy, xx = np.nonzero(label.array == n["label_value"])
            assert n["box_zyx"] == [zz.min(), yy.min(), xx.min(), zz.max() + 1, yy.max() + 1, xx.max() + 1]
            x0, y0, z0, x1, y1, z1 = n["box_lps"]
            cx, cy, cz = n["center_lps"]
            assert x0 < cx < x1 and y0 < cy < y1 and z0 < cz < z1
    expected = make_chest_ct(case_seed(3, 0), (40, 96, 96))
    assert np.array_equal(read_volume(out / "imagesTr" / "chest_000_0000.nii.gz").array, expected.volume.array)

    # The recorded command (bundles copy it into their metadata) makes the same cases again.
    again = tmp_path / "again"
    done = _radlens(*meta["command"].replace(str(out), str(again)).split()[1:])
    assert done.returncode == 0, done.stderr
    case = "chest_001_0000.nii.gz"
    assert np.array_equal(read_volume(again / "imagesTr" / case).array, read_volume(out / "imagesTr" / case).array)


def test_radlens_phantom_writes_dicom_series_with_nifti_masks_on_their_grid(tmp_path):
    out = tmp_path / "brain"
    done = _radlens("phantom", str(out), "--kind", "brain-mr", "--cases", "1", "--format", "dicom",
                    "--shape", "24", "64", "64")  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lesion": 1} and meta["image_format"] == "dicom"
    assert meta["command"].endswith(f"{out} --kind brain-mr --cases 1 --seed 0 --format dicom --shape 24 64 64")
    files = sorted((out / "imagesTr" / "brain_000_0000").glob("*.dcm"))
    assert len(files) == 24
    slices = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    label = read_volume(out / "labelsTr" / "brain_000.nii.gz")
    expected = make_brain_mr(case_seed(0, 0), (24, 64, 64))
    assert {str(d.PatientName) for d in slices} == {"SYNTHETIC^PHANTOM"}
    assert {d.Modality for d in slices} == {"MR"}
    assert {d.SeriesInstanceUID for d in slices} == {expected.volume.series_uid}
    assert np.allclose([float(v) for v in slices[0].ImagePositionPatient], label.origin_lps, atol=1e-3)
    assert np.allclose([float(v) for v in slices[0].PixelSpacing], label.spacing_zyx[1:], atol=1e-6)
    pixels = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    assert np.array_equal(pixels, expected.volume.array)
    assert np.array_equal(label.array, expected.labels)
    assert not list(out.rglob(".*"))  # no temporary files left behind
    loaded = load(out / "imagesTr" / "brain_000_0000")  # what the viewer and training read
    assert loaded.same_grid(label, tol=1e-4) and np.array_equal(loaded.array, expected.volume.array)
    assert loaded.modality == "MR" and "SYNTHETIC" in loaded.description


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--cases", "0"], "--cases must be at least 1"),
        (["--shape", "4", "64", "64"], "at least 8 voxels"),
        (["--seed", "-2"], "--seed must be 0 or more"),
    ],
)
def test_radlens_phantom_refuses_bad_requests_in_one_line(tmp_path, capsys, args, says):
    from radlens.cli import main

    assert main(["phantom", str(tmp_path / "x"), "--kind", "chest-ct", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("radlens: error: ") and says in err and err.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_radlens_phantom_refuses_a_file_as_its_folder(tmp_path, capsys):
    from radlens.cli import main

    (tmp_path / "file").write_text("not a folder")
    assert main(["phantom", str(tmp_path / "file"), "--kind", "brain-mr"]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_case_folder_is_replaced_whole(tmp_path):
    """Writing DICOM again over a bigger earlier series leaves no stale slices from the old one."""
    root = tmp_path / "r"
    run_to_end(iter_write_phantoms(root, kind="brain-mr", cases=1, seed=0, fmt="dicom", shape_zyx=(20, 48, 48)))
    run_to_end(iter_write_phantoms(root, kind="brain-mr", cases=1, seed=0, fmt="dicom", shape_zyx=(12, 48, 48)))
    assert len(list(Path(root, "imagesTr", "brain_000_0000").iterdir())) == 12


def test_rewriting_a_folder_leaves_exactly_the_new_cases(tmp_path):
    """3 NIfTI cases, then 2 DICOM cases into the same folder: the old third case and the NIfTI images go."""
    root = tmp_path / "r"
    run_to_end(iter_write_phantoms(root, kind="brain-mr", cases=3, seed=0, shape_zyx=(16, 40, 40)))
    run_to_end(iter_write_phantoms(root, kind="brain-mr", cases=2, seed=0, fmt="dicom", shape_zyx=(16, 40, 40)))
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["brain_000_0000", "brain_001_0000"]
    labels = sorted(p.name for p in (root / "labelsTr").iterdir())
    assert labels == ["brain_000.json", "brain_000.nii.gz", "brain_001.json", "brain_001.nii.gz"]
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 2


def test_never_writes_into_someone_elses_dataset(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "dataset.json").write_text(json.dumps({"name": "Task06_Lung", "labels": {"0": "background"}}))
    with pytest.raises(ImagingError, match="not written by radlens phantom"):
        run_to_end(iter_write_phantoms(theirs, kind="chest-ct", cases=1, seed=0, shape_zyx=(16, 40, 40)))
    assert sorted(p.name for p in theirs.iterdir()) == ["dataset.json"]
    ours = tmp_path / "ours"
    run_to_end(iter_write_phantoms(ours, kind="brain-mr", cases=1, seed=0, shape_zyx=(16, 40, 40)))
    with pytest.raises(ImagingError, match="holds brain-mr phantoms"):
        run_to_end(iter_write_phantoms(ours, kind="chest-ct", cases=1, seed=0, shape_zyx=(16, 40, 40)))
