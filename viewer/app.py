"""``radlens [PATH ...] [--demo]``: start Qt, show the main window, open what was asked."""

from __future__ import annotations

import sys
import traceback

from radlens.imaging.errors import RadlensError
from radlens.viewer import platform_check
from radlens.viewer.qt import QtWidgets


def main(paths, demo: bool = False) -> int:
    """Run the application; no display or a missing system library is one line, not Qt's abort."""
    if QtWidgets.QApplication.instance() is None and (why := platform_check.problem()):
        raise RadlensError(why)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = open_window(paths, demo)
    _keep_running_on_errors(window)
    return int(app.exec())


def open_window(paths, demo: bool = False):
    """The shown main window, already scanning ``paths`` (or preparing the demo) in the background."""
    app = QtWidgets.QApplication.instance()
    app.setApplicationName("RadLens")
    app.setOrganizationName("radlens")
    from radlens.viewer.main_window import MainWindow

    window = MainWindow()
    window.show()
    if demo:
        window.open_demo()
    elif paths:
        window.open_paths(paths)
    return window


def _keep_running_on_errors(window) -> None:
    """An unexpected exception in a slot is shown in the status bar (and on stderr), never fatal."""

    def hook(kind, value, tb):
        traceback.print_exception(kind, value, tb)
        window.show_error(f"internal error: {kind.__name__}: {value}")

    sys.excepthook = hook
