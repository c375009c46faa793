"""The PACS in the window, against a real Orthanc: PACS ▸ Query / retrieve finds the study, retrieves it in
the background showing the slices as they arrive and opens it; "Send results to PACS" puts SEG + SR into
the same study; a node that is down is one line in the dialog."""

from __future__ import annotations

import os

import numpy as np
import pytest
from orthanc_server import free_port

from radlens.imaging.loading import load
from radlens.imaging.progress import run_to_end
from radlens.imaging.volume import Volume
from radlens.inference.findings import Component, Detection, Findings, ModelRun, Segmentation
from radlens.pacs.client import iter_send
from radlens.pacs.nodes import Node, PacsConfig, write_config


@pytest.fixture
def window(qtbot, tmp_path, orthanc, monkeypatch):
    """The real main window, offscreen, its settings and PACS nodes kept in tmp_path."""
    from radlens.viewer.main_window import MainWindow
    from radlens.viewer.qt import QtCore

    down = Node("down", "ORTHANC", "127.0.0.1", free_port())
    config = PacsConfig(orthanc.local, (orthanc.dimse, down))
    monkeypatch.setenv("RADLENS_PACS_CONFIG", str(write_config(config, tmp_path / "pacs.json")))
    settings = QtCore.QSettings(os.fspath(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.resize(1200, 700)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.runner.cancel_all()
    w.runner.wait_idle(10000)


@pytest.fixture(scope="module")
def on_pacs(orthanc, tmp_path_factory):
    """A SYNTHETIC phantom stored on the PACS: its volume."""
    from radlens.imaging.phantom import iter_write_phantoms

    root = tmp_path_factory.mktemp("phantom")
    run_to_end(iter_write_phantoms(root, kind="chest-ct", cases=1, seed=3, fmt="dicom", shape_zyx=(10, 40, 40)))
    folder = root / "imagesTr" / "chest_000_0000"
    run_to_end(iter_send(orthanc.dimse, orthanc.local, [folder]))
    return load(folder)


def test_query_retrieve_shows_slices_as_they_arrive_opens_the_study_and_results_go_back(
    window, qtbot, orthanc, on_pacs, tmp_path
):
    dialog = window.dicom.show_query()
    assert [dialog.node_box.itemText(i).split(" ")[0] for i in range(dialog.node_box.count())] == ["orthanc", "down"]
    dialog.filters["PatientID"].setText(on_pacs.study.patient_id)
    dialog.find_button.click()
    qtbot.waitUntil(lambda: dialog.studies.rowCount() == 1, timeout=30000)
    assert dialog.studies.item(0, 1).text() == "SYNTHETIC^PHANTOM" and dialog.status.text() == "1 study found"
    dialog.studies.selectRow(0)
    qtbot.waitUntil(lambda: dialog.series.rowCount() == 1, timeout=30000)
    assert [dialog.series.item(0, c).text() for c in (1, 3)] == ["CT", "10"]

    arrived = []
    show_preview = window.show_preview
    window.show_preview = lambda image, pixel_mm, levels: (arrived.append(image), show_preview(image, pixel_mm, levels))
    dialog.folder.setText(str(tmp_path / "pacs"))
    dialog.retrieve_button.click()
    qtbot.waitUntil(lambda: window.study is not None, timeout=60000)
    assert window.study.volume.series_uid == on_pacs.series_uid
    np.testing.assert_array_equal(window.study.volume.array, on_pacs.array)
    assert arrived and arrived[0].shape == (40, 40)  # the first slice showed before the study opened
    assert any(np.array_equal(arrived[0], on_pacs.array[z]) for z in range(10))
    assert [p.name for p in (tmp_path / "pacs").iterdir()] == [on_pacs.study.study_uid]  # nothing half-written

    # the reader accepts the nodule the AI found and sends the results back: they join the study on the PACS
    window.set_findings(_findings(window.study.volume))
    window.controller.decide(window.study.state.rows[0].key, "accepted")
    window.dicom.send_results("orthanc")
    qtbot.waitUntil(lambda: window.message.text().startswith("sent"), timeout=60000)
    assert window.message.text() == f"sent 3 DICOM objects (SEG, SR, key images) to {orthanc.dimse}"
    (study,) = [s for s in orthanc.get("/studies") if _uid(orthanc, s) == on_pacs.study.study_uid]
    series = orthanc.get(f"/studies/{study}")["Series"]
    assert sorted(orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in series) == ["CT", "KO", "SEG", "SR"]


def _uid(orthanc, study: str) -> str:
    return orthanc.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]


def _findings(volume: Volume) -> Findings:
    """A nodule found by a detector and a segmenter, on the retrieved grid."""
    box, centre = (2, 10, 10, 5, 14, 14), (3.0, 11.5, 11.5)
    lps = tuple(volume.index_to_lps(centre))
    mask = np.zeros(volume.shape_zyx, bool)
    mask[2:5, 10:14, 10:14] = True
    return Findings(
        Findings.empty_for(volume).input,
        models=(
            ModelRun("nodule-detector", "1.0.0", "detection", threshold=0.5),
            ModelRun("nodule-segmenter", "1.0.0", "segmentation"),
        ),
        detections=(Detection(1, "nodule-detector", "nodule", 0.9, box, centre, lps, 4.0),),
        segmentations=(
            Segmentation("nodule-segmenter", "nodule", 1, 0.1, (Component(1, 0.1, lps, box, 0.9),), mask=mask),
        ),
    )


def test_a_node_that_is_down_is_one_line_in_the_dialog(window, qtbot):
    dialog = window.dicom.show_query()
    dialog.node_box.setCurrentIndex(1)
    dialog.find_button.click()
    qtbot.waitUntil(lambda: "unreachable" in dialog.status.text(), timeout=30000)
    assert dialog.status.text().startswith("down (ORTHANC@127.0.0.1:") and dialog.status.text().endswith(
        ": unreachable: Connection refused"
    )
    assert "ff6060" in dialog.status.styleSheet() and dialog.studies.rowCount() == 0
