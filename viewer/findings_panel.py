"""The layers panel (show/hide, opacity, threshold per layer) and the findings panel (one row each).

Both only emit what the user asked for; the main window changes the ViewState and redraws.
Every layer names its model and version and says the results are machine-generated.
"""

from __future__ import annotations

from radlens.viewer.layers import READER, SHOWN_AS, FindingKey, Layer, LayerKey, model_text
from radlens.viewer.qt import QtCore, QtGui, QtWidgets
from radlens.viewer.state import ViewState
from radlens.viewer.widgets import row_table

MACHINE_NOTE = "AI results: machine-generated, not a diagnosis"


def colour_bar_pixmap(width: int, height: int) -> QtGui.QPixmap:
    """The heat map's colour scale (the LUT the views use, without its transparency ramp)."""
    import numpy as np

    from radlens.viewer.qt import pg

    lut = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, width)[:, :3].astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(lut[None], height, axis=0))
    image = QtGui.QImage(rgb.data, width, height, rgb.strides[0], QtGui.QImage.Format.Format_RGB888)
    return QtGui.QPixmap.fromImage(image.copy())


THRESHOLD_STEPS = 10000


class LayerControls(QtWidgets.QFrame):
    changed = QtCore.Signal(object)  # LayerKey

    def __init__(self, layer: Layer, parent=None):
        super().__init__(parent)
        self.key = key = layer.key
        self._layer = layer
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(2, 2, 2, 2)
        self.check = QtWidgets.QCheckBox(f"{key.label} ({SHOWN_AS[key.kind]})")
        self.check.setChecked(layer.visible)
        swatch = QtGui.QPixmap(12, 12)
        swatch.fill(QtGui.QColor(*layer.colour))
        self.check.setIcon(QtGui.QIcon(swatch))
        self.check.setToolTip(f"{key.model} {layer.version} — {MACHINE_NOTE}")
        grid.addWidget(self.check, 0, 0, 1, 3)
        grid.addWidget(QtWidgets.QLabel(model_text(key.model, layer.version)), 1, 0, 1, 3)
        grid.addWidget(QtWidgets.QLabel("opacity"), 2, 0)
        self.opacity = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(layer.opacity * 100))
        grid.addWidget(self.opacity, 2, 1, 1, 2)
        self.threshold = None
        if key.kind == "classification":
            grid.addWidget(QtWidgets.QLabel("0"), 3, 0)
            bar = QtWidgets.QLabel()
            bar.setPixmap(colour_bar_pixmap(120, 10))
            bar.setToolTip("probability 0 → 1")
            grid.addWidget(bar, 3, 1)
            grid.addWidget(QtWidgets.QLabel("1"), 3, 2)
            note = QtWidgets.QLabel("approximate explanation (Grad-CAM): where the model looked, not an outline")
            note.setWordWrap(True)
            note.setStyleSheet("color: #d08000;")
            grid.addWidget(note, 4, 0, 1, 3)
        if key.kind == "detection":
            grid.addWidget(QtWidgets.QLabel("threshold"), 3, 0)
            self.threshold = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            # 1e-4 steps: a confident model's threshold (0.9998) can be set again once the slider has moved.
            self.threshold.setRange(0, THRESHOLD_STEPS)
            self.threshold.setSingleStep(THRESHOLD_STEPS // 100)
            self.threshold.setPageStep(THRESHOLD_STEPS // 10)
            self.threshold.setValue(round(layer.threshold * THRESHOLD_STEPS))
            self.threshold_label = QtWidgets.QLabel(threshold_text(layer.threshold))
            grid.addWidget(self.threshold, 3, 1)
            grid.addWidget(self.threshold_label, 3, 2)
            self.threshold.valueChanged.connect(self._on_threshold)
        self.check.toggled.connect(self._on_visible)
        self.opacity.valueChanged.connect(self._on_opacity)

    def _on_visible(self, on: bool) -> None:
        self._layer.visible = bool(on)
        self.changed.emit(self.key)

    def _on_opacity(self, value: int) -> None:
        self._layer.opacity = value / 100.0
        self.changed.emit(self.key)

    def _on_threshold(self, value: int) -> None:
        self._layer.threshold = value / THRESHOLD_STEPS
        self.threshold_label.setText(threshold_text(value / THRESHOLD_STEPS))
        self.changed.emit(self.key)


def threshold_text(threshold: float) -> str:
    """A detection threshold as the panel shows it: a confident model's 0.9998 must not read as 1.00."""
    return f"{threshold:.2f}" if threshold < 0.995 else f"{threshold:.4f}"


class LayersPanel(QtWidgets.QWidget):
    changed = QtCore.Signal(object)  # LayerKey
    all_toggled = QtCore.Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QtWidgets.QVBoxLayout(self)
        self.all_check = QtWidgets.QCheckBox("Show AI overlays (A)")
        self.all_check.setChecked(True)
        self.all_check.toggled.connect(self.all_toggled)
        outer.addWidget(self.all_check)
        note = QtWidgets.QLabel(MACHINE_NOTE)
        note.setStyleSheet("color: #d08000;")
        note.setWordWrap(True)
        outer.addWidget(note)
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("find a label…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("show only the layers whose label or model contains this text")
        self.search.textChanged.connect(self._filter)
        outer.addWidget(self.search)
        # A model with a hundred labels gives a hundred layers: they scroll.
        holder = QtWidgets.QWidget()
        self._box = QtWidgets.QVBoxLayout(holder)
        self._box.setContentsMargins(0, 0, 0, 0)
        self._box.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        outer.addWidget(scroll, 1)
        self.controls: dict[LayerKey, LayerControls] = {}

    def set_state(self, state: ViewState | None) -> None:
        for c in self.controls.values():
            c.setParent(None)
            c.deleteLater()
        self.controls = {}
        if state is None:
            return
        self.all_check.blockSignals(True)
        self.all_check.setChecked(state.overlays_on)
        self.all_check.blockSignals(False)
        for key, layer in state.layers.items():
            c = LayerControls(layer, self)
            c.changed.connect(self.changed)
            self._box.insertWidget(self._box.count() - 1, c)
            self.controls[key] = c
        self._filter(self.search.text())

    def _filter(self, text: str) -> None:
        needle = text.strip().lower()
        for key, c in self.controls.items():
            c.setVisible(not needle or needle in key.label.lower() or needle in key.model.lower())


class FindingsPanel(QtWidgets.QWidget):
    selected = QtCore.Signal(object)  # FindingKey
    decided = QtCore.Signal(object, str)  # FindingKey, accepted | rejected | ""

    # What a reader scans first on the left; the long model name last, where the table stretches.
    COLUMNS = ("label", "score", "size", "volume", "mean", "slice", "review", "models")

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        self.table = row_table(self.COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellClicked.connect(self._on_clicked)
        v.addWidget(self.table)
        buttons = QtWidgets.QHBoxLayout()
        self.accept_button = QtWidgets.QPushButton("Accept")
        self.reject_button = QtWidgets.QPushButton("Reject")
        self.clear_button = QtWidgets.QPushButton("Undecide")
        for b in (self.accept_button, self.reject_button, self.clear_button):
            buttons.addWidget(b)
        self.accept_button.clicked.connect(self._on_accept)
        self.reject_button.clicked.connect(self._on_reject)
        self.clear_button.clicked.connect(self._on_clear)
        v.addLayout(buttons)
        self.keys: list[FindingKey] = []

    def set_state(self, state: ViewState | None) -> None:
        self.table.setRowCount(0)
        self.keys = []
        if state is None:
            return
        rows = state.visible_rows()
        unit = " HU" if state.findings is not None and state.findings.input.get("modality") == "CT" else ""
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            lesion = r.lesion
            values = {
                "label": r.label,
                "score": "" if r.score is None else f"{r.score:.2f}",
                "size": r.size,
                "volume": "" if lesion is None or lesion.volume_ml is None else f"{lesion.volume_ml:.2f} ml",
                "mean": "" if lesion is None or lesion.mean_value is None else f"{lesion.mean_value:.0f}{unit}",
                "slice": str(r.center_zyx[0] + 1),
                "review": state.decision(r),
                "models": ", ".join("edited" if m == READER else f"{m} {s:.2f}" for m, s in r.scores),
            }
            for j, text in enumerate(values[c] for c in self.COLUMNS):
                self.table.setItem(i, j, QtWidgets.QTableWidgetItem(text))
            self.keys.append(r.key)
        if state.selected in self.keys:
            self.table.selectRow(self.keys.index(state.selected))

    def show_selected(self, key: FindingKey | None) -> None:
        if key in self.keys:
            self.table.blockSignals(True)
            self.table.selectRow(self.keys.index(key))
            self.table.blockSignals(False)

    def current_key(self) -> FindingKey | None:
        i = self.table.currentRow()
        return self.keys[i] if 0 <= i < len(self.keys) else None

    def _on_clicked(self, row: int, col: int) -> None:
        if 0 <= row < len(self.keys):
            self.selected.emit(self.keys[row])

    def _decide(self, decision: str) -> None:
        key = self.current_key()
        if key is not None:
            self.decided.emit(key, decision)

    def _on_accept(self) -> None:
        self._decide("accepted")

    def _on_reject(self) -> None:
        self._decide("rejected")

    def _on_clear(self) -> None:
        self._decide("")
