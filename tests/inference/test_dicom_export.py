"""DICOM results out: what a PACS, OHIF or Slicer gets, read back with highdicom and pydicom, and checked."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_study import REVIEW as DECISIONS
from dicom_study import dicom_study, study_findings
from pydicom.sr.codedict import codes

from radlens.imaging.errors import RadlensError
from radlens.imaging.volume import Volume
from radlens.inference.dicom_capture import write_screenshot
from radlens.inference.dicom_export import write_dicom_results
from radlens.inference.dicom_source import source_series
from radlens.inference.dicom_sr import OHIF_RECTANGLE, REVIEW
from radlens.inference.findings import Classification, Findings, ModelRun


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    volume = dicom_study(root / "ct")
    findings = study_findings(volume)
    paths = write_dicom_results(findings, volume, root / "out", review=DECISIONS)
    return volume, findings, {p.name: p for p in paths}


def test_writes_one_seg_per_model_one_sr_and_key_images(written):
    _, _, paths = written
    assert sorted(paths) == ["KO-key-images.dcm", "SEG-nodule-segmenter.dcm", "SR-findings.dcm"]
    assert not [p for p in next(iter(paths.values())).parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_every_object_belongs_to_the_study_and_says_a_machine_made_it(written):
    volume, _, paths = written
    src = pydicom.dcmread(volume.files[0])
    for path in paths.values():
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.PatientID == "PID-42" and ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert "machine-generated" in ds.SeriesDescription
        assert ds.Manufacturer == "RadLens"


def test_seg_has_the_same_voxels_and_references_the_source_instances(written):
    volume, findings, paths = written
    seg = hd.seg.segread(paths["SEG-nodule-segmenter.dcm"])
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.FrameOfReferenceUID == pydicom.dcmread(volume.files[0]).FrameOfReferenceUID
    uids = [str(pydicom.dcmread(f).SOPInstanceUID) for f in volume.files]
    pixels = seg.get_pixels_by_source_instance(uids)  # (z, y, x, segment)
    for i, s in enumerate(findings.segmentations):
        d = seg.get_segment_description(i + 1)
        assert d.segment_label == s.label and d.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algo = d.algorithm_identification[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("nodule-segmenter", "0.3.1")
        assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        np.testing.assert_array_equal(pixels[..., i].astype(bool), s.mask)
    referenced = {
        str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence
    }
    assert referenced <= set(uids) and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.series_uid


def test_sr_groups_carry_rectangles_ohif_reads_boxes_scores_and_review(written):
    volume, findings, paths = written
    sr = hd.sr.srread(paths["SR-findings.dcm"])
    report = hd.sr.MeasurementReport.from_sequence([sr])
    uids = [str(pydicom.dcmread(f).SOPInstanceUID) for f in volume.files]
    planar = report.get_planar_roi_measurement_groups()
    # detections 1 and 2 (3 is below the detector's threshold 0.5 and unreviewed) and two mask components
    assert len(planar) == 4 and len(report.get_volumetric_roi_measurement_groups()) == 4
    first = planar[0]
    assert first.tracking_identifier == OHIF_RECTANGLE
    assert first.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    d = findings.detections[0]
    z0, y0, x0, z1, y1, x1 = d.box_zyx
    np.testing.assert_allclose(first.roi.value, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    source = first.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert source == uids[round(d.center_zyx[0])]
    assert first.get_measurements(codes.DCM.Probability)[0].value == pytest.approx(0.91)
    assert first.get_measurements(codes.SCT.LongAxis)[0].value == pytest.approx(12.5)
    assert first.get_qualitative_evaluations(REVIEW)[0].value.meaning == "Accepted by reader"
    assert planar[1].get_qualitative_evaluations(REVIEW)[0].value.meaning == "Rejected by reader"
    component = planar[2]
    ml = findings.segmentations[0].volume_ml
    assert component.get_measurements(codes.SCT.Volume)[0].value == pytest.approx(ml * 1000, rel=1e-6)
    box = report.get_volumetric_roi_measurement_groups(tracking_uid=first.tracking_uid)[0]
    corners = np.concatenate(box.roi.graphic_data)
    assert box.roi.frame_of_reference_uid == pydicom.dcmread(volume.files[0]).FrameOfReferenceUID
    lo = volume.index_to_lps(np.array([z0, y0, x0]) - 0.5)
    hi = volume.index_to_lps(np.array([z1, y1, x1]) - 0.5)
    np.testing.assert_allclose(corners.min(axis=0), np.minimum(lo, hi), atol=1e-3)
    np.testing.assert_allclose(corners.max(axis=0), np.maximum(lo, hi), atol=1e-3)
    (device,) = report.get_observer_contexts(observer_type=codes.DCM.Device)
    assert device.observer_identifying_attributes.name == "RadLens"
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"


def test_key_images_cite_the_accepted_findings_slice(written):
    volume, findings, paths = written
    ko = pydicom.dcmread(paths["KO-key-images.dcm"])
    cited = [
        str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in ko.ContentSequence if i.ValueType == "IMAGE"
    ]
    key = round(findings.detections[0].center_zyx[0])  # only detection 1 was accepted
    assert cited == [str(pydicom.dcmread(volume.files[key]).SOPInstanceUID)]


def test_fractional_seg_for_heat_maps_and_screenshot_as_secondary_capture(written, tmp_path):
    volume, findings, _ = written
    maps = heat_findings(findings, volume)
    heat = maps.classifications[0].heatmap
    (path,) = write_dicom_results(maps, volume, tmp_path, probability_maps=True)
    seg = hd.seg.segread(path)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    uids = [str(pydicom.dcmread(f).SOPInstanceUID) for f in volume.files]
    back = seg.get_pixels_by_source_instance(uids)[..., 0]
    np.testing.assert_allclose(back, heat, atol=1 / 255 + 1e-6)

    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 0] = 200
    sc_path = write_screenshot(
        rgb, source_series(volume), tmp_path / "SC.dcm", series_number=999, description="legend", anonymize=True
    )
    sc = pydicom.dcmread(sc_path)
    assert sc.BurnedInAnnotation == "YES" and sc.PatientName == "ANONYMOUS^" and sc.PatientID == "ANONYMOUS"
    assert sc.StudyInstanceUID == pydicom.dcmread(volume.files[0]).StudyInstanceUID
    np.testing.assert_array_equal(sc.pixel_array, rgb)


def heat_findings(findings: Findings, volume: Volume) -> Findings:
    heat = np.linspace(0, 1, np.prod(volume.shape_zyx), dtype=np.float32).reshape(volume.shape_zyx)
    return Findings(
        findings.input,
        models=(ModelRun("heat-model", "1", "classification"),),
        classifications=(Classification("heat-model", "nodule", 0.8, heatmap=heat),),
    )


def test_anonymized_results_name_no_patient(written, tmp_path):
    volume, findings, _ = written
    for path in write_dicom_results(findings, volume, tmp_path, anonymize=True):
        ds = pydicom.dcmread(path)
        assert ds.PatientName == "ANONYMOUS^" and ds.PatientID == "ANONYMOUS" and "PID-42" not in str(ds)


def test_dciodvfy_finds_no_errors(written, tmp_path):
    """Conformance: dicom3tools' dciodvfy on every kind of object RadLens writes."""
    checker = shutil.which("dciodvfy")
    if checker is None:
        pytest.skip("dciodvfy not on PATH (Debian dicom3tools): conformance checked by highdicom/pydicom only")
    volume, findings, paths = written
    extra = [
        write_screenshot(
            np.zeros((16, 16, 3), np.uint8),
            source_series(volume),
            tmp_path / "SC.dcm",
            series_number=9,
            description="x",
        ),
        *write_dicom_results(heat_findings(findings, volume), volume, tmp_path, probability_maps=True, anonymize=True),
    ]
    for path in [*paths.values(), *extra]:
        out = subprocess.run([checker, str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
    print(f"conformance checker: {checker} on {len(paths) + len(extra)} objects (SEG, SR, KOS, SC): no errors")


def test_a_volume_not_from_dicom_is_refused_in_one_line(written):
    volume, findings, _ = written
    nifti = Volume(volume.array, volume.spacing_zyx, volume.origin_lps, volume.direction, "CT", source="/x/ct.nii.gz")
    with pytest.raises(RadlensError) as err:
        write_dicom_results(findings, nifti, "/tmp/never")
    assert str(err.value) == "/x/ct.nii.gz: DICOM results need a DICOM source series: this one is NIfTI"


def test_radlens_infer_dicom_writes_the_objects_into_out_dicom(written, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from inference_helpers import DETECTOR_KWARGS, ct_input, metadata

    from radlens.cli import main
    from radlens.inference.bundle import save_bundle
    from radlens.inference.networks import build_network

    volume, _, _ = written
    torch.manual_seed(0)
    meta = metadata(
        "rand-detector",
        "detection",
        "centernet3d",
        DETECTOR_KWARGS,
        thresholds={"score": 0.0},  # reports every candidate
        input=ct_input(spacing_zyx=list(volume.spacing_zyx)),  # no resampling: fast
    )
    det = save_bundle(tmp_path / "det", build_network("centernet3d", **DETECTOR_KWARGS), meta)
    out = tmp_path / "run"
    assert main(["infer", str(volume.source), "--out", str(out), "--model", str(det), "--dicom"]) == 0
    assert (out / "findings.json").is_file()
    names = sorted(p.name for p in (out / "dicom").iterdir())
    assert names == ["KO-key-images.dcm", "SR-findings.dcm"]
    for p in (out / "dicom").iterdir():
        assert pydicom.dcmread(p).StudyInstanceUID == pydicom.dcmread(volume.files[0]).StudyInstanceUID

    nifti = tmp_path / "ct.nii.gz"
    from radlens.imaging.volume_io import write_volume

    write_volume(volume, nifti)
    capsys.readouterr()
    assert main(["infer", str(nifti), "--out", str(tmp_path / "n"), "--model", str(det), "--dicom"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"radlens: error: {nifti}: DICOM results need a DICOM source series: this one is NIfTI"
    assert not (tmp_path / "n").exists()  # refused before any model ran
