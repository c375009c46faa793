"""Each kind of series read as what it is, on the real window (issue 21): the layout per kind, a cine
at the file's frame rate, a radiograph's letters, units and shutter, an ultrasound's calibrated ruler,
the 4D slider, VOI LUT functions and tables on screen, and the AI panel's refusal."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radlens.imaging.volume import Volume, Window
from radlens.imaging.windowing import apply_voi_table, apply_window
from radlens.viewer.qt import QtCore, QtGui
from tests.imaging.dicom_fixtures import write_stack
from tests.imaging.kind_fixtures import write_cine, write_radiograph
from tests.viewer.conftest import drag as _drag
from tests.viewer.conftest import widget_point as _widget_point

Qt = QtCore.Qt


def _open(window, qtbot, path) -> None:
    """Open ``path`` as a user does (scan, browser, load in the background) and wait for the study."""
    window.open_paths([str(path)])
    qtbot.waitUntil(lambda: window.study is not None and not window.runner.busy("load"), timeout=60000)
    qtbot.wait(50)  # the layout settles (one view instead of three) before a test maps pixels to the screen


def _shown(window) -> list[str]:
    return [plane for plane, v in window.views.items() if not v.isHidden()]


def _displayed(view, row: int, col: int) -> int:
    """The grey level pyqtgraph draws for image pixel (row, column), after levels and lookup table."""
    view.image_item.render()
    return QtGui.QColor(view.image_item.qimage.pixel(col, row)).red()


def test_a_volume_opens_in_three_planes(window, qtbot, study):
    _, folder = study
    _open(window, qtbot, folder / "ct.nii.gz")
    assert window.study.volume.kind == "volume"
    assert _shown(window) == ["axial", "coronal", "sagittal"]
    assert window.views["axial"].corners["bl"].startswith("axial 21/40")
    assert not window.phase_bar.isVisible()


def test_a_radiograph_opens_in_one_view_with_its_own_letters(window, qtbot):
    _open(window, qtbot, get_testdata_file("RG3_UNCR.dcm"))  # PatientOrientation R\F, Laterality R, AP
    axial = window.views["axial"]
    assert (window.study.volume.kind, window.layout(), _shown(window)) == ("projection", "single", ["axial"])
    assert axial.letters == {"right": "R", "left": "L", "bottom": "I", "top": "S"}  # columns run to the right
    assert axial.corners["tr"].splitlines()[:2] == ["CR", "R AP"] and "axial" not in axial.corners["tr"]
    assert axial.corners["bl"] == ""
    window.controller.toggle_layout()  # M: a film has no other planes
    assert _shown(window) == ["axial"] and window.message.text().startswith("a projection is read in one view")
    assert window.ai_panel.models.count() == 0
    assert window.ai_panel.status.text().startswith("no model offered: this series is a projection")


def test_a_zero_spacing_radiograph_measures_in_pixels_with_the_reason(window, qtbot):
    _open(window, qtbot, get_testdata_file("RG1_UNCR.dcm"))  # PixelSpacing 0\0
    axial = window.views["axial"]
    assert "uncalibrated (PixelSpacing 0\\0): lengths in px" in axial.corners["tr"].splitlines()
    assert axial.scale_bar.text().endswith(" px")
    window.set_tool("ruler")
    _drag(qtbot, axial, _widget_point(axial, 900, 500), _widget_point(axial, 900, 1300))
    text = window.message.text()
    assert text.startswith("length ") and text.endswith(" px (uncalibrated)")
    assert float(text.split()[1]) == pytest.approx(800, abs=8)


def test_a_cine_opens_in_one_view_and_plays_at_its_frame_time(window, qtbot):
    _open(window, qtbot, get_testdata_file("examples_ybr_color.dcm"))  # 30 frames, FrameTime 33.333 ms, YBR
    st, bar = window.study.state, window.cine_bar
    assert (window.study.volume.kind, window.layout(), _shown(window)) == ("cine", "single", ["axial"])
    assert window.views["axial"].letters == {"left": "", "right": "", "top": "", "bottom": ""}  # none given
    assert window.study.volume.is_rgb  # true colour
    assert bar.isVisible() and bar.rate_label.text() == "30 frames/s · FrameTime"
    assert bar.timer.interval() == 33
    st.set_slice("axial", 0)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert bar.timer.isActive() and bar.play_button.text() == "Stop"
    for _ in range(5):
        bar.timer.timeout.emit()
    assert st.slice_index("axial") == 5
    assert bar.slider.value() == 5 and bar.frame_label.text() == "frame 6/30"
    assert window.views["axial"].corners["bl"] == "frame 6/30  0.17 s"
    bar.speed.setCurrentText("2×")
    assert bar.timer.interval() == 17
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not bar.timer.isActive()
    bar.slider.setValue(20)  # the frame slider seeks
    assert st.slice_index("axial") == 20


def test_frame_time_vector_retimes_each_frame_and_no_loop_stops(window, qtbot, tmp_path):
    path = write_cine(tmp_path / "xa.dcm", 4, FrameTimeVector=[0, 40, 50, 60])
    _open(window, qtbot, path)
    st, bar = window.study.state, window.cine_bar
    st.set_slice("axial", 0)
    window.controller.set_cine(True)
    bar.loop.setChecked(False)
    intervals = []
    for _ in range(4):
        intervals.append(bar.timer.interval())
        bar.timer.timeout.emit()
    assert intervals == [40, 50, 60, 60]
    assert st.slice_index("axial") == 3 and not bar.timer.isActive()  # stopped at the last frame


def test_an_xa_without_a_frame_time_plays_at_the_default_with_a_note(window, qtbot, tmp_path):
    _open(window, qtbot, write_cine(tmp_path / "xa.dcm", 3))
    assert window.cine_bar.timer.interval() == 67
    assert window.cine_bar.rate_label.text().endswith("no frame time in the header: 15 frames/s assumed")


def test_an_ultrasound_ruler_is_calibrated_by_its_region(window, qtbot):
    _open(window, qtbot, get_testdata_file("examples_ybr_color.dcm"))
    volume, axial = window.study.volume, window.views["axial"]
    (region,) = volume.presentation.us_regions
    window.set_tool("ruler")
    row = (region.y0 + region.y1) // 2
    _drag(qtbot, axial, _widget_point(axial, row, region.x0 + 20), _widget_point(axial, row, region.x0 + 120))
    text = window.message.text()
    assert text.endswith(" mm")
    assert float(text.split()[1]) == pytest.approx(100 * region.spacing_yx[1], rel=0.03)


def test_a_display_shutter_covers_the_film_outside_it(window, qtbot, tmp_path):
    path = write_radiograph(tmp_path / "cr.dcm", np.zeros((60, 80)), WindowCenter=500, WindowWidth=1000,
                            ShutterShape="RECTANGULAR", ShutterLeftVerticalEdge=21, ShutterRightVerticalEdge=60,
                            ShutterUpperHorizontalEdge=11, ShutterLowerHorizontalEdge=50,
                            ShutterPresentationValue=0x8080)  # fmt: skip
    _open(window, qtbot, path)
    axial = window.views["axial"]
    axial.set_crosshair_visible(False)
    qtbot.wait(20)
    img = axial.grab().toImage()

    def grey(row, col):
        p = _widget_point(axial, row, col)
        return img.pixelColor(p.x(), p.y()).getRgb()[:3]

    assert grey(30, 40) == (0, 0, 0)  # inside the shutter: the (black) image
    assert grey(30, 5) == grey(55, 40) == (128, 128, 128)  # outside: the shutter's presentation value
    window.set_volume(None)  # the next study shows no shutter of this one
    assert not axial.shutter_item.isVisible()


def test_a_4d_set_gets_a_slider(window, qtbot, tmp_path):
    uid = "1.2.3.60"
    for t in (1, 2, 3):
        _, paths = write_stack(tmp_path / "dyn", [0.0, 2.0, 4.0], series_uid=uid, prefix=f"t{t}_")
        for z, path in enumerate(paths):
            ds = pydicom.dcmread(path)
            ds.TemporalPositionIdentifier = t
            ds.PixelData = np.full((8, 8), 100 * t + z, dtype="<i2").tobytes()
            ds.save_as(path)
    _open(window, qtbot, tmp_path / "dyn")
    bar = window.phase_bar
    assert bar.isVisible() and (bar.slider.minimum(), bar.slider.maximum()) == (0, 2)
    assert bar.label.text() == "temporal position 1" and bar.title.text() == "3 × temporal position"
    assert _shown(window) == ["axial", "coronal", "sagittal"]  # each part is a volume
    window.study.state.set_slice("axial", 2)
    bar.slider.setValue(2)
    qtbot.waitUntil(lambda: window.study.volume.series_uid == f"{uid}.3", timeout=30000)
    assert bar.label.text() == "temporal position 3"
    assert window.study.state.slice_index("axial") == 2  # the slice is kept
    np.testing.assert_array_equal(window.views["axial"].image_item.image, np.full((8, 8), 302))
    bar.slider.setValue(0)  # loaded before: back at once
    assert window.study.volume.array[0, 0, 0] == 100


def test_a_voi_lut_table_and_a_sigmoid_window_are_what_is_shown(window, qtbot, tmp_path):
    _open(window, qtbot, get_testdata_file("vlut_04.dcm"))  # a VOI LUT Sequence, no window
    volume, axial = window.study.volume, window.views["axial"]
    expected = apply_voi_table(volume.array[0], volume.voi_luts[0])
    for row, col in ((10, 10), (100, 200), (200, 100)):
        assert _displayed(axial, row, col) == pytest.approx(int(expected[row, col]), abs=1)
    ramp = Volume(np.arange(0, 4000, 4, dtype=np.int16).reshape(1, 25, 40), modality="DX")
    sigmoid = Window(1500, 1800, "SIGMOID")
    window.set_volume(ramp, sigmoid)
    want = apply_window(ramp.array[0], sigmoid)
    assert abs(_displayed(window.views["axial"], 12, 20) - int(want[12, 20])) <= 2
    assert abs(_displayed(window.views["axial"], 20, 39) - int(want[20, 39])) <= 2


def _nibabel_file(name: str) -> str:
    return str(Path(nibabel.__file__).parent / "tests" / "data" / name)


@pytest.mark.parametrize(
    ("path", "kind", "views", "phases"),
    [
        (get_testdata_file("emri_small.dcm"), "volume", 3, False),  # enhanced MR
        (get_testdata_file("rtdose.dcm"), "volume", 3, False),
        (get_testdata_file("OBXXXX1A_2frame.dcm"), "cine", 1, False),  # palette colour ultrasound
        (get_testdata_file("OT-PAL-8-face.dcm"), "projection", 1, False),
        (get_testdata_file("gdcm-US-ALOKA-16.dcm"), "projection", 1, False),  # three ultrasound regions
        (_nibabel_file("example4d.nii.gz"), "volume", 3, True),  # a 4D NIfTI: its first volume and a slider
        (_nibabel_file("minc1_4d.mnc"), "volume", 3, True),
        (_nibabel_file("test.mgz"), "volume", 3, True),
    ],
    ids=lambda v: v if isinstance(v, str) and "/" not in v else None,
)
def test_a_sample_of_kinds_opens_through_the_window(window, qtbot, path, kind, views, phases):
    _open(window, qtbot, path)
    assert window.study.volume.kind == kind
    assert len(_shown(window)) == views and window.phase_bar.isVisible() == phases
    assert "ff6060" not in window.message.styleSheet()  # no error line
