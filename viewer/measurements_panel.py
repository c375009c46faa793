"""The Measurements panel: every measurement of the study, one row each; a click jumps to it.
It only emits what the user asked for; the controller's Measurements (viewer.measurements) does it."""

from __future__ import annotations

from radlens.viewer.measure import on_plane
from radlens.viewer.qt import QtCore, QtWidgets
from radlens.viewer.state import ViewState
from radlens.viewer.widgets import row_table


class MeasurementsPanel(QtWidgets.QWidget):
    jump_requested = QtCore.Signal(int)
    delete_requested = QtCore.Signal(int)
    export_requested = QtCore.Signal()

    COLUMNS = ("#", "kind", "value", "plane", "slice")

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        self.table = row_table(self.COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(self._on_clicked)
        v.addWidget(self.table)
        buttons = QtWidgets.QHBoxLayout()
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.export_button = QtWidgets.QPushButton("Export…")
        self.export_button.setToolTip("all measurements as CSV or JSON")
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.export_button)
        v.addLayout(buttons)
        self.delete_button.clicked.connect(self._on_delete)
        self.export_button.clicked.connect(self.export_requested)
        self.ids: list[int] = []

    def set_state(self, state: ViewState | None, volume=None) -> None:
        self.table.setRowCount(0)
        self.ids = []
        if state is None:
            return
        self.table.setRowCount(len(state.measurements))
        for i, m in enumerate(state.measurements):
            index, _ = on_plane(m, volume, state.flip_z)
            for j, text in enumerate((str(m.id), m.kind, m.text(), m.plane, str(index + 1))):
                self.table.setItem(i, j, QtWidgets.QTableWidgetItem(text))
            self.ids.append(m.id)
        if state.selected_measurement in self.ids:
            self.table.blockSignals(True)
            self.table.selectRow(self.ids.index(state.selected_measurement))
            self.table.blockSignals(False)

    def _on_clicked(self, row: int, col: int) -> None:
        if 0 <= row < len(self.ids):
            self.jump_requested.emit(self.ids[row])

    def _on_delete(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.ids):
            self.delete_requested.emit(self.ids[row])
