"""DICOM in the window: File ▸ Export to DICOM writes the reviewed state (SEG, SR with accept / reject, key
images, the view as Secondary Capture); a NIfTI study says it needs a DICOM source; results beside a series
or opened from files (another tool's SEG) show as layers, with the review an SR carried."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.loading import load
from radlens.inference.dicom_export import write_dicom_results
from radlens.inference.dicom_sr import REVIEW
from radlens.inference.lesions import detection_key
from radlens.viewer.dicom_jobs import reviewed
from radlens.viewer.layers import LayerKey
from tests.viewer.conftest import NODULE, key_of_detection, make_ct, make_findings

DETECTOR = LayerKey("nodule-detector", "detection", "nodule")
NODULE_KEY, FAINT_KEY = detection_key("nodule-detector", 1), detection_key("nodule-detector", 2)  # ids, as SRs carry


def _dicom_ct(folder):
    write_dicom_series(make_ct(), folder, patient_name="SYNTHETIC^REVIEW", patient_id="PID-7")
    return load(folder)


def test_the_reviewed_state_is_what_the_reader_sees_or_decided(tmp_path):
    volume = _dicom_ct(tmp_path)
    findings = make_findings(volume)  # the nodule scores 0.93, the faint one 0.30
    assert [d.id for d in reviewed(findings, {}, {DETECTOR: 0.5}).detections] == [1]
    assert [d.id for d in reviewed(findings, {}, {DETECTOR: 0.2}).detections] == [1, 2]  # the slider lowered
    assert [d.id for d in reviewed(findings, {FAINT_KEY: "rejected"}, {DETECTOR: 0.5}).detections] == [1, 2]


def test_export_to_dicom_writes_seg_sr_with_the_review_key_images_and_the_view(window, qtbot, tmp_path):
    volume = _dicom_ct(tmp_path / "ct")
    window.set_volume(volume)
    window.set_findings(make_findings(volume))
    window.controller.decide(key_of_detection(window.study.state, 1), "accepted")
    window.controller.decide(key_of_detection(window.study.state, 2), "rejected")  # under the threshold, but seen
    out = tmp_path / "dicom"
    window.dicom.export_dicom(out, screenshot=True)
    qtbot.waitUntil(lambda: window.message.text().startswith("exported"), timeout=60000)
    assert sorted(p.name for p in out.iterdir()) == [
        "KO-key-images.dcm",
        "SC-view.dcm",
        "SEG-nodule-classifier-probability.dcm",
        "SEG-nodule-segmenter.dcm",
        "SR-findings.dcm",
    ]
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(out / "SR-findings.dcm")])
    planar = report.get_planar_roi_measurement_groups()
    decisions = [[q.value.meaning for q in g.get_qualitative_evaluations(REVIEW)] for g in planar]
    # two boxes and a mask component; the nodule's box and its mask are one lesion, accepted once
    assert decisions == [["Accepted by reader"], ["Rejected by reader"], ["Accepted by reader"]]
    assert [g.get_measurements(codes.DCM.Probability)[0].value for g in planar[:2]] == [0.93, 0.30]
    uids = [str(pydicom.dcmread(f).SOPInstanceUID) for f in volume.files]
    seg = hd.seg.segread(out / "SEG-nodule-segmenter.dcm")
    z0, y0, x0, z1, y1, x1 = NODULE
    expected = np.zeros(volume.shape_zyx, bool)
    expected[z0:z1, y0:y1, x0:x1] = True
    np.testing.assert_array_equal(seg.get_pixels_by_source_instance(uids)[..., 0].astype(bool), expected)
    sc = pydicom.dcmread(out / "SC-view.dcm")
    view = window.views["axial"]
    assert sc.BurnedInAnnotation == "YES" and sc.PatientID == "PID-7"
    assert sc.pixel_array.shape[:2] == (view.height(), view.width()) and sc.pixel_array.std() > 0
    assert "machine-generated" in sc.ImageComments
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == uids[window.study.state.slice_index("axial")]


def test_a_study_opened_from_nifti_says_dicom_export_needs_a_dicom_source(window, study, monkeypatch):
    volume, _ = study
    window.set_volume(volume)
    window.set_findings(make_findings(volume))
    monkeypatch.setattr("radlens.viewer.dicom_actions.DicomExportDialog.exec", lambda self: 0 / 0)  # never opens
    window.menu_actions["export_dicom"].trigger()
    assert window.message.text() == f"{volume.source}: DICOM results need a DICOM source series: this one is NIfTI"
    assert "ff6060" in window.message.styleSheet()
    window.menu_actions["pacs_send"].trigger()
    assert window.message.text().endswith("DICOM results need a DICOM source series: this one is NIfTI")


def test_dicom_results_beside_a_series_come_back_as_layers_with_their_review(window, qtbot, tmp_path):
    volume = _dicom_ct(tmp_path / "ct")
    write_dicom_results(
        make_findings(volume), volume, tmp_path / "ct" / "results", review={NODULE_KEY: "accepted"}
    )
    window.open_paths([tmp_path / "ct"])
    qtbot.waitUntil(lambda: window.study is not None and window.study.findings is not None, timeout=60000)
    assert window.study.volume.modality == "CT"
    models = {m.name for m in window.study.findings.models}
    assert models == {"nodule-detector", "nodule-segmenter"}
    st = window.study.state
    assert [st.decision(r) for r in st.rows] == ["accepted"]  # the nodule: its box and its mask, one lesion
    assert window.message.text() == "DICOM results: nodule-detector, nodule-segmenter"
    assert {k.model for k in window.layers_panel.controls} == models  # the Layers panel lists them
    table = window.findings_panel.table
    review = [table.item(r, window.findings_panel.COLUMNS.index("review")).text() for r in range(table.rowCount())]
    assert review.count("accepted") == 1  # the Findings panel shows the decision the SR carried


def _another_tools_seg(volume, path, series_uid=None):
    """A SEG as TotalSegmentator writes it (highdicom), of the series or (series_uid) of another."""
    sources = [pydicom.dcmread(f) for f in volume.files]
    if series_uid:
        for s in sources:
            s.SeriesInstanceUID = series_uid
    values = np.zeros(volume.shape_zyx, np.uint8)
    values[2:9, 10:30, 12:40] = 1
    description = hd.seg.SegmentDescription(
        1,
        "liver",
        codes.SCT.Organ,
        codes.SCT.Liver,
        hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        hd.AlgorithmIdentificationSequence("TotalSegmentator", codes.DCM.ArtificialIntelligence, "2.4"),
    )
    hd.seg.Segmentation(
        sources, values, "BINARY", [description], hd.UID(), 5, hd.UID(), 1, "Wasserthal", "TotalSegmentator", "2.4", "1"
    ).save_as(path)
    return values.astype(bool)


def test_another_tools_seg_opened_from_a_file_shows_as_its_layer(window, qtbot, tmp_path):
    volume = _dicom_ct(tmp_path / "ct")
    window.set_volume(volume)
    truth = _another_tools_seg(volume, tmp_path / "liver.dcm")
    window.dicom.open_results([tmp_path / "liver.dcm"])
    qtbot.waitUntil(lambda: window.study.findings is not None, timeout=30000)
    (seg,) = window.study.findings.segmentations
    assert (seg.model, seg.label) == ("TotalSegmentator", "liver")
    np.testing.assert_array_equal(seg.mask, truth)
    assert LayerKey("TotalSegmentator", "segmentation", "liver") in window.study.state.layers

    _another_tools_seg(volume, tmp_path / "other.dcm", series_uid="1.2.3.4")
    window.dicom.open_results([tmp_path / "other.dcm"])
    qtbot.waitUntil(lambda: "refused" in window.message.text(), timeout=30000)
    assert window.message.text() == (
        f"DICOM results: nothing new; 1 refused: {tmp_path / 'other.dcm'}: references series 1.2.3.4, "
        f"not {volume.series_uid}"
    )


def test_radlens_export_dicom_is_the_png_as_an_anonymised_secondary_capture(qapp, tmp_path, capsys):
    """The same rendering as the PNG, BurnedInAnnotation YES, no patient with --anonymize; dciodvfy (when
    installed) finds no error in it; a NIfTI study or a .png name is refused in one line."""
    from radlens.cli import main
    from radlens.inference.findings import write_findings
    from radlens.viewer.export import rgb_array
    from radlens.viewer.qt import QtGui

    volume = _dicom_ct(tmp_path / "ct")
    write_findings(make_findings(volume), tmp_path / "run")
    args = ["export", str(tmp_path / "ct"), "--findings", str(tmp_path / "run"), "--finding", "1", "--anonymize"]
    assert main([*args, "--out", str(tmp_path / "view.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "view.dcm"), "--dicom"]) == 0
    sc = pydicom.dcmread(tmp_path / "view.dcm")
    np.testing.assert_array_equal(sc.pixel_array, rgb_array(QtGui.QImage(str(tmp_path / "view.png"))))
    assert (sc.BurnedInAnnotation, sc.PatientName, sc.PatientID) == ("YES", "ANONYMOUS^", "ANONYMOUS")
    assert sc.StudyInstanceUID == pydicom.dcmread(volume.files[0]).StudyInstanceUID
    assert "nodule-detector v1.0.0" in sc.ImageComments and "PID-7" not in str(sc)
    checker = shutil.which("dciodvfy")
    if checker is not None:
        out = subprocess.run([checker, str(tmp_path / "view.dcm")], capture_output=True, text=True, timeout=60)
        assert not [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "view2.png"), "--dicom"]) == 1
    assert (
        capsys.readouterr().err
        == f"radlens: error: {tmp_path / 'view2.png'}: --dicom writes a Secondary Capture; name it .dcm\n"
    )
    with capsys.disabled():  # which checker ran, in the test log
        print(f"conformance checker: {checker or 'pydicom only (dciodvfy not installed)'}")
