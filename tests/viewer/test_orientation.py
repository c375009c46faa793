"""Views on the patient's axes, on the real window: a series acquired sagittally shows the head at the
top of the coronal view and the front at the top of the axial view; its findings, edits and their
files stay on the stored grid. Thick slabs: MIP, MinIP and mean over the chosen thickness."""

import numpy as np

from radlens.imaging.volume import Volume
from radlens.inference.findings import Detection, Findings, ModelRun, input_block
from radlens.viewer.corrections import load_corrections
from radlens.viewer.qt import QtCore
from tests.viewer.conftest import widget_point

HEAD, FRONT = 1000, 500


def sagittal_mr(tmp_path) -> Volume:
    """A SYNTHETIC sagittal series as a scanner stores it: slices from the patient's right to left, rows
    from head to feet, columns from front to back (DICOM orientation 0\\1\\0\\0\\0\\-1). A bright block at
    the top of the head (the first rows) and a dimmer one at the front (the first columns)."""
    a = np.zeros((40, 64, 48), np.int16)  # slices (x: R→L), rows (−z: S→I), columns (y: A→P)
    a[:, 2:8, 20:28] = HEAD
    a[:, 30:38, 2:6] = FRONT
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: x, y, z index axes
    return Volume(
        a, (1.5, 1.0, 1.0), (-30.0, -24.0, 60.0), direction, modality="MR", series_uid="1.2.3.sag",
        source=str(tmp_path / "sag.nii.gz"), description="SYNTHETIC sagittal T1",
    )  # fmt: skip


def _rows_of(image: np.ndarray, value: int) -> np.ndarray:
    return np.flatnonzero((np.asarray(image) == value).any(axis=1))


def test_a_sagittal_series_shows_head_up_in_coronal_and_front_up_in_axial(window, qtbot, tmp_path, shots):
    vol = sagittal_mr(tmp_path)
    window.set_volume(vol)
    st = window.study.state
    assert st.shape_zyx == (64, 48, 40)  # displayed: slices head→feet, rows front→back, columns right→left
    st.set_cursor((34, 24, 20))  # an axial slice through the front block, a coronal one through the head block
    window.redraw("slices")
    coronal, axial, sagittal = (window.views[p] for p in ("coronal", "axial", "sagittal"))
    head_rows = _rows_of(coronal.image_item.image, HEAD)
    assert head_rows.min() == 2 and head_rows.max() == 7  # at the top of a 64-row image
    front_rows = _rows_of(axial.image_item.image, FRONT)
    assert front_rows.min() == 2 and front_rows.max() == 5  # at the top of a 48-row image
    assert coronal.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert axial.letters == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert sagittal.letters == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    window.grab().save(str(shots / "sagittal_series.png"))
    # the probe names the voxel as stored
    qtbot.mouseMove(axial.viewport(), widget_point(axial, 3, 20))
    assert "voxel z20 y34 x3 " in window.probe_label.text()


def test_findings_and_edits_of_a_sagittal_series_map_exactly_to_and_from_its_grid(window, qtbot, tmp_path):
    vol = sagittal_mr(tmp_path)
    box = (10, 2, 20, 30, 8, 28)  # stored index box around the head block
    centre = (19.5, 4.5, 23.5)
    det = Detection(1, "det", "lesion", 0.9, box, centre, tuple(vol.index_to_lps(centre)), 8.0)
    window.set_volume(vol)
    window.set_findings(Findings(input_block(vol), models=(ModelRun("det", "1", "detection", threshold=0.5),),
                                 detections=(det,)))  # fmt: skip
    st = window.study.state
    st.set_cursor((5, 24, 20))
    window.redraw("slices")
    (row,) = st.rows
    assert row.box_zyx == (2, 20, 10, 8, 28, 30)  # (S→I rows, A→P columns, R→L slices) → (z, y, x) displayed
    coronal = window.views["coronal"]
    ((_, fid, _, rect),) = coronal.visible_boxes
    assert fid == 1 and rect == (2, 10, 8, 30)  # rows 2..8 at the top, columns 10..30
    window.set_tool("brush")
    window.edit_panel.radius.setValue(0.5)  # one voxel
    qtbot.mouseClick(coronal.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=widget_point(coronal, 4, 15))
    _, masks = load_corrections(vol)  # the file beside the study: on the stored grid
    assert np.argwhere(masks["lesion"]).tolist() == [[15, 4, 24]]  # displayed (z4, y24, x15) as stored


def test_thick_slab_mip_minip_and_mean(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    st = window.study.state
    st.set_slice("axial", 16)  # the nodule (300 HU) is on slices 18..23, 2 mm apart
    window.redraw("slices")
    axial = window.views["axial"]
    assert np.asarray(axial.image_item.image).max() == 40
    window.slab.mode.setCurrentIndex(1)  # MIP
    window.slab.thickness.setValue(10.0)  # 5 slices: 14..18
    assert np.asarray(axial.image_item.image).max() == 300
    assert "MIP 10 mm" in axial.corners["bl"]
    window.slab.thickness.setValue(6.0)  # 3 slices: 15..17
    assert np.asarray(axial.image_item.image).max() == 40
    window.slab.thickness.setValue(10.0)
    window.slab.mode.setCurrentIndex(3)  # mean: one of five slices at 300 where the others are 40
    assert np.asarray(axial.image_item.image)[25, 41] == (300 + 4 * 40) / 5
    window.slab.mode.setCurrentIndex(2)  # MinIP: the lung's −800 wins over the body
    assert np.asarray(axial.image_item.image)[25, 41] == 40 and np.asarray(axial.image_item.image).min() == -1000
    window.slab.mode.setCurrentIndex(0)
    assert np.asarray(axial.image_item.image).max() == 40 and "MIP" not in axial.corners["bl"]
