"""The 4D slider: one 3D stack of a 4D set at a time (a time point, a b-value, an echo).

Why: a dynamic or diffusion series repeats every slice position; discovery splits it into parts
(imaging.fourd) and the viewer shows one part on the same grid, the slice, window and zoom kept,
while this bar moves between them. A part is loaded in the background on the "phase" channel the
first time it is asked for, and kept (up to :data:`CACHE` parts) so that moving back is instant.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

from radlens.viewer import jobs
from radlens.viewer.qt import QtCore, QtWidgets

CACHE = 16


class PhaseBar(QtWidgets.QWidget):
    """A slider over the parts of the shown 4D set and the label of the part shown."""

    def __init__(self, controller, runner, views: dict, parent=None):
        super().__init__(parent)
        self.controller, self.runner, self.views = controller, runner, views
        self.series = None  # the 4D set (a SeriesInfo with parts)
        self.cache: OrderedDict[int, object] = OrderedDict()
        self.shown = 0
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        self.title = QtWidgets.QLabel("")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setPageStep(1)
        self.label = QtWidgets.QLabel("")
        row.addWidget(self.title)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        self.slider.valueChanged.connect(self.request)
        runner.finished.connect(self.on_finished)
        self.setVisible(False)

    def set_study(self, study) -> None:
        """A study is shown: the bar spans its 4D set when it is a part of one, else it hides."""
        series = self.controller.series_set
        uids = [p.uid for p in series.parts] if series is not None else []
        key = study.key if study is not None else None
        if key not in uids:
            self.series, self.cache = None, OrderedDict()
            self.setVisible(False)
            return
        if series is not self.series:
            self.series, self.cache = series, OrderedDict()
        self.shown = uids.index(key)
        self._remember(self.shown, study.source)  # parts are cached as stored: show_part turns them
        self.title.setText(f"{len(uids)} × {series.dimension}")
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(uids) - 1)
        self.slider.setValue(self.shown)
        self.slider.blockSignals(False)
        self.label.setText(series.part_labels[self.shown])
        self.setVisible(True)

    def request(self, index: int) -> None:
        """Show part ``index``: at once when it was loaded before, else after it loads."""
        if self.series is None or index == self.shown:
            return
        self.label.setText(f"{self.series.part_labels[index]} (loading…)")
        if index in self.cache:
            self._show(index, self.cache[index])
            return
        self.runner.start("phase", functools.partial(_load_part, self.series.parts[index], index))

    def on_finished(self, ev) -> None:
        if ev.channel != "phase" or ev.result is None or self.series is None:
            return
        index, volume = ev.result
        if index < len(self.series.parts) and (volume.series_uid or volume.source) == self.series.parts[index].uid:
            self._show(index, volume)

    def _show(self, index: int, volume) -> None:
        self._remember(index, volume)
        rects = {plane: v.vb.viewRect() for plane, v in self.views.items()}
        self.controller.show_part(volume)
        for plane, v in self.views.items():
            v.vb.setRange(rect=rects[plane], padding=0)

    def _remember(self, index: int, volume) -> None:
        self.cache[index] = volume
        self.cache.move_to_end(index)
        while len(self.cache) > CACHE:
            self.cache.popitem(last=False)


def _load_part(part, index: int, cancel):
    """The job: one part of a 4D set, returned with its index."""
    volume = yield from jobs.load_volume(part, cancel)
    return index, volume
