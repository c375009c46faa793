"""Against a real PACS (Orthanc, started by the tests): a SYNTHETIC phantom study is stored, found (C-FIND and
QIDO-RS), retrieved (C-GET, C-MOVE, WADO-RS), its AI results are sent back as SEG + SR and Orthanc then
holds them in the same study; bad nodes and failed or cancelled retrieves are one line and leave nothing."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_server import free_port

from radlens.cli import main
from radlens.imaging.loading import load
from radlens.imaging.progress import Cancelled, run_to_end
from radlens.pacs.client import iter_retrieve, iter_send
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import PacsConfig, write_config

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
SHAPE = ("12", "40", "40")
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def config(orthanc, tmp_path_factory) -> str:
    """pacs.json: Orthanc over DIMSE by C-GET, by C-MOVE, and over DICOMweb."""
    nodes = (orthanc.dimse, replace(orthanc.dimse, name="orthanc-move", retrieve="move"), orthanc.web)
    return str(write_config(PacsConfig(orthanc.local, nodes), tmp_path_factory.mktemp("cfg") / "pacs.json"))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    assert (
        main(["phantom", str(out), "--kind", "chest-ct", "--cases", "1", "--format", "dicom", "--shape", *SHAPE]) == 0
    )
    return out / "imagesTr" / "chest_000_0000"


@pytest.fixture(scope="module")
def stored(orthanc, config, phantom):
    """The phantom sent with `radlens pacs send` (C-STORE): (its volume, study UID, series UID)."""
    assert main(["pacs", "send", "orthanc", str(phantom), "--config", config]) == 0
    volume = load(phantom)
    return volume, volume.study.study_uid, volume.series_uid


def _cli(capsys, *args) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def test_echo_over_dimse_and_dicomweb(orthanc, config, capsys):
    assert _cli(capsys, "pacs", "echo", "orthanc", "--config", config)[1] == [f"{orthanc.dimse}: C-ECHO succeeded"]
    assert _cli(capsys, "pacs", "echo", "orthanc-web", "--config", config)[1] == [f"{orthanc.web}: QIDO-RS answered"]


def test_unreachable_and_refusing_nodes_are_one_line_naming_the_node(orthanc, config, capsys):
    closed = free_port()
    code, _, err = _cli(capsys, "pacs", "echo", f"ORTHANC@127.0.0.1:{closed}", "--config", config)
    assert (code, err) == (1, [f"radlens: error: ORTHANC@127.0.0.1:{closed}: unreachable: Connection refused"])
    code, _, err = _cli(capsys, "pacs", "echo", f"http://127.0.0.1:{closed}/dicom-web", "--config", config)
    assert err == [f"radlens: error: http://127.0.0.1:{closed}/dicom-web: unreachable: Connection refused"]
    wrong = f"NOTORTHANC@127.0.0.1:{orthanc.dicom_port}"
    code, _, err = _cli(capsys, "pacs", "find", wrong, "--config", config)
    assert (code, err) == (
        1,
        [
            f"radlens: error: {wrong}: association rejected by the Service User (permanent): "
            "Called AE title not recognised"
        ],
    )


def test_the_stored_study_is_found_by_c_find_and_qido(orthanc, config, stored, capsys):
    volume, study, series = stored
    pid = volume.study.patient_id
    for node in ("orthanc", "orthanc-web"):
        _, out, _ = _cli(capsys, "pacs", "find", node, "--patient-id", pid, "--json", "--config", config)
        (match,) = [json.loads(line) for line in out]
        assert (match["StudyInstanceUID"], match["NumberOfStudyRelatedInstances"]) == (study, "12")
        assert match["PatientName"] == "SYNTHETIC^PHANTOM" and "CT" in match["ModalitiesInStudy"]
        _, out, _ = _cli(
            capsys, "pacs", "find", node, "--level", "series", "--study", study, "--json", "--config", config
        )
        assert [(m["SeriesInstanceUID"], m["Modality"]) for m in map(json.loads, out)] == [(series, "CT")]
    _, out, _ = _cli(
        capsys, "pacs", "find", "orthanc", "--level", "patient", "--patient-name", "SYNTH*", "--config", config
    )
    assert out[0].split()[:2] == ["PatientID", "PatientName"] and out[1].split()[:2] == [pid, "SYNTHETIC^PHANTOM"]


@pytest.mark.parametrize("node", ["orthanc", "orthanc-move", "orthanc-web"])  # C-GET, C-MOVE, WADO-RS
def test_retrieve_gives_the_same_series_and_leaves_no_staging_folder(config, stored, tmp_path, capsys, node):
    volume, study, series = stored
    code, out, _ = _cli(capsys, "pacs", "get", node, "--study", study, "--out", str(tmp_path), "--config", config)
    assert code == 0 and out == [str(tmp_path / study / series)]
    assert [p.name for p in tmp_path.iterdir()] == [study]  # nothing hidden left behind
    back = load(tmp_path / study / series)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.origin_lps, volume.origin_lps)
    assert sorted(pydicom.dcmread(f).SOPInstanceUID for f in back.files) == sorted(
        pydicom.dcmread(f).SOPInstanceUID for f in volume.files
    )


@pytest.fixture(scope="module")
def results(orthanc, config, stored, tmp_path_factory):
    """The study retrieved, run through random-weight bundles (`radlens infer`), its DICOM results written
    as the viewer writes them (the detector's threshold at its fifth-best score) and sent back with
    STOW-RS: (the run folder, the DICOM files written)."""
    torch = pytest.importorskip("torch")
    from inference_helpers import DETECTOR_KWARGS, SEGMENTER_KWARGS, ct_input, metadata

    from radlens.inference.bundle import save_bundle
    from radlens.inference.dicom_export import write_dicom_results
    from radlens.inference.findings import read_findings
    from radlens.inference.networks import build_network

    volume, study, series = stored
    root = tmp_path_factory.mktemp("ai")
    torch.manual_seed(0)
    same_grid = ct_input(spacing_zyx=list(volume.spacing_zyx), patch_zyx=[8, 32, 32])
    det = save_bundle(
        root / "det",
        build_network("centernet3d", **DETECTOR_KWARGS),
        metadata("rand-detector", "detection", "centernet3d", DETECTOR_KWARGS, input=same_grid),
    )
    seg = save_bundle(
        root / "seg",
        build_network("unet3d-seg", **SEGMENTER_KWARGS),
        metadata("rand-segmenter", "segmentation", "unet3d-seg", SEGMENTER_KWARGS, input=same_grid),
    )
    retrieved = root / "pacs"
    run_to_end(iter_retrieve(orthanc.dimse, orthanc.local, study, retrieved))
    run = root / "run"
    ct = load(retrieved / study / series)
    assert main(["infer", str(ct.source), "--out", str(run), "--model", str(det), "--model", str(seg)]) == 0
    findings = read_findings(run)
    fifth = sorted((d.score for d in findings.detections), reverse=True)[4]
    written = write_dicom_results(findings, ct, run / "dicom", thresholds={"rand-detector": fifth})
    assert sorted(p.name.split("-")[0] for p in written) == ["KO", "SEG", "SR"]
    assert main(["pacs", "send", "orthanc-web", str(run / "dicom"), "--config", config]) == 0
    return run, fifth, written


def test_results_sent_back_join_the_same_study_on_the_pacs(orthanc, stored, results):
    _, study, _ = stored
    (orthanc_study,) = orthanc.get("/studies")
    info = orthanc.get(f"/studies/{orthanc_study}")
    assert info["MainDicomTags"]["StudyInstanceUID"] == study
    modalities = sorted(orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in info["Series"])
    assert modalities == ["CT", "KO", "SEG", "SR"]

    # C-FIND at instance level sees the SEG as a Segmentation in that study
    from radlens.pacs.client import find
    from radlens.pacs.query import Query

    all_series = find(orthanc.dimse, orthanc.local, Query("series", {"StudyInstanceUID": study}))
    seg_series = next(m["SeriesInstanceUID"] for m in all_series if m["Modality"] == "SEG")
    (seg,) = find(
        orthanc.dimse, orthanc.local, Query("image", {"StudyInstanceUID": study, "SeriesInstanceUID": seg_series})
    )
    assert seg["SOPClassUID"] == SEG_STORAGE


def test_results_retrieved_from_the_pacs_read_back_as_the_findings_that_were_sent(orthanc, stored, results, tmp_path):
    """Through the PACS and back: the SEG's voxels equal the mask the run wrote, the SR's boxes and scores its
    findings (what OHIF or Slicer would get from the same PACS)."""
    from radlens.inference.dicom_import import find_dicom_results, read_dicom_results
    from radlens.inference.findings import read_findings

    _, study, series = stored
    run, threshold, _ = results
    run_to_end(iter_retrieve(orthanc.web, orthanc.local, study, tmp_path))
    ct = load(tmp_path / study / series)
    found = find_dicom_results(tmp_path / study, ct)
    assert sorted(pydicom.dcmread(p).Modality for p in found) == ["SEG", "SR"]
    back = read_dicom_results(found, ct)
    assert back.errors == ()
    sent = read_findings(run)
    (mine,) = sent.segmentations
    (theirs,) = back.findings.segmentations
    np.testing.assert_array_equal(theirs.mask.astype(bool), np.asarray(mine.mask) > 0)
    reported = [d for d in sent.detections if d.score >= threshold]
    assert len(reported) == 5
    assert [d.box_zyx for d in back.findings.detections] == [d.box_zyx for d in reported]
    assert [d.score for d in back.findings.detections] == pytest.approx([d.score for d in reported])
    assert [d.diameter_mm for d in back.findings.detections] == pytest.approx([d.diameter_mm for d in reported])


def test_results_whose_series_the_pacs_does_not_hold_are_refused_in_one_line(
    orthanc, config, results, tmp_path, capsys
):
    _, _, written = results
    seg = pydicom.dcmread(next(p for p in written if p.name.startswith("SEG")))
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4.5"
    seg.SOPInstanceUID = pydicom.uid.generate_uid()
    seg.save_as(tmp_path / "moved.dcm")
    before = len(orthanc.get("/instances"))
    code, _, err = _cli(capsys, "pacs", "send", "orthanc", str(tmp_path / "moved.dcm"), "--config", config)
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"radlens: error: {tmp_path / 'moved.dcm'}: references series 1.2.3.4.5, which orthanc")
    assert err[0].endswith("send that series first")
    (tmp_path / "notes.txt").write_text("not an image")
    code, _, err = _cli(capsys, "pacs", "send", "orthanc", str(tmp_path / "notes.txt"), "--config", config)
    assert code == 1 and err[0].startswith(f"radlens: error: {tmp_path / 'notes.txt'}: not a DICOM file to send:")
    assert len(err) == 1 and len(orthanc.get("/instances")) == before


@pytest.mark.parametrize("node", ["dimse", "web"])
def test_a_cancelled_retrieve_leaves_nothing_behind(orthanc, stored, tmp_path, node):
    _, study, _ = stored
    cancel = threading.Event()
    job = iter_retrieve(getattr(orthanc, node), orthanc.local, study, tmp_path, cancel=cancel)
    seen = []
    with pytest.raises(Cancelled):
        for p in job:
            if p.preview is not None:
                seen.append(p.preview.is_file())  # the first slices are readable as they arrive
                cancel.set()
    assert seen == [True]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_c_move_says_why_and_leaves_nothing_behind(orthanc, stored, tmp_path):
    """RadLens' storage SCP listens where the PACS does not send: every sub-operation fails."""
    _, study, _ = stored
    elsewhere = replace(orthanc.local, port=free_port())
    with pytest.raises(PacsError) as err:
        run_to_end(iter_retrieve(orthanc.dimse, elsewhere, study, tmp_path, method="move"))
    assert str(err.value).startswith(f"{orthanc.dimse}: C-MOVE: ") and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_send_with_dimse_reports_each_instance(orthanc, stored, phantom):
    volume, _, _ = stored
    progress = []
    job = iter_send(orthanc.dimse, orthanc.local, [phantom], cancel=None)
    while True:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            sent = stop.value
            break
    assert sent == len(volume.files) == 12
    assert [p.done for p in progress] == list(range(13)) and progress[-1].total == 12
