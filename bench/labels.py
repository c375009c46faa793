"""Frame time of the viewer with a hundred labels shown (a TotalSegmentator-like model's organs).

A SYNTHETIC CT with ``--labels`` segmentation labels of one model, each a column through every
axial slice (the worst case for scrolling: every label is on every slice), all shown at once;
scrolling the axial view as bench/render.py does (one key press → repainted views). Also how long
building the layers takes and the memory the masks hold (written only inside each label's box, as the
engine and findings.json give them: the zero pages outside are never touched). Prints JSON.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/labels.py [--labels 120] [--shape 64 512 512]

``--per-label`` draws masks that come without their model's label map, one image per label (what
the viewer does for the reader's own masks). The per-frame cost grows with the labels on a slice and
the slice's size, not with the slice count, so a short stack of 512² slices stands for a whole CT.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from render import PaintCounter, measure, rss_bytes, synthetic_ct

from radlens.viewer.qt import QtCore, QtGui, QtWidgets


def organ_findings(volume, n_labels: int, label_map: bool = True):
    """``n_labels`` SYNTHETIC labels of one model: columns on a grid over the body, through every slice.
    With ``label_map``, as the engine and findings.json give them (the model's label map beside the
    masks); without, masks only (the per-label drawing)."""
    from radlens.inference.findings import Findings, ModelRun, Segmentation, empty_mask, input_block

    _, ny, nx = volume.shape_zyx
    side = int(np.ceil(np.sqrt(n_labels)))
    cell_y, cell_x = int(0.6 * ny) // side, int(0.7 * nx) // side
    y0, x0 = int(0.2 * ny), int(0.15 * nx)
    ml = float(np.prod(volume.spacing_zyx)) / 1000
    labels = np.zeros(volume.shape_zyx, dtype=np.uint8)
    segs = []
    for i in range(n_labels):
        r, c = divmod(i, side)
        mask = empty_mask(volume.shape_zyx)
        ys, xs = y0 + r * cell_y, x0 + c * cell_x
        box = (slice(None), slice(ys + 1, ys + cell_y - 1), slice(xs + 1, xs + cell_x - 1))
        mask[box] = True
        labels[box] = i + 1
        seg = Segmentation("organs", f"organ_{i + 1:03d}", i + 1, float(mask.sum()) * ml, (), "", mask)
        segs.append(seg)
    if label_map:
        segs = [replace(s, label_map=labels) for s in segs]
    run = ModelRun("organs", "0", "segmentation")
    return Findings(input=input_block(volume), models=(run,), segmentations=tuple(segs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=120)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--per-label", action="store_true", help="masks without their label map: one image per label")
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
    window.set_volume(volume)
    app.processEvents()

    rss0 = rss_bytes()
    findings = organ_findings(volume, args.labels, label_map=not args.per_label)
    masks_rss = rss_bytes() - rss0
    t0 = time.perf_counter()
    window.set_findings(findings)
    app.processEvents()
    set_findings_s = time.perf_counter() - t0
    state = window.study.state
    shown = sum(state.shown(k) for k in state.layers)

    counter = PaintCounter()
    views = [v for v in window.views.values() if v.isVisible()]
    for v in views:
        v.viewport().installEventFilter(counter)
    axial = window.views["axial"]

    def key(i: int) -> None:
        k = QtCore.Qt.Key.Key_Up if (i // 20) % 2 == 0 else QtCore.Qt.Key.Key_Down
        QtWidgets.QApplication.sendEvent(
            axial, QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, k, QtCore.Qt.KeyboardModifier.NoModifier)
        )

    def scroll() -> dict:
        """Frame times, and the process's CPU time per frame (what a shared machine's load does not inflate)."""
        cpu0 = time.process_time()
        out = measure(app, views, counter, key, args.frames)
        out["cpu_ms_per_frame"] = round((time.process_time() - cpu0) * 1000 / args.frames, 2)
        return out

    with_labels = scroll()
    window.set_findings(None)
    app.processEvents()
    without = scroll()
    report = {
        "bench": "labels",
        "shape_zyx": list(volume.shape_zyx),
        "labels": args.labels,
        "labels_shown": int(shown),
        "drawn_as": "one image per label" if args.per_label else "one image per model's label map",
        "view_px": [axial.width(), axial.height()],
        "cpu_cores": os.cpu_count(),
        "set_findings_s": round(set_findings_s, 2),
        "scroll": with_labels,
        "scroll_without_labels": without,
        "goal_p95_ms": 16.0,
        "masks_nominal_mb": round(sum(s.mask.nbytes for s in findings.segmentations) / 2**20, 1),
        "masks_resident_mb": round(masks_rss / 2**20, 1),
        "note": "frame = key press on the axial view → views repainted; offscreen Qt; shared machine",
    }
    print(json.dumps(report, indent=1))
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
