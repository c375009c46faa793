"""Cine playback: frames at the rate the file recorded them, a frame slider, loop and speed.

Why: an angiography run or an echo clip is read in motion, at its own pace; a fixed 80 ms per
frame plays a 30 fps echo at a third of its speed. The interval of the player's QTimer comes from
the file (FrameTime, FrameTimeVector, CineRate, RecommendedDisplayFrameRate: imaging.presentation),
divided by the chosen speed, and is set again for each frame when the times vary. A volume (not a
cine) scrolls through its slices at :data:`SCROLL_MS`. Each tick asks the controller for the next
frame (``Controller.cine_step``), so the frame index lives in the view state, as every other slice.
"""

from __future__ import annotations

from radlens.imaging.kinds import CINE
from radlens.viewer.qt import QtCore, QtWidgets

SCROLL_MS = 80  # a volume's slices played as a cine
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)


class CineBar(QtWidgets.QWidget):
    """Play/stop, the frame slider, loop and speed; hidden until a study with several frames is shown.

    ``step`` is called on every timer tick with the loop flag (the controller's ``cine_step``);
    ``seek`` with a frame index when the slider is moved; ``toggled`` with the wanted play state.
    """

    toggled = QtCore.Signal(bool)
    seek = QtCore.Signal(str, int)  # plane, slice delta (the controller's scroll)

    def __init__(self, step, parent=None):
        super().__init__(parent)
        self._step = step
        self.volume = None
        self.state = None
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(SCROLL_MS)
        self.timer.timeout.connect(self._tick)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("play the frames (Space)")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.frame_label = QtWidgets.QLabel("")
        self.loop = QtWidgets.QCheckBox("Loop")
        self.loop.setChecked(True)
        self.speed = QtWidgets.QComboBox()
        self.speed.addItems([f"{s:g}×" for s in SPEEDS])
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("playback speed, relative to the recorded frame rate")
        self.rate_label = QtWidgets.QLabel("")
        for w, stretch in ((self.play_button, 0), (self.slider, 1), (self.frame_label, 0), (self.loop, 0),
                           (self.speed, 0), (self.rate_label, 0)):  # fmt: skip
            row.addWidget(w, stretch)
        self.play_button.toggled.connect(self.toggled)
        self.slider.valueChanged.connect(self._slider_moved)
        self.speed.currentIndexChanged.connect(self._retime)
        self.setVisible(False)

    # -- what the window calls --------------------------------------------------------------------
    def set_study(self, volume, state) -> None:
        """A new study: the slider spans its frames, the rate label says where the timing came from."""
        self.volume, self.state = volume, state
        frames = state.count(self.plane()) if state is not None else 0
        self.setVisible(frames > 1)
        if volume is None or frames < 2:
            return
        self.slider.blockSignals(True)
        self.slider.setRange(0, frames - 1)
        self.slider.blockSignals(False)
        p = volume.presentation
        if volume.kind == CINE:
            first = p.frame_interval_ms(0)
            varies = len(set(p.frame_times_ms)) > 1
            rate = f"{1000.0 / first:.3g} frames/s" + (" (varies)" if varies else "")
            self.rate_label.setText(f"{rate} · {p.frame_time_source}")
        else:
            self.rate_label.setText(f"{1000 / SCROLL_MS:.3g} slices/s")
        self.sync()
        self._retime()

    def plane(self) -> str:
        return self.state.active_plane if self.state is not None else "axial"

    def sync(self) -> None:
        """The slider and label follow the shown frame (wheel, keys, a tick)."""
        if self.state is None or not self.isVisible():
            return
        plane = self.plane()
        i, n = self.state.slice_index(plane), self.state.count(plane)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(i)
        self.slider.blockSignals(False)
        self.frame_label.setText(f"{'frame' if self.volume.kind == CINE else 'slice'} {i + 1}/{n}")

    def set_playing(self, on: bool) -> None:
        self.play_button.blockSignals(True)
        self.play_button.setChecked(on)
        self.play_button.setText("Stop" if on else "Play")
        self.play_button.blockSignals(False)
        if on:
            self._retime()
            self.timer.start()
        else:
            self.timer.stop()

    def interval_ms(self) -> int:
        """The interval of the next tick: the shown frame's recorded time divided by the speed."""
        speed = SPEEDS[self.speed.currentIndex()]
        if self.volume is None or self.volume.kind != CINE or self.state is None:
            return max(1, round(SCROLL_MS / speed))
        frame = self.state.slice_index(self.plane())
        return max(1, round(self.volume.presentation.frame_interval_ms(frame) / speed))

    # -- internals ------------------------------------------------------------------------------
    def _tick(self) -> None:
        self._step(self.loop.isChecked())
        self._retime()

    def _retime(self, *args) -> None:
        self.timer.setInterval(self.interval_ms())

    def _slider_moved(self, value: int) -> None:
        if self.state is not None:
            plane = self.plane()
            self.seek.emit(plane, value - self.state.slice_index(plane))
