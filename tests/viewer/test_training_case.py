"""The learning loop in-process: a corrected study saved as a training case (nnU-Net layout) trains with
`radlens train segment ... --init BUNDLE`, which starts from the bundle's network and weights."""

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.imaging.volume_io import read_volume  # noqa: E402
from radlens.viewer.qt import QtCore, QtWidgets  # noqa: E402
from tests.inference.inference_helpers import random_bundles  # noqa: E402
from tests.viewer.conftest import widget_point  # noqa: E402


def _save_case(window, qtbot, monkeypatch, folder) -> None:
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    qtbot.mouseClick(window.edit_panel.save_case_button, QtCore.Qt.MouseButton.LeftButton)


def test_a_corrected_study_saved_as_a_case_fine_tunes_a_bundle(window, qtbot, study, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    volume, _ = study
    window.set_volume(volume)
    st = window.study.state
    window.set_tool("brush")  # the reader adds to the AI's mask, then rejects the faint box
    window.edit_panel.radius.setValue(2.0)
    axial = window.views["axial"]
    qtbot.mouseClick(axial.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=widget_point(axial, 40, 20))
    corrected = window.study.corrections.masks["nodule"].copy()
    cases = tmp_path / "cases"
    _save_case(window, qtbot, monkeypatch, cases)
    assert window.message.text().endswith("(1 training cases)")
    meta = json.loads((cases / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "nodule": 1} and meta["numTraining"] == 1
    (image,) = (cases / "imagesTr").iterdir()
    case = image.name.removesuffix("_0000.nii.gz")
    label = read_volume(cases / "labelsTr" / f"{case}.nii.gz")
    assert label.same_grid(volume) and np.array_equal(label.array == 1, corrected)
    assert np.array_equal(read_volume(image).array, volume.array)
    lesions = json.loads((cases / "labelsTr" / f"{case}.json").read_text())["lesions"]
    assert len(lesions) == 2  # the nodule and the painted spot; the faint box is under its threshold
    _save_case(window, qtbot, monkeypatch, cases)  # saved again: the case is replaced, not added
    assert json.loads((cases / "dataset.json").read_text())["numTraining"] == 1
    other = dataclasses.replace(volume, series_uid="1.2.3.other", array=volume.array.copy())
    window.set_volume(other)
    window.set_findings(st.findings)
    _save_case(window, qtbot, monkeypatch, cases)
    assert json.loads((cases / "dataset.json").read_text())["numTraining"] == 2

    from radlens.cli import main
    from radlens.inference.bundle import load_bundle, read_metadata

    _, seg = random_bundles(tmp_path / "models")
    out = tmp_path / "tuned"
    argv = ["train", "segment", str(cases), "--out", str(out), "--init", str(seg), "--epochs", "1",
            "--iterations", "2", "--batch", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    tuned, start = read_metadata(out), read_metadata(seg)
    assert (tuned.arch, tuned.arch_kwargs, tuned.input.patch_zyx) == (
        start.arch,
        start.arch_kwargs,
        start.input.patch_zyx,
    )
    assert tuned.training["init"]["sha256"] == start.sha256
    before, after = load_bundle(seg).network.state_dict(), load_bundle(out).network.state_dict()
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_init_refuses_a_bundle_of_another_task_or_labels(tmp_path, capsys):
    from radlens.cli import main
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_to_end

    det, seg = random_bundles(tmp_path / "models")
    brain = run_to_end(
        iter_write_phantoms(tmp_path / "brain", kind="brain-mr", cases=2, seed=0, shape_zyx=(16, 32, 32))
    )
    assert main(["train", "segment", str(brain), "--out", str(tmp_path / "x"), "--init", str(det)]) == 1
    assert "a detection bundle cannot start a segmentation training" in capsys.readouterr().err
    assert main(["train", "segment", str(brain), "--out", str(tmp_path / "x"), "--init", str(seg)]) == 1
    assert "the bundle segments ['nodule'], the dataset labels ['lesion']" in capsys.readouterr().err
