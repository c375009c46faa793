"""The AI panel: models run in the background worker, stream into the overlays, are kept per series,
and a result for a series that is no longer shown is dropped."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.viewer.qt import QtCore  # noqa: E402
from tests.inference.inference_helpers import random_bundles, sphere_ct  # noqa: E402


@pytest.fixture
def models(tmp_path):
    torch.set_num_threads(1)
    random_bundles(tmp_path / "models")
    return tmp_path / "models"


def _only_test_bundles(panel) -> None:
    """Shipped bundles are listed too; the tests run only their tiny random-weight ones."""
    for i in range(panel.models.count()):
        item = panel.models.item(i)
        if not item.text().startswith("rand-"):
            item.setCheckState(QtCore.Qt.CheckState.Unchecked)


def _volume(tmp_path, uid="1.2.3.synthetic"):
    return dataclasses.replace(sphere_ct(), source=str(tmp_path / f"{uid}.nii.gz"), series_uid=uid)


def test_models_run_in_background_and_results_are_kept_per_series(window, qtbot, tmp_path, models):
    window.ai_panel.model_dirs = (models,)
    vol = _volume(tmp_path)
    window.set_volume(vol)
    panel = window.ai_panel
    assert {"rand-detector", "rand-segmenter"} <= {b.name for b in panel.selected_bundles()}
    _only_test_bundles(panel)
    streamed = []
    window.runner.progressed.connect(lambda ev: streamed.append(ev.progress.preview is not None))
    qtbot.mouseClick(panel.run_button, QtCore.Qt.MouseButton.LeftButton)
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=120000)
    assert sum(streamed) == 2  # one preview per finished model
    findings = window.controller.models.results[vol.series_uid]
    assert {m.name for m in findings.models} == {"rand-detector", "rand-segmenter"}
    assert window.study.findings is findings
    assert panel.device.text() == "device: cpu"
    assert "machine-generated" in panel.status.text()
    # reopening the series brings the results back without running the models again
    window.set_volume(None)
    window.set_volume(vol)
    assert window.study.findings is findings and not window.runner.busy("infer")


def test_a_result_for_a_series_no_longer_shown_is_dropped(window, qtbot, tmp_path, models):
    window.ai_panel.model_dirs = (models,)
    first = _volume(tmp_path, "1.2.3.first")
    window.set_volume(first)
    _only_test_bundles(window.ai_panel)
    window.controller.models.run()
    window.set_volume(_volume(tmp_path, "1.2.3.second"))  # cancels the first series' job
    assert window.runner.wait_idle(120000)
    qtbot.waitUntil(lambda: window.runner.dropped >= 1, timeout=10000)
    assert window.study.volume.series_uid == "1.2.3.second"
    assert window.study.findings is None and "1.2.3.first" not in window.controller.models.results


def test_run_on_open_starts_the_models(window, qtbot, tmp_path, models):
    window.ai_panel.model_dirs = (models,)
    window.ai_panel.run_on_open.setChecked(True)
    window.set_volume(_volume(tmp_path))
    assert window.runner.busy("infer")
    window.controller.models.cancel()
    assert window.ai_panel.run_button.isEnabled() and window.ai_panel.status.text() == "cancelled"
    assert window.runner.wait_idle(120000)


def test_a_failing_model_shows_its_error_and_the_study_stays(window, qtbot, tmp_path, models):
    weights = models / "det" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # no longer matches its sha256
    window.ai_panel.model_dirs = (models,)
    vol = _volume(tmp_path)
    window.set_volume(vol)
    _only_test_bundles(window.ai_panel)
    window.controller.models.run()
    qtbot.waitUntil(lambda: window.ai_panel.run_button.isEnabled(), timeout=120000)
    status = window.ai_panel.status.text()
    assert status.startswith("model failed:") and "sha256" in status and "\n" not in status
    assert window.study is not None and window.study.volume is vol


def test_the_reader_says_what_a_series_without_a_modality_is_and_the_fitting_models_are_listed(window, qtbot, tmp_path):
    from radlens.imaging.volume import Volume
    from radlens.imaging.volume_io import read_volume, write_volume

    brain = np.zeros((20, 48, 48), np.float32)
    brain[4:16, 8:40, 8:40] = 600.0  # an MR's arbitrary units: not CT by its values
    write_volume(Volume(brain, (3.0, 1.0, 1.0)), tmp_path / "head.nrrd")
    window.set_volume(read_volume(tmp_path / "head.nrrd"))
    panel = window.ai_panel
    assert panel.modality.currentText() == "OT" and panel.models.count() == 0
    assert panel.status.text() == "no model for OT: say what the series is above"
    panel.modality.setFocus()
    qtbot.keyClick(panel.modality, QtCore.Qt.Key.Key_Up)  # OT → MR, as a reader picks it
    assert window.study.volume.modality == "MR" and panel.modality.currentText() == "MR"
    assert "brain-mr-lesion-segmenter" in [b.name for b in panel.selected_bundles()]
    assert window.windowTitle().endswith("(MR)")
    assert "set to MR by the reader" in window.message.text()


def test_the_reader_says_an_mr_s_contrast_and_the_models_are_checked_against_it(window, qtbot, tmp_path):
    from radlens.imaging.phantom import make_brain_mr
    from radlens.imaging.volume_io import read_volume, write_volume
    from radlens.inference.applicability import check
    from radlens.inference.bundle import read_metadata

    write_volume(make_brain_mr(0).volume, tmp_path / "brain.nii.gz")  # a NIfTI names no contrast
    window.set_volume(read_volume(tmp_path / "brain.nii.gz"))
    panel = window.ai_panel
    assert panel.modality.currentText() == "MR"
    panel.modality.setFocus()
    for _ in range(3):  # MR → MR FLAIR-like → MR T2-like → MR T1-like, as a reader steps through them
        qtbot.keyClick(panel.modality, QtCore.Qt.Key.Key_Up)
    assert panel.modality.currentText() == "MR T1-like"
    assert window.study.volume.modality == "MR" and window.study.volume.contrast == "T1-like"
    assert window.message.text().endswith("brain.nii.gz: 128 × 192 × 192; read as MR, set to MR T1-like by the reader")
    qtbot.keyClick(panel.modality, QtCore.Qt.Key.Key_Down)
    assert window.study.volume.contrast == "T2-like"
    (segmenter,) = [b for b in panel.selected_bundles() if b.name == "brain-mr-lesion-segmenter"]
    assert check(window.study.volume, read_metadata(segmenter.path)).reasons == (
        "refused: brain-mr-lesion-segmenter reads T1-like contrast only; the reader says this series is T2-like",
    )


def test_a_model_that_refuses_the_series_says_why_in_the_ai_panel(window, qtbot, tmp_path):
    from radlens.imaging.phantom_independent import make_independent_brain_mr
    from radlens.imaging.volume_io import read_volume, write_volume

    write_volume(make_independent_brain_mr(0, (40, 96, 96)).volume, tmp_path / "t2.nii.gz")
    window.set_volume(read_volume(tmp_path / "t2.nii.gz"))
    panel = window.ai_panel
    for i in range(panel.models.count()):
        item = panel.models.item(i)
        if not item.text().startswith("brain-mr-lesion-segmenter "):
            item.setCheckState(QtCore.Qt.CheckState.Unchecked)
    qtbot.mouseClick(panel.run_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text().startswith("done"), timeout=120000)
    done, refused = panel.status.text().split("\n")
    assert done == "done — AI results: machine-generated, not a diagnosis"
    assert refused.startswith(
        "refused: brain-mr-lesion-segmenter reads T1-like contrast only; this series looks T2-like"
    )
    assert window.study.ai is not None and not window.study.ai.segmentations


def test_running_the_models_twice_leaves_one_finding_per_lesion(window, qtbot, tmp_path, models):
    window.ai_panel.model_dirs = (models,)
    vol = _volume(tmp_path)
    window.set_volume(vol)
    panel = window.ai_panel
    _only_test_bundles(panel)
    seen = []
    for _ in range(2):
        qtbot.mouseClick(panel.run_button, QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=120000)
        st = window.study.state
        seen.append(([str(r.key) for r in st.rows], window.findings_panel.table.rowCount()))
    findings = window.controller.models.results[vol.series_uid]
    assert sorted(m.name for m in findings.models) == ["rand-detector", "rand-segmenter"]
    assert seen[1] == seen[0]  # the same findings, not a second copy of each
    boxes = [(layer, fid) for r in window.study.state.rows for layer, fid, _ in r.boxes]
    assert len(boxes) == len(set(boxes)) == len(findings.detections)  # each box is in exactly one finding
