"""The one place that imports Qt: PySide6 first, then pyqtgraph configured row-major.

(docs/architecture.md, "Conventions")

pyqtgraph picks the first Qt binding it finds and assumes column-major images unless told
otherwise before any item exists; every viewer module imports ``pg`` from here so neither can drift.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pyqtgraph as pg
import PySide6  # noqa: F401  (must precede pyqtgraph so it binds to PySide6)
from PySide6 import QtCore, QtGui, QtWidgets

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="k", foreground="w")

__all__ = ["QtCore", "QtGui", "QtWidgets", "pg"]
