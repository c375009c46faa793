"""The Edit panel: the correcting tools and the brush's settings. It only emits what the user asked
for; the controller's Editor (viewer.editor) does it."""

from __future__ import annotations

from radlens.viewer.editing import Brush
from radlens.viewer.qt import QtCore, QtWidgets

TOOLS = (
    ("wl", "W/L", "left drag: window/level"),
    ("brush", "Brush", "paint the mask (B)"),
    ("eraser", "Eraser", "erase the mask (E)"),
    ("box", "Box", "draw a box around a missed lesion; drag a box's corner to resize it (X)"),
    ("grow", "Click lesion", "click a lesion the AI missed: it is segmented from the click (G)"),
)


class EditPanel(QtWidgets.QWidget):
    tool_chosen = QtCore.Signal(str)
    brush_changed = QtCore.Signal(object)  # Brush (its erase flag follows the tool)
    label_changed = QtCore.Signal(str)
    fill_requested = QtCore.Signal()
    delete_requested = QtCore.Signal()
    undo_requested = QtCore.Signal()
    redo_requested = QtCore.Signal()
    save_case_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        tools = QtWidgets.QGridLayout()
        self.tool_buttons: dict[str, QtWidgets.QToolButton] = {}
        group = QtWidgets.QButtonGroup(self)
        group.setExclusive(True)
        for i, (name, text, tip) in enumerate(TOOLS):
            b = QtWidgets.QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setCheckable(True)
            b.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
            group.addButton(b)
            tools.addWidget(b, i // 2, i % 2)
            self.tool_buttons[name] = b
            b.clicked.connect(self._on_tool)
        self.tool_buttons["wl"].setChecked(True)
        v.addLayout(tools)

        form = QtWidgets.QFormLayout()
        self.radius = QtWidgets.QDoubleSpinBox()
        self.radius.setRange(0.5, 50.0)
        self.radius.setSingleStep(0.5)
        self.radius.setValue(Brush().radius_mm)
        self.radius.setSuffix(" mm")
        form.addRow("brush radius", self.radius)
        self.sphere = QtWidgets.QCheckBox("3D sphere")
        self.sphere.setToolTip("paint a ball through the neighbouring slices instead of a disc on this one")
        form.addRow("", self.sphere)
        self.limit = QtWidgets.QCheckBox("only values from")
        self.limit.setToolTip("the brush paints only voxels whose value (HU on CT) is in this range")
        form.addRow(self.limit)
        limit = QtWidgets.QHBoxLayout()
        self.low = QtWidgets.QDoubleSpinBox()
        self.high = QtWidgets.QDoubleSpinBox()
        for box, value in ((self.low, -500.0), (self.high, 400.0)):
            box.setRange(-5000.0, 50000.0)
            box.setDecimals(0)
            box.setValue(value)
        limit.addWidget(self.low)
        limit.addWidget(QtWidgets.QLabel("to"))
        limit.addWidget(self.high)
        form.addRow("", limit)
        self.label = QtWidgets.QLineEdit()
        self.label.setPlaceholderText("the selected finding's label")
        form.addRow("label", self.label)
        v.addLayout(form)

        buttons = QtWidgets.QGridLayout()
        self.fill_button = QtWidgets.QPushButton("Fill holes")
        self.delete_button = QtWidgets.QPushButton("Delete box")
        self.undo_button = QtWidgets.QPushButton("Undo")
        self.redo_button = QtWidgets.QPushButton("Redo")
        for i, b in enumerate((self.fill_button, self.delete_button, self.undo_button, self.redo_button)):
            buttons.addWidget(b, i // 2, i % 2)
        v.addLayout(buttons)
        self.save_case_button = QtWidgets.QPushButton("Save as training case…")
        self.save_case_button.setToolTip("the image and the corrected masks into an nnU-Net folder for radlens train")
        v.addWidget(self.save_case_button)
        v.addStretch(1)

        self.fill_button.clicked.connect(self.fill_requested)
        self.delete_button.clicked.connect(self.delete_requested)
        self.undo_button.clicked.connect(self.undo_requested)
        self.redo_button.clicked.connect(self.redo_requested)
        self.save_case_button.clicked.connect(self.save_case_requested)
        for w in (self.radius, self.low, self.high):
            w.valueChanged.connect(self._emit_brush)
        for w in (self.sphere, self.limit):
            w.toggled.connect(self._emit_brush)
        self.label.editingFinished.connect(self._on_label)

    def brush(self, erase: bool = False) -> Brush:
        value_range = (self.low.value(), self.high.value()) if self.limit.isChecked() else None
        return Brush(self.radius.value(), self.sphere.isChecked(), erase, value_range)

    def show_tool(self, tool: str) -> None:
        b = self.tool_buttons.get(tool)
        if b is not None:
            b.setChecked(True)
        else:  # a measuring tool: none of these
            group = self.tool_buttons["wl"].group()
            group.setExclusive(False)
            for button in self.tool_buttons.values():
                button.setChecked(False)
            group.setExclusive(True)

    def _on_tool(self) -> None:
        name = next(n for n, b in self.tool_buttons.items() if b.isChecked())
        self.tool_chosen.emit(name)

    def _emit_brush(self, *args) -> None:
        self.brush_changed.emit(self.brush(self.tool_buttons["eraser"].isChecked()))

    def _on_label(self) -> None:
        self.label_changed.emit(self.label.text().strip())
