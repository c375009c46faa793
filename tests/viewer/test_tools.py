"""Reading tools on the real window: pixel probe, ruler, ellipse ROI, tag browser, cine, corner text."""

import numpy as np
import pytest

from radlens.viewer.qt import QtCore
from radlens.viewer.tags import TagBrowser
from tests.viewer.conftest import drag, widget_point

Qt = QtCore.Qt


def test_pixel_probe_shows_voxel_lps_and_hu(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    axial = window.views["axial"]
    qtbot.mouseMove(axial.viewport(), widget_point(axial, 25, 41))
    text = window.probe_label.text()
    assert "voxel z20 y25 x41" in text and text.endswith("300 HU")
    lps = volume.index_to_lps((20, 25, 41))
    assert f"({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm" in text


def test_ruler_measures_in_mm(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    window.set_tool("ruler")
    axial = window.views["axial"]
    a, b = widget_point(axial, 10, 10), widget_point(axial, 10, 40)
    drag(qtbot, axial, a, b)
    text = window.message.text()
    assert text.startswith("length ")
    assert float(text.split()[1]) == pytest.approx(30 * 0.8, abs=0.8)  # 30 columns of 0.8 mm
    (ruler,) = window.study.state.measurements  # kept, and drawn on its slice
    assert ruler.kind == "ruler" and axial.measures.items[0][0].isVisible()


def test_ellipse_roi_statistics_in_hu(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    window.set_tool("roi")
    axial = window.views["axial"]
    drag(qtbot, axial, widget_point(axial, 21, 37), widget_point(axial, 28, 44))  # inside the 300 HU nodule
    text = window.message.text()
    assert text.startswith("ROI mean 300.0 SD 0.0 min 300 max 300")
    assert "mm²" in text


def test_tag_browser_lists_and_filters_the_slice_header(qtbot, phantom_dicom):
    from radlens.imaging.loading import load

    volume = load(phantom_dicom)
    dlg = TagBrowser(volume, 3)
    qtbot.addWidget(dlg)
    assert dlg.tree.topLevelItemCount() > 20
    keywords = {dlg.tree.topLevelItem(i).text(1) for i in range(dlg.tree.topLevelItemCount())}
    assert {"PatientName", "ImagePositionPatient", "RescaleSlope"} <= keywords
    qtbot.keyClicks(dlg.search, "ImagePosition")
    visible = [
        dlg.tree.topLevelItem(i).text(1)
        for i in range(dlg.tree.topLevelItemCount())
        if not dlg.tree.topLevelItem(i).isHidden()
    ]
    assert visible == ["ImagePositionPatient"]


def test_tag_browser_without_dicom_explains(qtbot, study):
    volume, _ = study
    dlg = TagBrowser(volume, 0)
    qtbot.addWidget(dlg)
    assert dlg.tree.topLevelItemCount() == 1
    assert "no DICOM header" in dlg.tree.topLevelItem(0).text(2)


def test_cine_plays_the_active_plane(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    st = window.study.state
    start = st.slice_index("axial")
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: st.slice_index("axial") >= start + 2, timeout=3000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    stopped = st.slice_index("axial")
    qtbot.wait(200)
    assert st.slice_index("axial") == stopped
    np.testing.assert_array_equal(window.views["axial"].image_item.image, volume.array[stopped])


def test_corner_text_letters_and_scale_bar(window, qtbot, study):
    volume, _ = study
    window.set_volume(volume)
    cor = window.views["coronal"]
    assert cor.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert cor.corners["br"].startswith("W 350 L 50")
    assert "zoom" in cor.corners["br"]
    assert cor.corners["bl"].startswith("coronal 33/64")
    assert cor.scale_bar.mm in (1, 2, 5, 10, 20, 50, 100) and cor.scale_bar.px > 0
    px_per_mm = 1 / cor.vb.viewPixelSize()[0]
    assert cor.scale_bar.px == pytest.approx(cor.scale_bar.mm * px_per_mm, abs=1)


def test_rgb_and_monochrome1_display(window, qtbot):
    from radlens.imaging.volume import Volume

    rgb = np.zeros((3, 8, 10, 3), np.uint8)
    rgb[1, 2, 3] = (255, 0, 0)
    window.set_volume(Volume(rgb, description="colour"))
    img = window.views["axial"].image_item.image
    assert img.shape == (8, 10, 3) and tuple(img[2, 3]) == (255, 0, 0)
    mono1 = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), invert=True, modality="CR")
    window.set_volume(mono1)
    assert window.study.state.invert
    lut = window.views["axial"].image_item.lut
    assert lut is not None and lut[0] == 255 and lut[-1] == 0  # MONOCHROME1: low values bright


def test_a_single_image_opens_in_one_view(window, qtbot):
    from radlens.imaging.volume import Volume

    window.set_volume(Volume(np.zeros((1, 30, 40), np.int16), modality="DX"))
    assert window.layout() == "single"
    assert window.views["axial"].isVisible() and not window.views["sagittal"].isVisible()
