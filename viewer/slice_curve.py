"""The per-slice probability of a study-level classifier, as a small plot beside the slice slider.

Why: a study probability says "somewhere"; the curve says where, and a click on a peak goes there.
The x axis is the axial slice index of the shown grid (``Classification.per_slice`` as
``Findings.reoriented`` gives it), a vertical line marks the shown slice, a dotted one the bundle's
suggested threshold. A click jumps to the highest point of the curve within a few slices of it, so
a peak is hit without aiming at its exact slice. Hidden when no classification gives a curve.
"""

from __future__ import annotations

import numpy as np

from radlens.viewer.qt import QtCore, QtWidgets, pg

PLANE = "axial"
SNAP_SLICES = 3  # a click snaps to the curve's highest point within this many slices


def peak_near(curve: np.ndarray, index: float, snap: int = SNAP_SLICES) -> int:
    """The slice of the curve's highest value within ``snap`` slices of ``index`` (the nearest of equals)."""
    n = len(curve)
    i = int(min(max(round(index), 0), n - 1))
    lo, hi = max(0, i - snap), min(n, i + snap + 1)
    window = np.asarray(curve[lo:hi], dtype=float)
    best = np.flatnonzero(window >= window.max() - 1e-9) + lo
    return int(best[np.argmin(np.abs(best - i))])


class SliceCurve(QtWidgets.QWidget):
    """The curves of the shown study's classifications; ``seek(plane, delta)`` on a click (the controller's scroll)."""

    seek = QtCore.Signal(str, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.state = None
        self.curves: list[tuple[str, np.ndarray]] = []  # (model label, per-slice probabilities)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        self.title = QtWidgets.QLabel("")
        self.title.setToolTip("per-slice probability of the study-level classifier; click a peak to go there")
        row.addWidget(self.title)
        self.plot = pg.PlotWidget(background=None)
        self.plot.setFixedHeight(96)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setYRange(0, 1, padding=0.05)
        self.plot.getAxis("left").setTicks([[(0, "0"), (0.5, "0.5"), (1, "1")]])
        row.addWidget(self.plot, 1)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#4fc3f7", width=1))
        self.plot.addItem(self.cursor)
        self.threshold = pg.InfiniteLine(angle=0, pen=pg.mkPen("#d08000", style=QtCore.Qt.PenStyle.DotLine))
        self.plot.addItem(self.threshold)
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.setVisible(False)

    def set_findings(self, state) -> None:
        """Curves of the state's classifications that have one value per axial slice."""
        self.state = state
        for item in [i for i in self.plot.listDataItems()]:
            self.plot.removeItem(item)
        self.curves = []
        findings = state.findings if state is not None else None
        n = state.count(PLANE) if state is not None else 0
        names = []
        for k, c in enumerate(findings.classifications if findings is not None else ()):
            if len(c.per_slice) != n or n < 2:
                continue
            curve = np.asarray(c.per_slice, dtype=float)
            self.curves.append((f"{c.label} ({c.model})", curve))
            self.plot.plot(np.arange(n), curve, pen=pg.mkPen(pg.intColor(k, hues=6), width=2))
            names.append(f"P({c.label})\nper slice")
            run = next((m for m in findings.models if m.name == c.model), None)
            self.threshold.setPos(run.threshold if run is not None and run.threshold is not None else 0.5)
        self.title.setText("\n".join(dict.fromkeys(names)))
        if self.curves:
            self.plot.setXRange(0, n - 1, padding=0.01)
        self.setVisible(bool(self.curves))
        self.sync()

    def sync(self) -> None:
        """The cursor line follows the shown axial slice."""
        if self.state is not None and self.curves:
            self.cursor.setPos(self.state.slice_index(PLANE))

    def jump_near(self, index: float) -> int:
        """Go to the highest point of the curves near slice ``index``; returns the slice asked for."""
        target = peak_near(np.max([c for _, c in self.curves], axis=0), index)
        self.seek.emit(PLANE, target - self.state.slice_index(PLANE))
        return target

    def _clicked(self, ev) -> None:
        if not self.curves or self.state is None:
            return
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        self.jump_near(vb.mapSceneToView(ev.scenePos()).x())
