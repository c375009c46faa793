"""A study-level classifier in the window: its probability in the AI panel, its per-slice curve beside the
slice slider (a click near a peak goes to the peak), its heat map a layer marked as an approximate
explanation."""

from __future__ import annotations

import numpy as np
import pytest

from radlens.viewer.qt import QtCore, QtWidgets
from radlens.viewer.slice_curve import peak_near

Qt = QtCore.Qt


def _click_curve(qtbot, curve, slice_index: float, value: float = 0.5) -> None:
    plot = curve.plot
    vb = plot.getPlotItem().vb
    scene = vb.mapViewToScene(QtCore.QPointF(slice_index, value))
    point = plot.mapFromScene(scene)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_peak_near_snaps_to_the_highest_point_within_reach():
    curve = np.array([0.1, 0.2, 0.9, 0.3, 0.1, 0.1, 0.1, 0.1, 0.6, 0.2])
    assert peak_near(curve, 4) == 2  # 3 slices away: the peak
    assert peak_near(curve, 6) == 8
    assert peak_near(curve, 0, snap=0) == 0
    assert peak_near(curve, 99) == 8  # past the end: the last slices


def test_probability_curve_and_heat_map_of_a_classifier(window, qtbot, study, shots):
    volume, _ = study
    window.set_volume(volume)
    qtbot.wait(20)
    st = window.study.state
    curve = window.slice_curve
    assert curve.isVisible()
    per_slice = np.asarray(st.findings.classifications[0].per_slice)
    peak = int(np.argmax(per_slice))
    assert peak == 21
    # The AI panel says the study's probability, the curve has one point per axial slice.
    assert "malignant: 70 %" in window.ai_panel.results.text()
    [(_, shown)] = curve.curves
    assert len(shown) == st.count("axial") == 40
    assert curve.cursor.value() == st.slice_index("axial") == 20

    # A click two slices off the peak goes to the peak, and the axial view shows that slice.
    _click_curve(qtbot, curve, peak - 2.2)
    qtbot.wait(20)
    assert st.slice_index("axial") == peak
    np.testing.assert_array_equal(window.views["axial"].image_item.image, volume.array[peak])
    assert curve.cursor.value() == peak
    # Far from any peak, a click on a flat stretch goes to the slice clicked.
    _click_curve(qtbot, curve, 2.0)
    qtbot.wait(20)
    assert st.slice_index("axial") == pytest.approx(2, abs=1)

    # The heat map's layer: opacity, colour bar, and the note that it is an approximate explanation.
    controls = [c for k, c in window.layers_panel.controls.items() if k.kind == "classification"]
    assert len(controls) == 1
    texts = [w.text() for w in controls[0].findChildren(QtWidgets.QLabel)]
    assert any("approximate explanation" in t for t in texts)
    window.grab().save(str(shots / "slice_curve.png"))


def test_no_curve_without_a_classification(window, qtbot, study):
    volume, _folder = study
    window.set_volume(volume)
    qtbot.wait(20)
    f = window.study.state.findings
    window.set_findings(type(f)(f.input, f.device, f.models, f.detections, f.segmentations, ()))
    qtbot.wait(20)
    assert not window.slice_curve.isVisible()
    assert not window.ai_panel.results.isVisible()
