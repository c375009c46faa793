"""Other tools' results in: SEG (binary, fractional, label map), TID 1500 SR and RTSTRUCT, on their series."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_study import REVIEW, dicom_study, study_findings
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.loading import load
from radlens.imaging.volume import Volume
from radlens.inference.dicom_export import write_dicom_results
from radlens.inference.dicom_import import find_dicom_results, read_dicom_results


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    volume = dicom_study(root / "ct")
    return root, volume


def test_round_trip_through_dicom_gives_the_same_findings(study):
    root, volume = study
    findings = study_findings(volume)
    write_dicom_results(findings, volume, root / "ct" / "results", review=REVIEW)
    found = find_dicom_results(root / "ct", volume)
    assert [p.name for p in found] == ["SEG-nodule-segmenter.dcm", "SR-findings.dcm"]  # the KOS holds no findings
    back = read_dicom_results(found, volume)
    assert back.errors == ()
    assert back.decisions == REVIEW
    kept = [d for d in findings.detections if d.score >= 0.5]  # the detector's threshold
    assert [(d.id, d.model, d.label, d.box_zyx) for d in back.findings.detections] == [
        (d.id, d.model, d.label, d.box_zyx) for d in kept
    ]
    assert [d.score for d in back.findings.detections] == pytest.approx([d.score for d in kept])
    assert [d.diameter_mm for d in back.findings.detections] == pytest.approx([d.diameter_mm for d in kept])
    assert {(m.name, m.version) for m in back.findings.models} == {(m.name, m.version) for m in findings.models}
    for mine, theirs in zip(findings.segmentations, back.findings.segmentations, strict=True):
        assert (theirs.model, theirs.label) == (mine.model, mine.label)
        np.testing.assert_array_equal(theirs.mask, mine.mask)
        assert theirs.volume_ml == pytest.approx(mine.volume_ml)
        assert [c.box_zyx for c in theirs.components] == [c.box_zyx for c in mine.components]


def _other_tool_seg(volume: Volume, kind: str, values: np.ndarray) -> hd.seg.Segmentation:
    """A SEG as another tool (here highdicom itself, named 'TotalSegmentator') would write it."""
    sources = [pydicom.dcmread(f) for f in volume.files]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="liver",
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            "TotalSegmentator", codes.DCM.ArtificialIntelligence, "2.4"
        ),
    )
    return hd.seg.Segmentation(
        sources, values, kind, [description], hd.UID(), 5, hd.UID(), 1, "Wasserthal", "TotalSegmentator", "2.4", "1"
    )


@pytest.mark.parametrize("kind", ["BINARY", "FRACTIONAL", "LABELMAP"])
def test_another_tools_seg_shows_as_a_layer_named_after_it(study, tmp_path, kind):
    _, volume = study
    truth = np.zeros(volume.shape_zyx, dtype=bool)
    truth[2:7, 30:50, 10:25] = True
    values = truth.astype(np.float32) * 0.9 if kind == "FRACTIONAL" else truth.astype(np.uint8)
    path = tmp_path / "seg.dcm"
    _other_tool_seg(volume, kind, values).save_as(path)
    back = read_dicom_results(path, volume)
    assert back.errors == ()
    (seg,) = back.findings.segmentations
    assert (seg.model, seg.label) == ("TotalSegmentator", "liver")
    assert back.findings.models[0].version == "2.4"
    np.testing.assert_array_equal(seg.mask, truth)
    assert [c.box_zyx for c in seg.components] == [(2, 30, 10, 7, 50, 25)]


def test_sr_planar_rois_of_another_tool_become_boxes(study, tmp_path):
    _, volume = study
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in volume.files]
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
        graphic_data=np.array([[30.0, 20.0], [35.0, 20.0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(sources[7]),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="lesion 1"),
        referenced_region=region,
        finding_type=codes.SCT.Nodule,
        measurements=[hd.sr.Measurement(codes.SCT.Diameter, 10.0, codes.UCUM.Millimeter)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(sources, report, hd.UID(), 7, hd.UID(), 1, manufacturer="OtherCAD")
    sr.save_as(tmp_path / "sr.dcm")
    back = read_dicom_results(tmp_path / "sr.dcm", volume)
    (det,) = back.findings.detections
    assert (det.model, det.label, det.box_zyx, det.diameter_mm) == ("OtherCAD", "nodule", (7, 15, 25, 8, 25, 35), 10.0)


def test_rtstruct_contours_are_rasterised_onto_the_series(tmp_path):
    """pydicom's own RTSTRUCT test file, on a series placed where its contours are."""
    rt = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    frame = rt.ReferencedFrameOfReferenceSequence[0]
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID
    grid = Volume(np.zeros((6, 60, 60), np.int16), (10.0, 10.0, 10.0), (-295.0, -295.0, -200.0), modality="CT")
    files = write_dicom_series(grid, tmp_path / "ct", series_uid=series)
    for f in files:  # the series shares the structure set's frame of reference
        ds = pydicom.dcmread(f)
        ds.FrameOfReferenceUID = frame.FrameOfReferenceUID
        ds.save_as(f)
    volume = load(tmp_path / "ct")
    back = read_dicom_results(get_testdata_file("rtstruct.dcm"), volume)
    assert back.errors == ()
    (patient,) = back.findings.segmentations  # the isocentres are points: no area
    assert (patient.model, patient.label) == ("TPS", "patient")
    # the outline is a 400 × 300 mm rectangle on slices z = -200, -190, -180 mm: 40 × 30 voxel centres inside
    assert patient.mask.sum(axis=(1, 2)).tolist() == [1200, 1200, 1200, 0, 0, 0]
    x = np.nonzero(patient.mask[0].any(axis=0))[0]
    assert volume.index_to_lps((0, 0, x[0]))[0] == pytest.approx(-195) and len(x) == 40


def test_results_of_another_series_or_frame_are_refused_in_one_line(study, tmp_path):
    _, volume = study
    other = dicom_study(tmp_path / "other", hd.UID())  # the same anatomy, a new series and frame of reference
    paths = write_dicom_results(study_findings(other), other, tmp_path / "out")
    back = read_dicom_results(paths[:2], volume)
    assert back.findings.segmentations == () and back.findings.detections == ()
    assert len(back.errors) == 2
    assert back.errors[0] == f"{paths[0]}: references series {other.series_uid}, not {volume.series_uid}"

    seg = pydicom.dcmread(paths[0])  # the right series, but another frame of reference
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = volume.series_uid
    seg.save_as(tmp_path / "moved.dcm")
    (error,) = read_dicom_results(tmp_path / "moved.dcm", volume).errors
    assert error.startswith(
        f"{tmp_path / 'moved.dcm'}: frame of reference {seg.FrameOfReferenceUID} is not the series'"
    )
    assert "\n" not in error
