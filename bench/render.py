"""Frame time of the viewer: a 512×512×300 CT in the 1×3 layout, scrolling and dragging the window.

Each sample is one real input event (a key press on the axial view, or a mouse move with the left
button held) sent to the widget, timed until the views have repainted: the posted events are
processed, then each viewport is repainted at once (offscreen Qt, like a screen, would otherwise
hold the paint until its next refresh tick); the paint events are counted to show they happened.
Measured idle and while a CPU-heavy
job (torch matmuls, or numpy when torch is absent) runs where the viewer runs its models (``busy_worker``:
the models' spawned process, viewer.worker) and, for comparison, in the viewer's thread pool
(``busy_thread``, where models ran before).
Idle with overlays: a mask and five boxes over the path. Also: how much memory opening the
volume adds, in copies of the volume. Prints JSON.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/render.py [--frames 200] [--shape 300 512 512]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume
from radlens.viewer.qt import QtCore, QtGui, QtWidgets


def synthetic_ct(shape_zyx) -> Volume:
    """A SYNTHETIC chest-like CT in HU: air, an elliptic body, two lungs, noise (int16)."""
    nz, ny, nx = shape_zyx
    rng = np.random.default_rng(0)
    y, x = np.ogrid[:ny, :nx]
    body = ((y - ny / 2) / (0.38 * ny)) ** 2 + ((x - nx / 2) / (0.45 * nx)) ** 2 < 1
    lung_l = ((y - ny / 2) / (0.25 * ny)) ** 2 + ((x - 0.33 * nx) / (0.13 * nx)) ** 2 < 1
    lung_r = ((y - ny / 2) / (0.25 * ny)) ** 2 + ((x - 0.67 * nx) / (0.13 * nx)) ** 2 < 1
    plane = np.full((ny, nx), -1000, np.int16)
    plane[body] = 40
    plane[lung_l | lung_r] = -850
    a = np.empty(shape_zyx, np.int16)
    for z in range(nz):
        a[z] = plane + rng.integers(-20, 20, size=(ny, nx), dtype=np.int16)
    return Volume(a, (1.25, 0.7, 0.7), modality="CT", description="SYNTHETIC bench CT", source="synthetic")


def synthetic_findings(volume: Volume):
    """A SYNTHETIC mask (a sphere in the middle) and five boxes along the axial scroll path."""
    from radlens.inference.findings import Component, Detection, Findings, ModelRun, Segmentation, input_block

    nz, ny, nx = volume.shape_zyx
    z, y, x = np.ogrid[:nz, :ny, :nx]
    mask = ((z - nz / 2) / (nz / 6)) ** 2 + ((y - ny / 2) / (ny / 8)) ** 2 + ((x - nx / 2) / (nx / 8)) ** 2 < 1
    box = (nz // 3, ny // 3, nx // 3, 2 * nz // 3, 2 * ny // 3, 2 * nx // 3)
    dets = tuple(
        Detection(i + 1, "bench-detector", "nodule", 0.9 - 0.1 * i, box, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 10.0)
        for i in range(5)
    )
    comp = Component(1, float(mask.sum()) * float(np.prod(volume.spacing_zyx)) / 1000, (0.0, 0.0, 0.0), box, 0.9)
    return Findings(
        input=input_block(volume),
        models=(
            ModelRun("bench-detector", "0", "detection", threshold=0.5),
            ModelRun("bench-seg", "0", "segmentation"),
        ),
        detections=dets,
        segmentations=(Segmentation("bench-seg", "lesion", 1, comp.volume_ml, (comp,), mask=mask),),
    )


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PaintCounter(QtCore.QObject):
    """Counts paint events per viewport."""

    def __init__(self):
        super().__init__()
        self.count: dict[int, int] = {}

    def eventFilter(self, obj, ev):
        if ev.type() == QtCore.QEvent.Type.Paint:
            self.count[id(obj)] = self.count.get(id(obj), 0) + 1
        return False

    def of(self, view) -> int:
        return self.count.get(id(view.viewport()), 0)


def busy_job(cancel: threading.Event):
    """CPU-heavy background work like a model's forward passes (torch kernels release the GIL)."""
    try:
        import torch

        torch.set_num_threads(1)
        a = torch.randn(768, 768)
        step = lambda: torch.mm(a, a)  # noqa: E731
    except ImportError:
        a = np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32)
        step = lambda: a @ a  # noqa: E731
    i = 0
    while not cancel.is_set():
        for _ in range(5):
            step()
        i += 1
        yield Progress(i, 0, "bench busy job")
    return i


def measure(app, views, counter, send, frames: int, spacing_s: float = 0.0) -> dict:
    """p50/p95/max of event → repaint. ``spacing_s``: minimum time between events (not timed).

    ``waiting``: the frame's wall time less the GUI thread's own CPU time, i.e. the time it waited for
    the interpreter (another Python thread holding the GIL) or for a core (other processes): on a
    shared machine it tells a busy worker's cost apart from a slow CPU."""
    times, waits = [], []
    missed = 0
    last = 0.0
    for i in range(frames):
        time.sleep(max(0.0, last + spacing_s - time.perf_counter()))
        last = time.perf_counter()
        before = [counter.of(v) for v in views]
        t0, c0 = time.perf_counter(), time.thread_time()
        send(i)
        app.processEvents()
        for v, n in zip(views, before, strict=True):
            if counter.of(v) == n:  # not painted yet: paint now (a screen would wait for its vsync)
                v.viewport().repaint()
        times.append((time.perf_counter() - t0) * 1000)
        waits.append(times[-1] - (time.thread_time() - c0) * 1000)
        missed += any(counter.of(v) == n for v, n in zip(views, before, strict=True))
    t = np.asarray(times)
    return {
        "frames": frames,
        "p50_ms": round(float(np.percentile(t, 50)), 2),
        "p95_ms": round(float(np.percentile(t, 95)), 2),
        "max_ms": round(float(t.max()), 2),
        "waiting_p50_ms": round(float(np.percentile(waits, 50)), 2),
        "waiting_p95_ms": round(float(np.percentile(waits, 95)), 2),
        "frames_with_a_view_not_repainted": int(missed),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    args = ap.parse_args()

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["radlens-bench"])
    from radlens.viewer.main_window import MainWindow

    settings_dir = tempfile.mkdtemp(prefix="radlens-bench-")
    settings = QtCore.QSettings(os.path.join(settings_dir, "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1600, 700)
    window.show()
    app.processEvents()

    volume = synthetic_ct(tuple(args.shape))
    rss0 = rss_bytes()
    window.set_volume(volume)
    app.processEvents()
    rss1 = rss_bytes()

    counter = PaintCounter()
    for v in window.views.values():
        v.viewport().installEventFilter(counter)
    axial = window.views["axial"]
    vp = axial.viewport()
    centre = QtCore.QPointF(vp.rect().center())

    def key(i: int) -> None:
        k = QtCore.Qt.Key.Key_Up if (i // 50) % 2 == 0 else QtCore.Qt.Key.Key_Down
        QtWidgets.QApplication.sendEvent(
            axial, QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, k, QtCore.Qt.KeyboardModifier.NoModifier)
        )

    def mouse(kind, pos, buttons):
        button = (
            QtCore.Qt.MouseButton.LeftButton if kind != QtCore.QEvent.Type.MouseMove else QtCore.Qt.MouseButton.NoButton
        )
        ev = QtGui.QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)

    def drag(i: int) -> None:
        dx = 3 if (i // 40) % 2 == 0 else -3
        drag.pos = drag.pos + QtCore.QPointF(dx, 1 if dx > 0 else -1)
        mouse(QtCore.QEvent.Type.MouseMove, drag.pos, QtCore.Qt.MouseButton.LeftButton)

    def with_drag(run):
        drag.pos = QtCore.QPointF(centre)
        mouse(QtCore.QEvent.Type.MouseButtonPress, drag.pos, QtCore.Qt.MouseButton.LeftButton)
        for _ in range(3):  # pass pyqtgraph's drag threshold before timing
            time.sleep(0.012)
            drag.pos = drag.pos + QtCore.QPointF(4, 0)
            mouse(QtCore.QEvent.Type.MouseMove, drag.pos, QtCore.Qt.MouseButton.LeftButton)
            app.processEvents()
        try:
            return run()
        finally:
            mouse(QtCore.QEvent.Type.MouseButtonRelease, drag.pos, QtCore.Qt.MouseButton.NoButton)
            app.processEvents()

    views = [v for v in window.views.values() if v.isVisible()]

    def scenarios() -> dict:
        w0 = window.study.state.window
        out = {"scroll": measure(app, views, counter, key, args.frames)}
        # pyqtgraph drops mouse moves closer than 1/mouseRateLimit (10 ms): move like a 90 Hz mouse
        out["window_drag"] = with_drag(lambda: measure(app, views, counter, drag, args.frames, spacing_s=0.011))
        assert window.study.state.window != w0, "the drag did not change the window"
        return out

    results = {"idle": scenarios()}
    window.set_findings(synthetic_findings(volume))
    app.processEvents()
    results["idle_with_overlays"] = scenarios()
    window.set_findings(None)
    app.processEvents()
    for name, channel in (("busy_worker", "infer"), ("busy_thread", "bench")):
        started = []

        def seen(ev, started=started):
            started.append(ev)

        window.runner.progressed.connect(seen)
        window.runner.start(channel, busy_job)
        deadline = time.monotonic() + 120
        while not started and time.monotonic() < deadline:  # the models' process may have to start first
            app.processEvents()
            time.sleep(0.01)
        window.runner.progressed.disconnect(seen)
        time.sleep(0.3)
        results[name] = scenarios()
        window.runner.cancel(channel)
        window.runner.wait_idle(10000)

    report = {
        "bench": "render",
        "shape_zyx": list(volume.shape_zyx),
        "layout": window.layout(),
        "view_px": [axial.width(), axial.height()],
        "cpu_cores": os.cpu_count(),
        "results": results,
        "goal_p95_ms": 16.0,
        "memory": {
            "volume_mb": round(volume.nbytes / 2**20, 1),
            "added_by_opening_mb": round((rss1 - rss0) / 2**20, 1),
            "added_in_volume_copies": round((rss1 - rss0) / volume.nbytes, 3),
        },
        "note": "frame = input event sent → event loop repainted the views; offscreen Qt; shared machine",
    }
    print(json.dumps(report, indent=1))
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
