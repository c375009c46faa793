"""The thick-slab control of the toolbar: one slice, or the MIP, MinIP or mean of a slab of N mm."""

from __future__ import annotations

from radlens.viewer.qt import QtCore, QtWidgets

MODES = (("", "Slice"), ("mip", "MIP"), ("minip", "MinIP"), ("mean", "Mean"))


class SlabControl(QtWidgets.QWidget):
    changed = QtCore.Signal(str, float)  # mode ("" for single slices), thickness in mm

    def __init__(self, parent=None):
        super().__init__(parent)
        h = QtWidgets.QHBoxLayout(self)
        h.setContentsMargins(4, 0, 4, 0)
        h.addWidget(QtWidgets.QLabel("Slab"))
        self.mode = QtWidgets.QComboBox()
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip("maximum (MIP), minimum (MinIP) or mean intensity of a thick slab around each slice")
        self.thickness = QtWidgets.QDoubleSpinBox()
        self.thickness.setRange(1.0, 200.0)
        self.thickness.setValue(10.0)
        self.thickness.setSuffix(" mm")
        self.thickness.setToolTip("slab thickness")
        h.addWidget(self.mode)
        h.addWidget(self.thickness)
        self.mode.currentIndexChanged.connect(self._emit)
        self.thickness.valueChanged.connect(self._emit)

    def _emit(self, *args) -> None:
        self.changed.emit(self.mode.currentData(), self.thickness.value())
