"""The main window: three plane views, the study browser, layers, findings, AI panel and jobs.

It builds and wires the widgets and draws what the controller (viewer.controller, Qt-free) tells it
through the ``View`` calls; the controller owns the study, the results, the jobs and the keymap.
"""

from __future__ import annotations

import functools
from pathlib import Path

from radlens.imaging.geometry import PLANES
from radlens.imaging.progress import Progress
from radlens.viewer.ai_panel import AiPanel
from radlens.viewer.browser import StudyBrowser
from radlens.viewer.cine import CineBar
from radlens.viewer.controller import Controller
from radlens.viewer.dicom_actions import DicomActions
from radlens.viewer.edit_panel import TOOLS, EditPanel
from radlens.viewer.export_actions import ExportActions
from radlens.viewer.findings_panel import FindingsPanel, LayersPanel
from radlens.viewer.measurements_panel import MeasurementsPanel
from radlens.viewer.menus import build_menus
from radlens.viewer.phases import PhaseBar
from radlens.viewer.protocols import Redraw
from radlens.viewer.qt import QtCore, QtWidgets
from radlens.viewer.slab_control import SlabControl
from radlens.viewer.slice_curve import SliceCurve
from radlens.viewer.slice_view import SliceView
from radlens.viewer.state import Study, ViewState, to_plane
from radlens.viewer.worker import JobRunner

TOOL_HINTS = {
    "wl": "left drag: window/level",
    "ruler": "left drag: ruler",
    "roi": "left drag: ellipse ROI",
    "polygon": "click the corners of a polygon ROI; click the first one again to close it",
    "angle": "click three points, the vertex second",
    "recist": "click the two ends of the long axis, then of the short axis",
    **{name: tip for name, _, tip in TOOLS if name != "wl"},
}


def _scrolling(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """A tall panel in a scroll area, so that it does not set the window's minimum height."""
    area = QtWidgets.QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    area.setWidget(widget)
    return area


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, settings: QtCore.QSettings | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("RadLens")
        self.setObjectName("RadLensMain")
        self.setAcceptDrops(True)
        self.resize(1400, 800)
        self.runner = JobRunner(self)

        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        grid = QtWidgets.QHBoxLayout()
        grid.setSpacing(2)
        self.views = {plane: SliceView(plane) for plane in PLANES}
        for v in self.views.values():
            grid.addWidget(v, 1)
        column.addLayout(grid, 1)
        self.setCentralWidget(central)

        self.browser = StudyBrowser()
        self.layers_panel = LayersPanel()
        self.findings_panel = FindingsPanel()
        self.ai_panel = AiPanel()
        self.edit_panel = EditPanel()
        self.measurements_panel = MeasurementsPanel()
        self._add_dock("Studies", self.browser, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        findings = self._add_dock("Findings", self.findings_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        measures = self._add_dock("Measurements", self.measurements_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        layers = self._add_dock("Layers", self.layers_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        ai = self._add_dock("AI models", self.ai_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        edit = self._add_dock("Edit", _scrolling(self.edit_panel), QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(layers, ai)
        self.tabifyDockWidget(ai, edit)
        self.tabifyDockWidget(edit, measures)
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
        sb = self.statusBar()
        sb.addWidget(self.message, 1)
        sb.addPermanentWidget(self.probe_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)

        self.slab = SlabControl()
        bar = self.addToolBar("View")
        bar.setObjectName("View toolbar")
        bar.addWidget(self.slab)

        self.recent_menu = QtWidgets.QMenu("Recent studies", self)
        self.settings = settings or QtCore.QSettings("radlens", "radlens")
        self.controller = Controller(self, self.runner, self.settings)
        self.exports = ExportActions(self)  # the screenshot, key slices, measurements and training case
        # Under the views: the cine bar (frames at the file's rate) and the 4D slider (viewer.cine, viewer.phases).
        self.cine_bar = CineBar(self.controller.cine_step)
        self.phase_bar = PhaseBar(self.controller, self.runner, self.views)
        # A study-level classifier's per-slice probability, beside the slice slider (viewer.slice_curve).
        self.slice_curve = SliceCurve()
        column.addWidget(self.slice_curve)
        column.addWidget(self.cine_bar)
        column.addWidget(self.phase_bar)
        self._connect(self.controller)
        self._build_menus()
        self.dicom = DicomActions(self)  # File ▸ Export to DICOM / Open DICOM results, and the PACS menu
        self.show_layout("1x3", "axial")
        self._restore_layout()

    # -- set-up ----------------------------------------------------------------------------------
    def _add_dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self, c: Controller) -> None:
        """What the user does goes to the controller's bound methods (all on the GUI thread)."""
        for v in self.views.values():
            v.scroll_requested.connect(c.scroll)
            v.window_dragged.connect(c.drag_window)
            v.clicked.connect(c.click)
            v.probed.connect(c.probe)
            v.measured.connect(self.set_status)
            v.painted.connect(c.editor.paint)
            v.boxed.connect(c.editor.box_drag)
            v.seeded.connect(c.editor.segment_at)
            v.measurement_drawn.connect(c.measurements.add)
            v.measure_preview.connect(c.measurements.preview)
        self.runner.progressed.connect(c.on_progress)
        self.runner.finished.connect(c.on_finished)
        self.cine_bar.toggled.connect(c.set_cine)
        self.cine_bar.seek.connect(c.scroll)
        self.slice_curve.seek.connect(c.scroll)
        self.browser.load_requested.connect(c.load_source)
        self.layers_panel.changed.connect(c.layer_changed)
        self.layers_panel.all_toggled.connect(c.set_overlays_on)
        self.findings_panel.selected.connect(c.select_finding)
        self.findings_panel.decided.connect(c.decide)
        self.ai_panel.run_requested.connect(c.models.run)
        self.ai_panel.cancel_requested.connect(c.models.cancel)
        self.ai_panel.modality_chosen.connect(c.set_modality)
        self.ai_panel.run_on_open.toggled.connect(c.set_run_on_open)
        self.cancel_button.clicked.connect(c.cancel_loading)
        e = self.edit_panel
        e.tool_chosen.connect(self.set_tool)
        e.brush_changed.connect(c.set_brush)
        e.label_changed.connect(c.set_edit_label)
        e.fill_requested.connect(c.editor.fill_holes)
        e.delete_requested.connect(c.editor.delete_boxes)
        e.undo_requested.connect(c.editor.undo)
        e.redo_requested.connect(c.editor.redo)
        e.save_case_requested.connect(self.exports.save_training_case_dialog)
        self.slab.changed.connect(c.set_slab)
        m = self.measurements_panel
        m.jump_requested.connect(c.measurements.jump)
        m.delete_requested.connect(c.measurements.delete)
        m.export_requested.connect(self.exports.export_measurements_dialog)

    def _build_menus(self) -> None:
        """What each menu entry and key does (viewer.menus holds the table and the keymap)."""
        handlers = {
            **self.controller.actions(),
            "open_file": self.open_file_dialog,
            "open_folder": self.open_folder_dialog,
            "open_findings": self.open_findings_dialog,
            "export": self.exports.export_dialog,
            "export_accepted": self.exports.export_accepted_dialog,
            "save_training_case": self.exports.save_training_case_dialog,
            "export_measurements": self.exports.export_measurements_dialog,
            "quit": self.close,
            "fit": self.fit_views,
            "one_to_one": self.one_to_one,
            "tags": self.show_tags,
            **{f"tool:{tool}": functools.partial(self.set_tool, tool) for tool in TOOL_HINTS},
        }
        self.menu_actions = build_menus(self.menuBar(), handlers, self.recent_menu)

    # -- the view protocol (viewer.controller.View) ----------------------------------------------
    def show_volume(self, study: Study | None, synthetic: bool) -> None:
        for v in self.views.values():
            v.corner_extra = "SYNTHETIC" if synthetic else ""
            v.set_volume(study and study.volume, study and study.state)
        self.ai_panel.set_volume(study and study.source)
        self.cine_bar.set_study(study and study.volume, study and study.state)
        self.slice_curve.set_findings(study and study.state)
        self.phase_bar.set_study(study)
        if study is None:
            self.layers_panel.set_state(None)
            self.findings_panel.set_state(None)
            self.measurements_panel.set_state(None)
            return
        self.measurements_panel.set_state(study.state, study.volume)
        vol = study.volume
        title = f"RadLens — {vol.description or Path(vol.source).name} ({vol.modality})"
        self.setWindowTitle(title + (" — SYNTHETIC" if synthetic else ""))

    def show_preview(self, image, pixel_mm, levels) -> None:
        self.views["axial"].show_preview(image, pixel_mm, levels)

    def show_layout(self, layout: str, plane: str) -> None:
        """1×3 or one view; a view hidden while the study changed catches up when shown."""
        for p, v in self.views.items():
            v.setVisible(layout != "single" or p == plane)
            v.set_crosshair_visible(layout != "single")
        for v in self._shown_views():
            v.refresh()
        self.cine_bar.sync()

    def show_findings(self, state: ViewState) -> None:
        for v in self.views.values():
            v.rebuild_layers()
            v.refresh()
        self.slice_curve.set_findings(state)
        self.ai_panel.show_classifications(state.findings)
        self.layers_panel.set_state(state)
        self.findings_panel.set_state(state)

    def show_rows(self, state: ViewState) -> None:
        self.findings_panel.set_state(state)

    def show_selection(self, state: ViewState) -> None:
        """Every plane goes to the selected finding (its box drawn thicker), and its row is selected."""
        self.redraw("slices")
        self.redraw("overlays")
        for plane, v in self.views.items():
            _, row, col = to_plane(plane, state.cursor_zyx, state.shape_zyx, state.flip_z)
            v.center_on(row, col)
        self.findings_panel.show_selected(state.selected)

    def show_measurements(self, state: ViewState, *, focus: bool) -> None:
        """The measurements panel and the views; with ``focus`` every plane goes to the selected one."""
        grew = len(state.measurements) > len(self.measurements_panel.ids)
        self.measurements_panel.set_state(state, self.study.volume)
        if grew:  # a new measurement: its list comes to the front
            self.findChild(QtWidgets.QDockWidget, "Measurements").raise_()
        if focus:
            self.redraw("slices")
            for plane, v in self.views.items():
                _, row, col = to_plane(plane, state.cursor_zyx, state.shape_zyx, state.flip_z)
                v.center_on(row, col)
        for v in self._shown_views():
            v.draw_measurements()

    def show_overlays_on(self, on: bool) -> None:
        self.layers_panel.all_check.blockSignals(True)
        self.layers_panel.all_check.setChecked(on)
        self.layers_panel.all_check.blockSignals(False)
        self.redraw("overlays")

    def redraw(self, what: Redraw) -> None:
        """The shown views draw again what changed: the slices (and crosshair), levels, or overlays."""
        if what == "slices":
            self.cine_bar.sync()
            self.slice_curve.sync()
        for v in self._shown_views():
            if what == "slices":
                v.refresh(levels=False)
            elif what == "levels":
                v.refresh(image=False, overlays=False)
            elif what == "images":  # the same slices drawn another way (a thick slab)
                v.shown_index = -1
                v.refresh(levels=False)
            else:
                v.invalidate_overlays()
                v.refresh(image=False, levels=False)

    def _shown_views(self) -> list[SliceView]:
        return [v for v in self.views.values() if not v.isHidden()]

    def set_cine(self, on: bool) -> None:
        self.cine_bar.set_playing(on)

    def set_status(self, text: str, *, error: bool = False) -> None:
        """Bad input never takes the application down: one line, in red, in the status bar."""
        if error:
            text = text.splitlines()[0] if text else "error"
        self.message.setStyleSheet("color: #ff6060;" if error else "")
        self.message.setText(text)

    def show_progress(self, progress: Progress | None) -> None:
        self.progress.setVisible(progress is not None)
        self.cancel_button.setVisible(progress is not None)
        if progress is None:
            return
        self.progress.setMaximum(max(progress.total, 0))
        self.progress.setValue(min(progress.done, max(progress.total, 0)))
        if progress.message:
            self.message.setText(progress.message)

    def set_probe(self, text: str) -> None:
        self.probe_label.setText(text)

    def set_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for p in paths:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(functools.partial(self.open_paths, [p]))

    # -- what the app, the tests and bench/render.py call ------------------------------------------
    @property
    def study(self) -> Study | None:
        return self.controller.study

    def set_volume(self, volume, window=None) -> None:
        self.controller.set_volume(volume, window)

    def set_findings(self, findings) -> None:
        self.controller.set_findings(findings)

    def open_paths(self, paths, *, run_models: bool | None = None) -> None:
        self.controller.open_paths(paths, run_models=run_models)

    def open_demo(self) -> None:
        self.controller.open_demo()

    def layout(self) -> str:
        return self.controller.layout()

    def show_error(self, text: str) -> None:
        self.set_status(text, error=True)

    # -- dialogs, tools and zoom (no study state) ------------------------------------------------
    def open_file_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open image file")
        if path:
            self.controller.open_paths([path])

    def open_folder_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open folder")
        if path:
            self.controller.open_paths([path])

    def open_findings_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder holding findings.json")
        if path:
            self.controller.load_findings_folder(path)

    def set_tool(self, tool: str) -> None:
        for v in self.views.values():
            v.tool = tool
            v.tools.clear()
        self.edit_panel.show_tool(tool)
        self.controller.set_brush(self.edit_panel.brush(erase=tool == "eraser"))
        self.set_status(TOOL_HINTS[tool])

    def fit_views(self) -> None:
        for v in self.views.values():
            v.fit()

    def one_to_one(self) -> None:
        for v in self.views.values():
            v.one_to_one()

    def show_tags(self) -> None:
        if self.study is None:
            return
        from radlens.viewer.tags import TagBrowser

        st = self.study.state
        z = round(self.study.orientation.source_index(st.cursor_zyx)[0])  # the stored slice under the cursor
        TagBrowser(self.study.source, z, self).show()

    # -- Qt events ---------------------------------------------------------------------------------
    def keyPressEvent(self, ev):
        """Slice keys (arrows, Page Up/Down, Home/End) pressed outside a view go to the active one."""
        Key = QtCore.Qt.Key
        if self.study is not None and ev.key() in (
            Key.Key_Up,
            Key.Key_Down,
            Key.Key_PageUp,
            Key.Key_PageDown,
            Key.Key_Home,
            Key.Key_End,
        ):
            self.views[self.controller.active_plane()].keyPressEvent(ev)
            return
        super().keyPressEvent(ev)

    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.controller.open_paths(paths)

    def _restore_layout(self) -> None:
        """The window's size and place and its docks as the user left them (kept on close)."""
        geometry, docks = self.settings.value("window/geometry"), self.settings.value("window/docks")
        if isinstance(geometry, QtCore.QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(docks, QtCore.QByteArray):
            self.restoreState(docks)

    def closeEvent(self, ev):
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/docks", self.saveState())
        self.runner.cancel_all()
        self.cine_bar.set_playing(False)
        self.runner.wait_idle(5000)
        super().closeEvent(ev)
