"""The main window: three plane views, the study browser, layers, findings, AI panel and jobs.

The window owns one ViewState per open series and redraws views from it; all long work (scan,
load, models, demo data) runs through the JobRunner, whose events arrive on the GUI thread.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.imaging.errors import RadlensError
from radlens.imaging.geometry import PLANES
from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume, Window
from radlens.imaging.windowing import default_window, percentile_window, presets
from radlens.inference.findings import Findings, FindingsError, check_matches, read_findings
from radlens.viewer import jobs
from radlens.viewer.ai_panel import AiPanel
from radlens.viewer.browser import StudyBrowser
from radlens.viewer.findings_panel import FindingsPanel, LayersPanel
from radlens.viewer.jobs import JobEvent
from radlens.viewer.layers import FindingKey, LayerKey
from radlens.viewer.qt import QtCore, QtGui, QtWidgets
from radlens.viewer.review import load_decisions, save_decisions
from radlens.viewer.slice_view import SliceView
from radlens.viewer.state import ViewState, from_plane, to_plane
from radlens.viewer.worker import JobRunner

RECENT_MAX = 10


@dataclass
class Study:
    """One loaded series and its view state (which holds the findings shown over it)."""

    volume: Volume
    state: ViewState

    @property
    def findings(self) -> Findings | None:
        return self.state.findings

    @property
    def key(self) -> str:
        return self.volume.series_uid or self.volume.source


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, settings: QtCore.QSettings | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings or QtCore.QSettings("radlens", "radlens")
        self.setWindowTitle("RadLens")
        self.setObjectName("RadLensMain")
        self.setAcceptDrops(True)
        self.resize(1400, 800)
        self.study: Study | None = None
        self.results: dict[str, Findings] = {}  # AI results per series, kept across reopenings
        self.synthetic = False
        self._streamed: set[str] = set()
        self._last_progress = 0.0
        self._cine = QtCore.QTimer(self)
        self._cine.setInterval(80)
        self._cine.timeout.connect(self._cine_step)

        self.runner = JobRunner(self)
        self.runner.progressed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)

        # views
        central = QtWidgets.QWidget()
        self._grid = QtWidgets.QHBoxLayout(central)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.views: dict[str, SliceView] = {}
        for plane in PLANES:
            v = SliceView(plane)
            v.scroll_requested.connect(self._on_scroll)
            v.window_dragged.connect(self._on_window_drag)
            v.clicked.connect(self._on_view_clicked)
            v.probed.connect(self._on_probe)
            v.measured.connect(self._on_measured)
            self._grid.addWidget(v, 1)
            self.views[plane] = v
        self.setCentralWidget(central)

        # docks
        self.browser = StudyBrowser()
        self.browser.load_requested.connect(self.load_source)
        self.layers_panel = LayersPanel()
        self.layers_panel.changed.connect(self._on_layer_changed)
        self.layers_panel.all_toggled.connect(self.set_overlays_on)
        self.findings_panel = FindingsPanel()
        self.findings_panel.selected.connect(self.select_finding)
        self.findings_panel.decided.connect(self.decide)
        self.ai_panel = AiPanel()
        self.ai_panel.run_requested.connect(self.run_models)
        self.ai_panel.cancel_requested.connect(self.cancel_models)
        self.ai_panel.run_on_open.setChecked(self.settings.value("run_on_open", "false") == "true")
        self.ai_panel.run_on_open.toggled.connect(self._remember_run_on_open)
        self._add_dock("Studies", self.browser, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        findings = self._add_dock("Findings", self.findings_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        layers = self._add_dock("Layers", self.layers_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        ai = self._add_dock("AI models", self.ai_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(layers, ai)
        layers.raise_()
        self.resizeDocks([findings, layers], [1, 1], QtCore.Qt.Orientation.Vertical)

        # status bar: message, probe, progress, cancel
        self.message = QtWidgets.QLabel("Open a study: File ▸ Open, drag and drop, or radlens --demo")
        self.probe_label = QtWidgets.QLabel("")
        self.probe_label.setMinimumWidth(460)  # a steady width: the probe changes on every mouse move
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_loading)
        sb = self.statusBar()
        sb.addWidget(self.message, 1)
        sb.addPermanentWidget(self.probe_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        self._build_menus()
        self.apply_layout()

    # -- set-up ----------------------------------------------------------------------------------
    def _add_dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "Open file…", self.open_file_dialog, "Ctrl+O")
        self._action(f, "Open folder…", self.open_folder_dialog, "Ctrl+Shift+O")
        self._action(f, "Open findings…", self.open_findings_dialog)
        self.recent_menu = f.addMenu("Recent studies")
        self._refresh_recent_menu()
        f.addSeparator()
        self._action(f, "Export screenshot…", self.export_dialog, "Ctrl+E")
        self._action(f, "Export accepted findings…", self.export_accepted_dialog)
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")
        v = mb.addMenu("&View")
        self._action(v, "Single view / 1×3\tM", self.toggle_layout)
        for i, plane in enumerate(PLANES, 1):
            self._action(v, f"{plane.capitalize()}\tCtrl+{i}", functools.partial(self.set_active_plane, plane))
        self._action(v, "Fit\tF", self.fit_views)
        self._action(v, "1:1\tZ", self.one_to_one)
        self._action(v, "Show AI overlays\tA", self.toggle_overlays)
        self._action(v, "Cine\tSpace", self.toggle_cine)
        self._action(v, "DICOM tags…\tT", self.show_tags)
        w = mb.addMenu("&Window")
        for p in presets():
            self._action(
                w,
                f"{p.name.capitalize()} {p.window.width:g}/{p.window.level:g}\t{p.key}",
                functools.partial(self.apply_preset, p.name),
            )
        self._action(w, "Series window\t9", self.series_window)
        self._action(w, "Auto (percentile)\t0", self.auto_window)
        self._action(w, "Invert\tI", self.toggle_invert)
        t = mb.addMenu("&Tools")
        self._action(t, "Window/level (left drag)\tW", functools.partial(self.set_tool, "wl"))
        self._action(t, "Ruler\tR", functools.partial(self.set_tool, "ruler"))
        self._action(t, "Ellipse ROI\tO", functools.partial(self.set_tool, "roi"))
        self._action(t, "Next finding\tN", functools.partial(self.step_finding, 1))
        self._action(t, "Previous finding\tP", functools.partial(self.step_finding, -1))

    def _action(self, menu, text: str, slot, shortcut: str | None = None) -> QtGui.QAction:
        """Single-key shortcuts are handled in keyPressEvent (shown after a tab in the text only)."""
        act = menu.addAction(text)
        act.triggered.connect(slot)
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        return act

    # -- opening ---------------------------------------------------------------------------------
    def open_paths(self, paths, *, run_models: bool | None = None) -> None:
        """Scan files/folders in the background; the first series found is loaded."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        if run_models is not None:
            self.ai_panel.run_on_open.setChecked(run_models)
        for p in paths:
            self._remember_recent(p)
        self.show_message(f"Scanning {', '.join(paths)} …")
        self.runner.start("scan", functools.partial(jobs.scan_paths, tuple(paths)))

    def load_source(self, source) -> None:
        """Load a SeriesInfo or a path in the background; the middle slice shows first."""
        self.runner.cancel("infer")
        self.runner.cancel("load")
        self._cine.stop()
        self.show_message(f"Loading {getattr(source, 'description', '') or source} …")
        self._preview_pixel_mm = _pixel_mm_of(source)
        self._preview_modality = getattr(source, "modality", "")
        self.runner.start("load", functools.partial(jobs.load_volume, source))

    def open_demo(self) -> None:
        self.synthetic = True
        self.show_message("Preparing the synthetic demo studies …")
        self.runner.start("demo", jobs.demo_paths)

    def open_file_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open image file")
        if path:
            self.open_paths([path])

    def open_folder_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open folder")
        if path:
            self.open_paths([path])

    def open_findings_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder holding findings.json")
        if path:
            self.load_findings_folder(path)

    def load_findings_folder(self, folder) -> bool:
        if self.study is None:
            self.show_error("open a study before its findings")
            return False
        try:
            findings = read_findings(folder)
            check_matches(findings, self.study.volume, str(folder))
        except RadlensError as err:
            self.show_error(str(err))
            return False
        self.set_findings(findings)
        return True

    # recent files
    def recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        items = [path] + [p for p in self.recent() if p != path]
        self.settings.setValue("recent", items[:RECENT_MAX])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        for p in self.recent():
            act = self.recent_menu.addAction(p)
            act.triggered.connect(functools.partial(self.open_paths, [p]))

    # drag and drop
    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.open_paths(paths)

    # -- jobs ------------------------------------------------------------------------------------
    @QtCore.Slot(object)
    def _on_progress(self, ev: JobEvent) -> None:
        p: Progress = ev.progress
        shown = self._show_progress(p)
        if ev.channel == "load" and p.preview is not None and hasattr(p.preview, "image"):
            self._show_load_preview(p.preview)
        elif ev.channel == "infer" and isinstance(p.preview, Findings):
            self._on_model_result(p.preview)
            self.ai_panel.set_progress(p)
        elif ev.channel == "infer" and shown:
            self.ai_panel.set_progress(p)
        elif ev.channel == "thumbs" and p.preview is not None:
            uid, image = p.preview
            self.browser.set_thumbnail(uid, image)

    @QtCore.Slot(object)
    def _on_finished(self, ev: JobEvent) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if ev.channel == "infer":
            self.ai_panel.finished(ev)
        if ev.cancelled:
            self.show_message(f"{ev.channel}: cancelled")
            return
        if ev.error:
            self.show_error(ev.error)
            return
        handler = {
            "scan": self._scan_done,
            "load": self._load_done,
            "demo": self._demo_done,
            "infer": self._infer_done,
            "thumbs": None,
        }.get(ev.channel)
        if handler is not None:
            handler(ev.result)

    def _show_progress(self, p: Progress) -> bool:
        """At most ~10 updates a second: a chatty job must not cost the views their frames."""
        now = time.monotonic()
        finished = p.total > 0 and p.done >= p.total
        if not finished and now - self._last_progress < 0.1:
            return False
        self._last_progress = now
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setMaximum(max(p.total, 0))
        self.progress.setValue(min(p.done, max(p.total, 0)))
        if p.message:
            self.message.setText(p.message)
        return True

    def cancel_loading(self) -> None:
        for channel in ("scan", "load", "demo", "thumbs"):
            self.runner.cancel(channel)
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.show_message("cancelled")

    def _scan_done(self, results) -> None:
        series = self.browser.add_scan(results)
        if not series:
            reasons = "; ".join(f"{s.path}: {s.reason}" for _, r in results for s in r.skipped[:3])
            self.show_error(f"no images found ({reasons or 'empty'})")
            return
        self.show_message(f"{len(series)} series found")
        self.load_source(series[0])
        self.runner.start("thumbs", functools.partial(jobs.thumbnails, tuple(series)))

    def _show_load_preview(self, preview) -> None:
        image = np.asarray(preview.image)
        w = percentile_window(image)
        if self._preview_modality.upper() == "CT":
            w = default_window(Volume(np.zeros((1, 1, 1), np.int16), modality="CT"))
        self.set_volume(None)
        view = self.views["axial"]
        view.show_preview(image, self._preview_pixel_mm, (w.low, w.high))
        self.show_message(f"Loading… showing slice {preview.index + 1}/{preview.total}")

    def _load_done(self, volume: Volume) -> None:
        self.set_volume(volume)

    def _demo_done(self, paths) -> None:
        self.open_paths(paths, run_models=True)

    # -- the study -------------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, window: Window | None = None) -> None:
        """Show a volume (None clears); findings beside it or kept from an earlier run come back."""
        self.runner.cancel("infer")
        self._streamed = set()
        for v in self.views.values():
            v.corner_extra = "SYNTHETIC" if self.synthetic else ""
        if volume is None:
            self.study = None
            for v in self.views.values():
                v.set_volume(None, None)
            self.layers_panel.set_state(None)
            self.findings_panel.set_state(None)
            self.ai_panel.set_volume(None)
            return
        state = ViewState.for_volume(volume, window or default_window(volume))
        state.decisions = load_decisions(volume)
        state.layout = getattr(self, "_layout", "1x3")  # the layout the user chose stays
        state.active_plane = getattr(self, "_active_plane", "axial")
        if volume.shape_zyx[0] == 1:  # a single image (radiograph, photo): one view, no MPR
            state.layout, state.active_plane = "single", "axial"
        self.study = Study(volume, state)
        for v in self.views.values():
            v.set_volume(volume, state)
        self.apply_layout()
        title = f"RadLens — {volume.description or Path(volume.source).name} ({volume.modality})"
        self.setWindowTitle(title + (" — SYNTHETIC" if self.synthetic else ""))
        msg = f"{volume.description or volume.source or 'volume'}: {' × '.join(map(str, volume.shape_zyx))}"
        self.show_message(msg + ("; " + "; ".join(volume.warnings) if volume.warnings else ""))
        findings = self.results.get(self.study.key) or self._findings_beside(volume)
        if findings is not None:
            self.set_findings(findings)
        else:
            self.layers_panel.set_state(state)
            self.findings_panel.set_state(state)
        self.ai_panel.set_volume(volume)
        if self.ai_panel.run_on_open.isChecked() and self.study.key not in self.results:
            self.run_models()

    def _findings_beside(self, volume: Volume) -> Findings | None:
        if not volume.source:
            return None
        src = Path(volume.source)
        folder = src if src.is_dir() else src.parent
        if not (folder / "findings.json").is_file():
            return None
        try:
            findings = read_findings(folder)
            check_matches(findings, volume, str(folder))
        except FindingsError:
            return None
        return findings

    def set_findings(self, findings: Findings | None) -> None:
        st = self.study
        if st is None:
            return
        st.state.set_findings(findings, st.volume)
        for v in self.views.values():
            v.rebuild_layers()
            v.refresh()
        self.layers_panel.set_state(st.state)
        self.findings_panel.set_state(st.state)

    # -- reading ---------------------------------------------------------------------------------
    def _on_scroll(self, plane: str, delta: int) -> None:
        if self.study is None:
            return
        self.study.state.active_plane = plane
        self.study.state.scroll(plane, delta)
        self.redraw_slices()

    def redraw_slices(self) -> None:
        """Each view shows its slice again (cheap when unchanged) and the crosshair follows."""
        for v in self._shown_views():
            v.refresh(levels=False)

    def _on_window_drag(self, dx: float, dy: float) -> None:
        if self.study is None:
            return
        self.study.state.drag_window(dx, dy)
        self.redraw_levels()

    def redraw_levels(self) -> None:
        for v in self._shown_views():
            v.refresh(image=False, overlays=False)

    def _shown_views(self) -> list[SliceView]:
        """The views on screen (all three in 1×3; apply_layout catches a hidden one up when shown)."""
        single = self.layout() == "single"
        return [v for p, v in self.views.items() if not single or p == self.active_plane()]

    def set_window(self, window: Window) -> None:
        if self.study is None:
            return
        self.study.state.window = window
        self.redraw_levels()

    def apply_preset(self, name: str) -> None:
        p = next(p for p in presets() if p.name == name)
        self.set_window(p.window)
        self.show_message(f"window: {p.name} {p.window.width:g}/{p.window.level:g}")

    def series_window(self) -> None:
        if self.study is not None:
            self.set_window(default_window(self.study.volume))

    def auto_window(self) -> None:
        if self.study is not None:
            self.set_window(percentile_window(self.study.volume.array))

    def toggle_invert(self) -> None:
        if self.study is not None:
            self.study.state.invert = not self.study.state.invert
            self.redraw_levels()

    def _on_view_clicked(self, plane: str, row: float, col: float) -> None:
        if self.study is None:
            return
        st = self.study.state
        st.active_plane = plane
        zyx = from_plane(plane, st.slice_index(plane), np.floor(row), np.floor(col), st.shape_zyx, st.flip_z)
        st.set_cursor(zyx)
        self.redraw_slices()

    def _on_probe(self, plane: str, row: float, col: float) -> None:
        if self.study is None:
            return
        st, vol = self.study.state, self.study.volume
        r, c = int(np.floor(row)), int(np.floor(col))
        zyx = [round(v) for v in from_plane(plane, st.slice_index(plane), r, c, st.shape_zyx, st.flip_z)]
        if not all(0 <= i < n for i, n in zip(zyx, st.shape_zyx, strict=True)):
            self.probe_label.setText("")
            return
        value = vol.array[tuple(zyx)]
        unit = " HU" if vol.modality == "CT" else ""
        lps = vol.index_to_lps(zyx)
        val = f"{value.tolist()}" if vol.is_rgb else f"{float(value):g}{unit}"
        self.probe_label.setText(
            f"voxel z{zyx[0]} y{zyx[1]} x{zyx[2]}  LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm  {val}"
        )

    def _on_measured(self, text: str) -> None:
        self.show_message(text)

    def set_tool(self, tool: str) -> None:
        for v in self.views.values():
            v.tool = tool
        self.show_message({"wl": "left drag: window/level", "ruler": "left drag: ruler", "roi": "left drag: ROI"}[tool])

    def set_active_plane(self, plane: str) -> None:
        if self.study is not None:
            self.study.state.active_plane = plane
        self._active_plane = plane
        self.apply_layout()

    def toggle_layout(self) -> None:
        st = self.study.state if self.study else None
        self._layout = "single" if self.layout() == "1x3" else "1x3"
        if st is not None:
            st.layout = self._layout
        self.apply_layout()

    def layout(self) -> str:
        return self.study.state.layout if self.study else getattr(self, "_layout", "1x3")

    def active_plane(self) -> str:
        return self.study.state.active_plane if self.study else getattr(self, "_active_plane", "axial")

    def apply_layout(self) -> None:
        single = self.layout() == "single"
        for plane, v in self.views.items():
            v.setVisible(not single or plane == self.active_plane())
            v.set_crosshair_visible(not single)
        if self.study is not None:
            for v in self._shown_views():
                v.refresh()

    def fit_views(self) -> None:
        for v in self.views.values():
            v.fit()

    def one_to_one(self) -> None:
        for v in self.views.values():
            v.one_to_one()

    def toggle_cine(self) -> None:
        if self._cine.isActive():
            self._cine.stop()
        elif self.study is not None:
            self._cine.start()

    def _cine_step(self) -> None:
        if self.study is None:
            self._cine.stop()
            return
        st = self.study.state
        plane = st.active_plane
        n = st.count(plane)
        st.set_slice(plane, (st.slice_index(plane) + 1) % n)
        self.redraw_slices()

    def show_tags(self) -> None:
        if self.study is None:
            return
        from radlens.viewer.tags import TagBrowser

        st = self.study.state
        dlg = TagBrowser(self.study.volume, st.slice_index("axial"), self)
        dlg.show()

    # -- overlays and findings -------------------------------------------------------------------
    def toggle_overlays(self) -> None:
        self.set_overlays_on(not (self.study.state.overlays_on if self.study else True))

    def set_overlays_on(self, on: bool) -> None:
        if self.study is None:
            return
        self.study.state.overlays_on = bool(on)
        self.layers_panel.all_check.blockSignals(True)
        self.layers_panel.all_check.setChecked(bool(on))
        self.layers_panel.all_check.blockSignals(False)
        self.redraw_overlays()

    def redraw_overlays(self) -> None:
        for v in self._shown_views():
            v.invalidate_overlays()
            v.refresh(image=False, levels=False)

    def _on_layer_changed(self, key: LayerKey) -> None:
        if self.study is None:
            return
        self.redraw_overlays()
        if key.kind == "detection":
            self.findings_panel.set_state(self.study.state)

    def select_finding(self, key: FindingKey) -> None:
        if self.study is None:
            return
        row = self.study.state.select(key)
        if row is None:
            return
        self._centre_on_cursor()
        self.findings_panel.show_selected(key)

    def step_finding(self, delta: int) -> None:
        if self.study is None:
            return
        row = self.study.state.step_finding(delta)
        if row is not None:
            self._centre_on_cursor()
            self.findings_panel.show_selected(row.key)
            self.show_message(f"{row.model}: {row.label} {row.size}")

    def _centre_on_cursor(self) -> None:
        st = self.study.state
        self.redraw_slices()
        self.redraw_overlays()  # the selected box is drawn thicker
        for plane, v in self.views.items():
            _, row, col = to_plane(plane, st.cursor_zyx, st.shape_zyx, st.flip_z)
            v.center_on(row, col)

    def decide(self, key: FindingKey, decision: str) -> None:
        if self.study is None:
            return
        st = self.study.state
        if decision:
            st.decisions[str(key)] = decision
        else:
            st.decisions.pop(str(key), None)
        try:
            path = save_decisions(self.study.volume, st.decisions)
            self.show_message(f"review saved: {path.name}")
        except OSError as err:
            self.show_error(f"cannot save the review: {err}")
        self.findings_panel.set_state(st)

    # -- AI ----------------------------------------------------------------------------------------
    def run_models(self, bundles=None) -> None:
        if self.study is None:
            return
        bundles = tuple(bundles) if bundles else tuple(self.ai_panel.selected_bundles())
        if not bundles:
            self.ai_panel.set_status("no model fits this series")
            return
        self._streamed = set()
        self.ai_panel.started(bundles)
        self.runner.start("infer", functools.partial(jobs.infer, self.study.volume, bundles))

    def _remember_run_on_open(self, on: bool) -> None:
        self.settings.setValue("run_on_open", "true" if on else "false")

    def cancel_models(self) -> None:
        self.runner.cancel("infer")
        self.ai_panel.stopped()

    def _on_model_result(self, partial: Findings) -> None:
        if self.study is None:
            return
        base = self.study.findings or Findings.empty_for(self.study.volume, partial.device)
        self._streamed.update(m.name for m in partial.models)
        merged = base.merged(partial)
        self.results[self.study.key] = merged
        self.set_findings(merged)

    def _infer_done(self, findings: Findings) -> None:
        if self.study is None or findings is None:
            return
        rest = [m for m in findings.models if m.name not in self._streamed]
        if rest or not self._streamed:
            base = self.study.findings or Findings.empty_for(self.study.volume, findings.device)
            merged = base.merged(findings) if not self._streamed else base
            self.results[self.study.key] = merged
            self.set_findings(merged)
        self.show_message(f"AI: {len(findings.detections)} detections, {len(findings.segmentations)} masks")

    # -- export ----------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if self.study is None:
            return
        from radlens.viewer.export import ExportDialog

        dlg = ExportDialog(self, self.views[self.active_plane()].size())
        if dlg.exec():
            self.export_view(dlg.path(), dlg.size_wh(), anonymize=dlg.anonymize())

    def export_view(self, path, size_wh=None, *, anonymize: bool = False, plane: str | None = None, keep_view=True):
        """Render the plane as the user sees it (zoom and pan kept) through the exporter's code."""
        from radlens.viewer.export import render_study, save_png

        plane = plane or self.active_plane()
        if size_wh is None:
            s = self.views[plane].size()
            size_wh = (s.width(), s.height())
        try:
            image, legend = render_study(
                self.study.volume,
                self.study.state,
                plane,
                size_wh,
                anonymize=anonymize,
                synthetic=self.synthetic,
                view_rect=self.views[plane].vb.viewRect() if keep_view else None,
            )
            out = save_png(image, path, legend, anonymize=anonymize, study=self.study.volume.study)
        except RadlensError as err:
            self.show_error(str(err))
            return None
        self.show_message(f"exported {out}")
        return out

    def export_accepted_dialog(self) -> None:
        if self.study is None:
            return
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for the key slices")
        if folder:
            self.export_accepted(folder)

    def export_accepted(self, folder) -> list[Path]:
        """The key slice of every accepted finding, one PNG each."""
        st = self.study.state
        keep_cursor, keep_sel = list(st.cursor_zyx), st.selected
        out = []
        for row in st.rows:
            if st.decisions.get(row.key) == "accepted":
                st.select(row.key)
                name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(row.key))
                out.append(self.export_view(Path(folder) / f"{name}.png", plane="axial", keep_view=False))
        st.cursor_zyx, st.selected = keep_cursor, keep_sel
        self.show_message(f"exported {len(out)} key slices to {folder}")
        return out

    # -- keys and messages -------------------------------------------------------------------------
    def keyPressEvent(self, ev):
        k, mods = ev.key(), ev.modifiers()
        Key = QtCore.Qt.Key
        ctrl = bool(mods & QtCore.Qt.KeyboardModifier.ControlModifier)
        text = ev.text()
        if ctrl and k in (Key.Key_1, Key.Key_2, Key.Key_3):
            self.set_active_plane(PLANES[k - Key.Key_1])
            return
        keys = {p.key: functools.partial(self.apply_preset, p.name) for p in presets()}
        keys.update(
            {
                "0": self.auto_window,
                "9": self.series_window,
                "a": self.toggle_overlays,
                "n": functools.partial(self.step_finding, 1),
                "p": functools.partial(self.step_finding, -1),
                "i": self.toggle_invert,
                "f": self.fit_views,
                "z": self.one_to_one,
                "m": self.toggle_layout,
                "t": self.show_tags,
                " ": self.toggle_cine,
                "w": functools.partial(self.set_tool, "wl"),
                "r": functools.partial(self.set_tool, "ruler"),
                "o": functools.partial(self.set_tool, "roi"),
            }
        )
        action = None if ctrl else keys.get(text.lower())
        if action is not None:
            action()
            return
        if self.study is not None:
            view = self.views[self.active_plane()]
            if k in (Key.Key_Up, Key.Key_Down, Key.Key_PageUp, Key.Key_PageDown, Key.Key_Home, Key.Key_End):
                view.keyPressEvent(ev)
                return
        super().keyPressEvent(ev)

    def show_message(self, text: str) -> None:
        self.message.setStyleSheet("")
        self.message.setText(text)

    def show_error(self, text: str) -> None:
        """Bad input never takes the application down: one line, in red, in the status bar."""
        self.message.setStyleSheet("color: #ff6060;")
        self.message.setText(text.splitlines()[0] if text else "error")

    def closeEvent(self, ev):
        self.runner.cancel_all()
        self._cine.stop()
        self.runner.wait_idle(5000)
        super().closeEvent(ev)


def _pixel_mm_of(source) -> tuple[float, float] | None:
    spacing = getattr(source, "spacing_zyx", None)
    return (float(spacing[1]), float(spacing[2])) if spacing else None
