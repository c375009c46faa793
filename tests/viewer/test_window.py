"""The real main window, offscreen: open, scroll, window, planes, layers, findings, review, export."""

import numpy as np
import pytest

from radlens.imaging.volume import Window
from radlens.imaging.windowing import preset
from radlens.inference.findings import read_findings
from radlens.viewer.qt import QtCore, QtGui, pg
from radlens.viewer.state import ViewState, to_plane
from tests.viewer.conftest import NODULE, key_of_detection

Qt = QtCore.Qt


def _open(window, qtbot, volume):
    window.set_volume(volume)
    qtbot.wait(20)
    return window.study.state


def _pixel(img: QtGui.QImage, x: float, y: float) -> tuple[int, int, int]:
    c = img.pixelColor(int(x), int(y))
    return c.red(), c.green(), c.blue()


def _scene_to_widget(view, x_mm, y_mm):
    p = view.mapFromScene(view.vb.mapViewToScene(QtCore.QPointF(x_mm, y_mm)))
    return p.x(), p.y()


def test_row_major_pixel_lands_at_x_col_y_row(qtbot, shots):
    """pyqtgraph is configured row-major: pixel (row 5, column 50) is drawn at x=50, y=5."""
    from radlens.imaging.volume import Volume
    from radlens.viewer.slice_view import SliceView

    a = np.zeros((1, 20, 80), np.int16)
    a[0, 5, 50] = 1000
    view = SliceView("axial")
    qtbot.addWidget(view)
    view.resize(400, 100)
    view.show()
    qtbot.waitExposed(view)
    st = ViewState.for_volume(Volume(a), Window(100, 50))
    view.set_volume(Volume(a), st)
    view.set_crosshair_visible(False)
    assert pg.getConfigOption("imageAxisOrder") == "row-major"
    assert view.image_item.image.shape == (20, 80)
    img = view.grab().toImage()
    x, y = _scene_to_widget(view, 50.5, 5.5)
    assert _pixel(img, x, y)[0] > 200
    for col, row in ((48.5, 5.5), (52.5, 5.5), (50.5, 3.5), (50.5, 7.5)):  # neighbours stay dark
        assert _pixel(img, *_scene_to_widget(view, col, row))[0] < 50
    img.save(str(shots / "row_major.png"))


def test_open_scroll_keys_and_wheel(window, qtbot, study, shots):
    volume, _ = study
    st = _open(window, qtbot, volume)
    axial = window.views["axial"]
    assert st.slice_index("axial") == 20
    qtbot.keyClick(axial, Qt.Key.Key_Up)
    assert st.slice_index("axial") == 21
    np.testing.assert_array_equal(axial.image_item.image, volume.array[21])
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    assert st.slice_index("axial") == 11
    qtbot.keyClick(axial, Qt.Key.Key_End)
    assert st.slice_index("axial") == 39
    qtbot.keyClick(axial, Qt.Key.Key_Home)
    assert st.slice_index("axial") == 0
    # the mouse wheel scrolls the plane under the cursor
    center = axial.viewport().rect().center()
    ev = QtGui.QWheelEvent(
        QtCore.QPointF(center),
        QtCore.QPointF(axial.mapToGlobal(center)),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtCore.QCoreApplication.sendEvent(axial.viewport(), ev)
    assert st.slice_index("axial") == 1
    assert "axial 2/40" in axial.corners["bl"]
    # aspect: coronal rows are 2.0 mm, columns 0.8 mm
    cor = window.views["coronal"]
    r = cor.image_item.mapRectToView(cor.image_item.boundingRect())
    assert (r.width(), r.height()) == pytest.approx((64 * 0.8, 40 * 2.0), rel=1e-5)
    window.grab().save(str(shots / "window_open.png"))


def test_window_level_drag_and_presets(window, qtbot, study):
    volume, _ = study
    st = _open(window, qtbot, volume)
    axial = window.views["axial"]
    assert st.window == preset("mediastinum")  # CT default
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert st.window == preset("lung")
    assert tuple(axial.image_item.levels) == (preset("lung").low, preset("lung").high)
    vp = axial.viewport()
    start = vp.rect().center()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    for i in range(1, 6):
        qtbot.mouseMove(vp, start + QtCore.QPoint(10 * i, 0))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=start + QtCore.QPoint(50, 0))
    assert st.window.width > preset("lung").width
    assert tuple(axial.image_item.levels) == pytest.approx((st.window.low, st.window.high))
    assert tuple(window.views["coronal"].image_item.levels) == pytest.approx((st.window.low, st.window.high))
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert st.invert and axial.image_item.lut is not None


def test_switch_plane_and_layout(window, qtbot, study):
    volume, _ = study
    _open(window, qtbot, volume)
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert window.layout() == "single"
    assert window.views["axial"].isVisible() and not window.views["coronal"].isVisible()
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.views["coronal"].isVisible() and not window.views["axial"].isVisible()
    window.set_volume(volume)  # another series keeps the chosen layout and plane
    assert window.layout() == "single" and window.controller.active_plane() == "coronal"
    qtbot.keyClick(window.views["coronal"], Qt.Key.Key_Down)
    assert window.study.state.slice_index("coronal") == 31
    qtbot.keyClick(window, Qt.Key.Key_1)  # a preset while the other views are hidden
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert all(v.isVisible() for v in window.views.values())
    for v in window.views.values():  # they catch up when shown again
        assert tuple(v.image_item.levels) == (preset("lung").low, preset("lung").high)
    np.testing.assert_array_equal(window.views["coronal"].image_item.image, volume.array[:, 31][::-1])


def test_click_in_one_plane_moves_the_others(window, qtbot, study):
    volume, _ = study
    st = _open(window, qtbot, volume)
    axial = window.views["axial"]
    x, y = _scene_to_widget(axial, 33.5 * 0.8, 10.5 * 0.8)
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=QtCore.QPoint(round(x), round(y)))
    assert st.cursor_zyx == [20, 10, 33]
    assert window.views["coronal"].image_item.image.shape == (40, 64)
    np.testing.assert_array_equal(window.views["coronal"].image_item.image, volume.array[:, 10][::-1])
    np.testing.assert_array_equal(window.views["sagittal"].image_item.image, volume.array[:, :, 33][::-1])


def test_layers_threshold_and_global_toggle(window, qtbot, study):
    volume, _folder = study
    st = _open(window, qtbot, volume)  # findings.json beside the study comes back by itself
    assert set(st.layers) == {
        "det:nodule-detector:nodule",
        "seg:nodule-segmenter:nodule",
        "heat:nodule-classifier:malignant",
    }
    axial = window.views["axial"]
    st.set_slice("axial", 6)  # the faint (0.30) box's slice
    window.redraw("slices")
    assert axial.visible_boxes == []
    controls = window.layers_panel.controls["det:nodule-detector:nodule"]
    controls.threshold.setValue(2500)
    assert [b[1] for b in axial.visible_boxes] == [2]
    # the nodule (its box and its mask: one finding), the faint box, the classification
    assert window.findings_panel.table.rowCount() == 3
    assert controls.threshold_label.text() == "0.25"
    controls.threshold.setValue(9998)
    assert controls.threshold_label.text() == "0.9998" and axial.visible_boxes == []
    controls.threshold.setValue(9500)
    assert window.findings_panel.table.rowCount() == 2  # the nodule stays: its mask outlines it
    st.set_slice("axial", 20)
    window.redraw("slices")
    assert axial.visible_boxes == []
    controls.threshold.setValue(5000)
    assert [b[1] for b in axial.visible_boxes] == [1]
    mask_item = axial.mask_items["seg:nodule-segmenter:nodule"]
    assert mask_item.isVisible()
    assert "nodule-detector v1.0.0" in axial.corners["tr"] and "machine-generated" in axial.corners["tr"]
    qtbot.keyClick(window, Qt.Key.Key_A)
    assert not mask_item.isVisible() and axial.visible_boxes == []
    assert "machine-generated" not in axial.corners["tr"]
    qtbot.keyClick(window, Qt.Key.Key_A)
    assert mask_item.isVisible()
    window.layers_panel.controls["seg:nodule-segmenter:nodule"].check.setChecked(False)
    assert not mask_item.isVisible()
    window.layers_panel.controls["seg:nodule-segmenter:nodule"].opacity.setValue(20)
    assert st.layers["seg:nodule-segmenter:nodule"].opacity == pytest.approx(0.2)


def test_click_finding_jumps_in_all_planes_and_box_is_drawn(window, qtbot, study, shots):
    volume, _ = study
    st = _open(window, qtbot, volume)
    window.layers_panel.controls["heat:nodule-classifier:malignant"].check.setChecked(False)
    window.layers_panel.controls["seg:nodule-segmenter:nodule"].check.setChecked(False)
    table = window.findings_panel.table
    row = window.findings_panel.keys.index(key_of_detection(st))
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert st.selected == key_of_detection(st)
    assert (st.slice_index("axial"), st.slice_index("coronal"), st.slice_index("sagittal")) == (20, 24, 40)
    for plane in ("axial", "coronal", "sagittal"):
        assert [b[1] for b in window.views[plane].visible_boxes] == [1]
    axial = window.views["axial"]
    qtbot.wait(20)
    img = axial.grab().toImage()
    img.save(str(shots / "finding_axial.png"))
    _z0, y0, x0, _z1, y1, _x1 = NODULE
    # the box's left edge (x0) halfway down the box is drawn in the layer colour (yellow)
    x, y = _scene_to_widget(axial, x0 * 0.8, (y0 + y1) / 2 * 0.8)
    colours = [_pixel(img, x + dx, y) for dx in (-1, 0, 1)]
    assert any(r > 200 and g > 150 and b < 80 for r, g, b in colours), colours
    # N/P walk the findings
    qtbot.keyClick(window, Qt.Key.Key_N)
    assert st.selected != key_of_detection(st)
    qtbot.keyClick(window, Qt.Key.Key_P)
    assert st.selected == key_of_detection(st)
    window.grab().save(str(shots / "window_finding.png"))


def test_accept_reject_persist_and_come_back(window, qtbot, study, tmp_path):
    volume, folder = study
    _open(window, qtbot, volume)
    panel = window.findings_panel
    key = key_of_detection(window.study.state)
    panel.table.selectRow(panel.keys.index(key))
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert {str(r.key): window.study.state.decision(r) for r in window.study.state.rows} == {
        str(key): "accepted",
        str(key_of_detection(window.study.state, 2)): "",
        "cls:nodule-classifier:malignant": "",
    }
    assert list(folder.glob("radlens-review-*.json"))
    window.set_volume(None)
    st = _open(window, qtbot, volume)
    assert st.decision(st.row(key)) == "accepted"
    col = panel.COLUMNS.index("review")
    assert panel.table.item(panel.keys.index(key), col).text() == "accepted"
    out = window.exports.export_accepted(tmp_path / "keys") if (tmp_path / "keys").mkdir() is None else None
    assert len(out) == 1 and out[0].is_file()


def test_export_png_has_size_legend_and_overlay_where_the_finding_is(window, qtbot, study, tmp_path, shots):
    volume, _ = study
    st = _open(window, qtbot, volume)
    st.select(key_of_detection(st))
    window.redraw("slices")
    for key in ("heat:nodule-classifier:malignant", "seg:nodule-segmenter:nodule"):
        st.layers[key].visible = False
    out = window.exports.export_view(tmp_path / "shot.png", (512, 600), plane="axial", keep_view=False, anonymize=True)
    img = QtGui.QImage(str(out))
    assert (img.width(), img.height()) == (512, 600)
    assert "Patient" not in img.textKeys()
    assert "nodule-detector v1.0.0" in img.text("Description")
    img.save(str(shots / "export_axial.png"))
    # the yellow box surrounds the white nodule (300 HU is white in the mediastinum window)
    arr = _qimage_rgb(img).astype(int)
    view = arr[: img.height() - 80]
    yellow = (view[..., 0] > 200) & (view[..., 1] > 150) & (view[..., 2] < 80)
    white = (view > 245).all(axis=-1)
    wy, wx = np.nonzero(white)
    assert wx.size > 100
    yellow[: wy.min() - 6] = False  # the box's label sits above the box
    yellow[wy.max() + 6 :] = False  # the orientation letter below
    ys, xs = np.nonzero(yellow)
    assert xs.size > 50
    _z0, y0, x0, _z1, y1, x1 = NODULE
    scale = 512 / 64  # the 64-column slice spans the full width
    assert abs(np.median(xs) - np.median(wx)) < 4 and abs(np.median(ys) - np.median(wy)) < 8
    assert abs((xs.max() - xs.min()) - (x1 - x0) * scale) < 6  # the box is the nodule's width
    assert abs((ys.max() - ys.min()) - (y1 - y0) * scale) < 6  # and its height
    assert abs(np.median(wx) - (x0 + x1) / 2 * scale) < 6


def _qimage_rgb(img: QtGui.QImage) -> np.ndarray:
    img = img.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=img.bytesPerLine() * img.height()).reshape(img.height(), -1)
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def test_findings_from_another_grid_are_refused_in_one_line(window, qtbot, study, tmp_path):
    _volume, folder = study
    from radlens.imaging.volume import Volume

    window.set_volume(Volume(np.zeros((3, 4, 5), np.int16), modality="CT"))
    assert not window.controller.load_findings_folder(folder)
    assert "grid" in window.message.text() and "\n" not in window.message.text()
    assert read_findings(folder).detections  # the file itself is fine


def test_mask_is_drawn_over_the_nodule_only(window, qtbot, study, shots):
    volume, _ = study
    st = _open(window, qtbot, volume)
    window.controller.select_finding(key_of_detection(window.study.state))
    for key in ("heat:nodule-classifier:malignant", "det:nodule-detector:nodule"):
        window.layers_panel.controls[key].check.setChecked(False)
    window.layers_panel.controls["seg:nodule-segmenter:nodule"].opacity.setValue(100)
    qtbot.wait(20)
    for plane in ("axial", "coronal", "sagittal"):
        view = window.views[plane]
        view.set_crosshair_visible(False)  # it crosses the sampled points
        img = view.grab().toImage()
        img.save(str(shots / f"mask_{plane}.png"))
        _, row, col = to_plane(plane, st.cursor_zyx, st.shape_zyx, st.flip_z)
        rmm, cmm = view.pixel_mm
        inside = _pixel(img, *_scene_to_widget(view, (col + 0.5) * cmm, (row + 0.5) * rmm))
        assert inside[2] > inside[0] + 40, (plane, inside)  # cyan over white: blue stays, red drops
        outside = _pixel(img, *_scene_to_widget(view, (col - 12 + 0.5) * cmm, (row + 0.5) * rmm))
        assert abs(outside[0] - outside[2]) < 10, (plane, outside)  # grey anatomy untouched


def test_screenshot_keeps_the_on_screen_size_and_zoom(window, qtbot, study, tmp_path):
    volume, _ = study
    _open(window, qtbot, volume)
    window.controller.set_overlays_on(False)
    axial = window.views["axial"]
    _z0, y0, x0, _z1, y1, x1 = NODULE
    axial.vb.setRange(xRange=(x0 * 0.8 - 2, x1 * 0.8 + 2), yRange=(y0 * 0.8 - 2, y1 * 0.8 + 2), padding=0)
    qtbot.wait(20)
    out = window.exports.export_view(tmp_path / "zoomed.png", plane="axial")
    img = QtGui.QImage(str(out))
    assert (img.width(), img.height()) == (axial.width(), axial.height())
    fitted = QtGui.QImage(str(window.exports.export_view(tmp_path / "fitted.png", plane="axial", keep_view=False)))

    def white_fraction(image) -> float:
        return float((_qimage_rgb(image)[: image.height() - 60] > 245).all(axis=-1).mean())

    assert white_fraction(img) > 5 * white_fraction(fitted) > 0  # the zoom on the nodule is kept


def test_every_key_is_bound_from_the_one_keymap(window):
    from radlens.viewer.menus import KEYMAP

    actions = window.menu_actions.items()
    bound = {act.shortcut().toString(): name for name, act in actions if not act.shortcut().isEmpty()}
    assert bound == KEYMAP


def test_corner_text_and_letters_stay_readable_over_a_white_image(qtbot, shots):
    """A radiograph is white where the corner text sits: the text is outlined, so dark pixels frame it."""
    from radlens.imaging.volume import Volume
    from radlens.viewer.slice_view import SliceView

    white = Volume(np.full((1, 200, 200), 1000, np.int16), modality="CR", description="white film")
    view = SliceView("axial")
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(white, ViewState.for_volume(white, Window(100, 50)))
    view.set_crosshair_visible(False)
    view.fit()
    qtbot.wait(20)
    img = view.grab().toImage()
    a = np.array([[img.pixelColor(x, y).red() for x in range(img.width())] for y in range(img.height())])
    img.save(str(shots / "white_corner.png"))
    assert np.median(a[100:200, 100:200]) > 240  # the image is white behind the text
    assert view.corners["bl"] == "" and "axial" not in view.corners["tr"]  # a film has no plane nor slices
    corner = a[2:18, 2:120]  # the first line of the top-left corner text
    assert (corner < 60).sum() > 20 and (corner > 200).sum() > 20


def test_a_confident_models_threshold_reads_as_itself_not_as_one():
    from radlens.viewer.findings_panel import threshold_text

    assert threshold_text(0.9998) == "0.9998" and threshold_text(0.3858) == "0.39" and threshold_text(1.0) == "1.0000"
