"""The PySide6 + pyqtgraph application: Qt-free view state, the widgets that draw it, the worker."""
