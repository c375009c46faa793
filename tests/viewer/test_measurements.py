"""Measurements on the real window: several per study (ruler, ellipse and polygon ROIs, angle, RECIST),
listed in their panel, jumped to, deleted and undone, exported, and kept in the review file."""

import csv
import json

import pytest

from radlens.viewer.qt import QtCore
from radlens.viewer.review import review_path
from tests.viewer.conftest import drag, widget_point

Qt = QtCore.Qt


def _click(qtbot, view, row, col):
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=widget_point(view, row, col))


def _draw_all(window, qtbot):
    """A ruler, an ellipse and a polygon in the 300 HU nodule, an angle and RECIST axes, on axial slice 20."""
    axial = window.views["axial"]
    window.study.state.set_slice("axial", 20)
    window.redraw("slices")
    window.set_tool("ruler")
    drag(qtbot, axial, widget_point(axial, 10, 10), widget_point(axial, 10, 40))
    window.set_tool("roi")
    drag(qtbot, axial, widget_point(axial, 21, 37), widget_point(axial, 28, 44))
    window.set_tool("polygon")  # on the pixels' corners: rows and columns 21..28 and 37..44
    for r, c in ((21, 37), (21, 44), (28, 44), (28, 37), (21, 37)):  # the last click closes it
        _click(qtbot, axial, r - 0.5, c - 0.5)
    window.set_tool("angle")
    for r, c in ((10, 10), (10, 30), (30, 30)):
        _click(qtbot, axial, r, c)
    window.set_tool("recist")
    for r, c in ((50, 10), (50, 30), (45, 20), (55, 20)):
        _click(qtbot, axial, r, c)


def test_several_measurements_with_their_values_in_the_panel(window, qtbot, study, shots):
    volume, _ = study
    window.set_volume(volume)
    _draw_all(window, qtbot)
    ms = window.study.state.measurements
    assert [m.kind for m in ms] == ["ruler", "ellipse", "polygon", "angle", "recist"]
    ruler, ellipse, polygon, angle, recist = (m.values for m in ms)
    assert ruler["length_mm"] == pytest.approx(30 * 0.8, abs=0.3)  # the mouse lands on whole screen pixels
    assert ellipse["mean"] == 300 and ellipse["sd"] == 0 and ellipse["min"] == ellipse["max"] == 300
    assert polygon["mean"] == 300 and polygon["pixels"] == 7 * 7 and polygon["area_mm2"] == pytest.approx(49 * 0.64)
    assert angle["angle_deg"] == pytest.approx(90.0, abs=1.0)
    assert (recist["long_mm"], recist["short_mm"]) == pytest.approx((16.0, 8.0), abs=0.3)
    panel = window.measurements_panel
    assert panel.table.rowCount() == 5
    assert [panel.table.item(i, 1).text() for i in range(5)] == ["ruler", "ellipse", "polygon", "angle", "recist"]
    assert panel.table.item(4, 2).text().startswith("RECIST long 1")
    axial = window.views["axial"]
    assert sum(path.isVisible() for path, _ in axial.measures.items) == 5
    window.grab().save(str(shots / "measurements.png"))


def test_jump_delete_undo_export_and_kept_with_the_review(window, qtbot, study, tmp_path):
    volume, _ = study
    window.set_volume(volume)
    _draw_all(window, qtbot)
    st = window.study.state
    st.set_slice("axial", 3)
    window.redraw("slices")
    panel = window.measurements_panel
    rect = panel.table.visualItemRect(panel.table.item(1, 0))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # the ellipse
    assert st.slice_index("axial") == 20 and st.selected_measurement == 2
    assert st.slice_index("coronal") in (24, 25) and st.slice_index("sagittal") in (40, 41)  # through its centre
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert [m.kind for m in st.measurements] == ["ruler", "polygon", "angle", "recist"]
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [m.kind for m in st.measurements] == ["ruler", "ellipse", "polygon", "angle", "recist"]
    assert panel.table.rowCount() == 5

    out = window.controller.measurements.export(tmp_path / "m.csv")
    rows = list(csv.DictReader(out.open()))
    assert [r["kind"] for r in rows] == [m.kind for m in st.measurements]
    assert float(next(r for r in rows if r["kind"] == "ruler")["length_mm"]) == pytest.approx(24.0, abs=0.3)
    doc = json.loads(window.controller.measurements.export(tmp_path / "m.json").read_text())
    assert len(doc["measurements"]) == 5 and doc["measurements"][0]["points_lps"]

    saved = json.loads(review_path(volume).read_text())["measurements"]
    assert len(saved) == 5
    window.set_volume(None)
    window.set_volume(volume)
    back = window.study.state.measurements
    assert [m.to_json() for m in back] == [m.to_json() for m in st.measurements]
    window.study.state.set_slice("axial", 20)
    window.redraw("slices")
    assert sum(path.isVisible() for path, _ in window.views["axial"].measures.items) == 5


def test_a_measurement_on_the_coronal_plane_comes_back_where_it_was_drawn(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    coronal = window.views["coronal"]
    window.set_tool("ruler")
    drag(qtbot, coronal, widget_point(coronal, 5, 10), widget_point(coronal, 25, 10))
    (m,) = window.study.state.measurements
    assert m.plane == "coronal" and m.values["length_mm"] == pytest.approx(20 * 2.0, abs=0.3)  # rows: 2 mm slices
    from radlens.viewer.measure import on_plane

    index, points = on_plane(m, window.study.volume, window.study.state.flip_z)
    assert index == window.study.state.slice_index("coronal")
    assert [v for p in points for v in p] == pytest.approx([5.5, 10.5, 25.5, 10.5], abs=0.1)
