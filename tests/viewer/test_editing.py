"""Correcting the AI on the real window: brush, eraser, value range, fill, boxes, a lesion from a click,
one undo stack, and the edits saved beside the study after each one."""

import numpy as np
import pytest

from radlens.viewer.corrections import READER, edits_path
from radlens.viewer.qt import QtCore
from tests.viewer.conftest import FAINT, NODULE, drag, key_of_detection, widget_point

Qt = QtCore.Qt


def _open(window, qtbot, volume):
    window.set_volume(volume)
    qtbot.wait(20)
    return window.study.state


def _disc(shape, spacing, centre, radius_mm, axis=None):
    """The voxels within radius_mm of centre (on its slice normal to axis, or in 3D), computed apart."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    out = d2 <= radius_mm**2
    if axis is not None:
        out &= grids[axis] == centre[axis]
    return out


def _mask(window, label="nodule"):
    return window.study.corrections.masks[label]


def test_a_brush_dab_paints_exactly_its_disc_and_undo_takes_exactly_it_back(window, qtbot, study):
    volume, _ = study
    st = _open(window, qtbot, volume)
    ai = np.asarray(st.layers["seg:nodule-segmenter:nodule"].data.array).copy()
    window.set_tool("brush")
    window.edit_panel.radius.setValue(2.0)
    axial = window.views["axial"]
    z = st.slice_index("axial")
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=widget_point(axial, 40, 20))
    painted = _mask(window) & ~ai
    assert np.array_equal(painted, _disc(volume.shape_zyx, volume.spacing_zyx, (z, 40, 20), 2.0, axis=0))
    assert np.array_equal(_mask(window) & ai, ai)  # the AI's mask was copied, nothing of it lost
    assert not st.layers["seg:nodule-segmenter:nodule"].visible  # the reader's copy is drawn instead
    assert "reader" in {k.model for k in st.layers if st.shown(k)}
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo
    assert "nodule" not in window.study.corrections.masks  # back to the AI's own mask
    window.controller.editor.redo()
    assert np.array_equal(_mask(window) & ~ai, painted)


def test_a_stroke_paints_along_the_drag_within_the_value_range_and_undo_restores_every_voxel(
    window, qtbot, study, shots
):
    volume, _ = study
    st = _open(window, qtbot, volume)
    window.set_tool("brush")
    window.edit_panel.radius.setValue(3.0)
    window.controller.editor.fill_holes()  # an edit first, so the mask exists before the stroke
    before = _mask(window).copy()
    window.edit_panel.limit.setChecked(True)
    window.edit_panel.low.setValue(-1000)
    window.edit_panel.high.setValue(-500)  # the lung only (-800), not the body (40) beside it
    axial = window.views["axial"]
    z = st.slice_index("axial")
    drag(qtbot, axial, widget_point(axial, 30, 22), widget_point(axial, 30, 36))  # across the lung's edge at x 30
    changed = np.argwhere(_mask(window) != before)
    assert len(changed) > 20
    assert set(changed[:, 0]) == {z}
    values = volume.array[tuple(changed.T)]
    assert np.all(values == -800)  # nothing outside the range, though the drag went into the body
    assert changed[:, 2].max() == 29 and changed[:, 2].min() <= 22 - 3 + 1
    axial.grab().save(str(shots / "brush_stroke.png"))
    window.controller.editor.undo()
    assert np.array_equal(_mask(window), before)


def test_eraser_sphere_and_fill_holes(window, qtbot, study):
    volume, _ = study
    st = _open(window, qtbot, volume)
    window.set_tool("eraser")
    window.edit_panel.sphere.setChecked(True)
    window.edit_panel.radius.setValue(2.5)
    st.set_slice("axial", 21)
    window.redraw("slices")
    axial = window.views["axial"]
    ai = np.asarray(st.layers["seg:nodule-segmenter:nodule"].data.array).copy()
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=widget_point(axial, 25, 41))
    erased = ai & ~_mask(window)
    ball = _disc(volume.shape_zyx, volume.spacing_zyx, (21, 25, 41), 2.5)
    assert np.array_equal(erased, ball & ai) and len(set(np.argwhere(erased)[:, 0])) == 3  # slices 20, 21, 22
    window.set_tool("wl")
    window.controller.editor.fill_holes()  # the hole the sphere left on this slice is closed again
    assert np.array_equal(_mask(window)[21], ai[21])
    assert not np.array_equal(_mask(window), ai)  # slices 20 and 22 keep theirs
    window.controller.editor.undo()
    assert np.array_equal(_mask(window), ai & ~ball)


def test_boxes_are_added_resized_and_deleted_and_stay_deleted_after_a_rerun(window, qtbot, study, tmp_path):
    volume, _ = study
    st = _open(window, qtbot, volume)
    window.set_tool("box")
    axial = window.views["axial"]
    st.set_slice("axial", 10)
    window.redraw("slices")
    drag(qtbot, axial, widget_point(axial, 50, 45), widget_point(axial, 58, 55))
    mine = [r for r in st.rows if READER in r.models]
    assert len(mine) == 1 and mine[0].box_zyx[1:3] == (50, 45) and mine[0].box_zyx[4:6] == (59, 56)
    assert mine[0].box_zyx[0] < 10 < mine[0].box_zyx[3]
    # resize the nodule's AI box by its top-left corner
    st.set_slice("axial", 20)
    window.redraw("slices")
    z0, y0, x0, z1, y1, x1 = NODULE
    drag(qtbot, axial, widget_point(axial, y0, x0), widget_point(axial, y0 - 4, x0 - 4))
    (row,) = [r for r in st.rows if r.masked]  # the nodule now has the reader's box instead of the AI's
    boxes = {layer.model: fid for layer, fid, _ in row.boxes}
    assert list(boxes) == [READER]
    det = next(d for d in st.findings.detections if d.id == boxes[READER])
    assert det.box_zyx == (z0, y0 - 4, x0 - 4, z1, y1, x1)
    # delete the faint AI box (shown once its threshold is lowered)
    window.layers_panel.controls["det:nodule-detector:nodule"].threshold.setValue(2000)
    faint = key_of_detection(st, 2)
    window.controller.select_finding(faint)
    qtbot.keyClick(window, Qt.Key.Key_Delete)
    assert st.row(faint) is None and len(st.visible_rows()) == 3  # nodule, reader's box, classification
    assert edits_path(volume).is_file()  # written after the edit, not at exit
    # the models run again (same results, ids renumbered): the deleted box stays deleted
    window.controller.set_findings(window.study.ai.merged(window.study.ai))
    assert FAINT not in {r.box_zyx for r in st.rows} and len(st.visible_rows()) == 3
    # a restart (a crash) brings every edit back from the file beside the study
    window.set_volume(None)
    st = _open(window, qtbot, volume)
    assert not any(k.kind == "detection" and k.model != READER for k in st.layers)  # both AI boxes gone
    assert len(st.visible_rows()) == 3 and sum(READER in r.models for r in st.rows) == 2
    for _ in range(3):
        window.controller.editor.undo()  # nothing to undo after a restart: the history is per session
    assert window.message.text() == "nothing to undo"


def test_a_click_on_a_phantom_nodule_segments_it(window, qtbot, tmp_path):
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_to_end
    from radlens.imaging.volume_io import read_volume

    run_to_end(iter_write_phantoms(tmp_path / "ph", kind="chest-ct", cases=1, seed=0))
    volume = read_volume(tmp_path / "ph" / "imagesTr" / "chest_000_0000.nii.gz")
    labels = read_volume(tmp_path / "ph" / "labelsTr" / "chest_000.nii.gz").array
    import json

    nodules = json.loads((tmp_path / "ph" / "labelsTr" / "chest_000.json").read_text())["nodules"]
    nodule = max(nodules, key=lambda n: n["diameter_mm"])  # the 21 mm solid nodule beside a vessel
    st = _open(window, qtbot, volume)
    z, y, x = (round(v) for v in nodule["center_zyx"])
    window.controller.click("axial", y, x)
    st.set_slice("axial", z)
    window.redraw("slices")
    window.set_tool("grow")
    axial = window.views["axial"]
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=widget_point(axial, y, x))
    qtbot.waitUntil(lambda: window.study.corrections.masks.get("lesion") is not None, timeout=60000)
    got = window.study.corrections.masks["lesion"]
    truth = labels == nodule["id"]
    dice = 2 * (got & truth).sum() / (got.sum() + truth.sum())
    assert dice >= 0.8, dice
    (row,) = [r for r in st.rows if READER in r.models]  # a new finding, measured
    assert row.lesion.long_mm == pytest.approx(nodule["diameter_mm"], rel=0.25)
    assert "segmented" in window.message.text()


def test_an_unreadable_edits_file_is_ignored_and_the_study_opens(window, qtbot, study):
    volume, _ = study
    edits_path(volume).write_bytes(b"not an npz")
    st = _open(window, qtbot, volume)
    assert window.study.corrections.empty() and len(st.rows) == 3
