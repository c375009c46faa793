"""First run: no display, or Qt's X11 libraries missing, is one line naming what to do, never Qt's abort;
the window's size and its docks come back as the user left them."""

import os
import subprocess
import sys

from radlens.viewer import platform_check
from radlens.viewer.qt import QtCore, QtWidgets

LDD = """\
\tlinux-vdso.so.1 (0x00007ffc)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f01)
\tlibxcb-cursor.so.0 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-cursor.so.0 => not found
\tlibglib-2.0.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)
"""


def test_the_libraries_ldd_cannot_find_are_named_with_their_debian_packages(monkeypatch):
    missing = platform_check.not_found(LDD)
    assert missing == ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libxcb-icccm.so.4", "libglib-2.0.so.0"]
    assert [platform_check.debian_package(s) for s in missing] == [
        "libxcb-cursor0",
        "libxkbcommon-x11-0",
        "libxcb-icccm4",
        "libglib2.0-0",
    ]
    monkeypatch.setattr(platform_check, "missing_libraries", lambda: missing)
    why = platform_check.problem({"DISPLAY": ":0"}, "linux")
    assert "\n" not in why
    assert why.endswith("apt-get install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libglib2.0-0")


def test_no_display_is_said_and_headless_platforms_pass():
    assert platform_check.problem({}, "linux").startswith("no display")
    assert platform_check.problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert platform_check.problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert platform_check.problem({}, "darwin") is None


def test_the_installed_qt_plugin_resolves_here_or_is_named():
    """On this machine every library the xcb plugin links is either found or reported by name."""
    for soname in platform_check.missing_libraries():
        assert ".so" in soname


def test_radlens_without_a_display_exits_with_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run(
        [sys.executable, "-m", "radlens", "--demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"radlens: error: {platform_check.problem(env)}"]


def test_window_size_and_docks_come_back_on_the_next_start(qtbot, tmp_path):
    from radlens.viewer.main_window import MainWindow

    def start():
        settings = QtCore.QSettings(os.fspath(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        return w

    first = start()
    first.resize(780, 540)  # the offscreen screen is 800 × 600
    first.findChild(QtWidgets.QDockWidget, "Studies").setVisible(False)  # the reader closed the browser
    qtbot.wait(50)
    first.close()
    second = start()
    assert (second.width(), second.height()) == (780, 540)
    assert not second.findChild(QtWidgets.QDockWidget, "Studies").isVisible()
    assert second.findChild(QtWidgets.QDockWidget, "Findings").isVisible()

