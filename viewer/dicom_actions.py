"""DICOM and the PACS in the window: File ▸ Export to DICOM and Open DICOM results; PACS ▸ Query / retrieve,
Send results to PACS and Nodes.

One call wires it in (``DicomActions(window)``). Its jobs (viewer.dicom_jobs) run on the window's
JobRunner; it follows the runner's events for its own channels (the controller already shows their
progress, errors and cancellation in the status bar) and acts on their results on the GUI thread.
A retrieve shows each newly arrived slice as it comes and opens the study when it is complete.
After every load, SEG / SR / RTSTRUCT files beside the series that reference it are read as layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from radlens.imaging.errors import RadlensError
from radlens.inference.findings import Findings
from radlens.inference.lesions import component_key, detection_key
from radlens.viewer import dicom_jobs
from radlens.viewer.dicom_jobs import Arrived, Capture
from radlens.viewer.jobs import JobEvent
from radlens.viewer.qt import QtCore, QtGui, QtWidgets
from radlens.viewer.widgets import save_cancel

QUERY_CHANNELS = ("pacs-echo", "pacs-find", "pacs-series", "retrieve")


def default_retrieve_folder() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("radlens")) / "pacs"


class DicomActions(QtCore.QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = window.runner
        self.dialog = None  # the query dialog, made on first use
        self._then: dict[int, tuple[str, Callable, tuple]] = {}  # job id → (channel, what to do with its result)
        self._add_menus()
        self.runner.progressed.connect(self.on_progress)
        self.runner.finished.connect(self.on_finished)

    def _add_menus(self) -> None:
        w = self.window
        file_menu = next(a.menu() for a in w.menuBar().actions() if a.menu() and a.text() == "&File")
        entries = file_menu.actions()
        after = entries[entries.index(w.menu_actions["export_accepted"]) + 1]
        for text, name, slot in (
            ("Export to DICOM…", "export_dicom", self.export_dicom_dialog),
            ("Open DICOM results (SEG, SR, RTSTRUCT)…", "open_dicom_results", self.open_results_dialog),
        ):
            act = QtGui.QAction(text, file_menu)
            file_menu.insertAction(after, act)
            act.triggered.connect(slot)
            w.menu_actions[name] = act
        pacs = w.menuBar().addMenu("&PACS")
        for text, name, slot in (
            ("Query / retrieve…", "pacs_query", self.show_query),
            ("Send results to PACS…", "pacs_send", self.send_results_dialog),
            ("Nodes…", "pacs_nodes", self.edit_nodes),
        ):
            act = pacs.addAction(text)
            act.triggered.connect(slot)
            w.menu_actions[name] = act

    # -- jobs ----------------------------------------------------------------------------------------
    def _start(self, channel: str, factory, then: Callable, *payload) -> int:
        job_id = self.runner.start(channel, factory)  # a job it replaces in the channel reports nothing more
        self._then = {j: t for j, t in self._then.items() if t[0] != channel}
        self._then[job_id] = (channel, then, payload)
        return job_id

    @QtCore.Slot(object)
    def on_progress(self, ev: JobEvent) -> None:
        if ev.channel != "retrieve" or ev.job_id not in self._then:
            return
        if isinstance(ev.progress.preview, Arrived):
            self._show_arrived(ev.progress.preview)
        if self.dialog is not None:
            self.dialog.show_progress(ev.progress)

    @QtCore.Slot(object)
    def on_finished(self, ev: JobEvent) -> None:
        if ev.channel == "load" and ev.result is not None:
            self.look_for_results()
            return
        then = self._then.pop(ev.job_id, None)
        if then is None:
            return
        if ev.channel == "retrieve" and self.dialog is not None:
            self.dialog.show_progress(None)
        if ev.error or ev.cancelled:
            if self.dialog is not None and ev.channel in QUERY_CHANNELS:
                self.dialog.show_message(ev.error or f"{ev.channel}: cancelled", error=bool(ev.error))
            return
        _, fn, payload = then
        fn(ev.result, *payload)

    def _pacs(self, node_name: str):
        """(node, local AE) from the nodes file; a bad file or unknown node is said where the user looks."""
        from radlens.pacs.nodes import read_config

        try:
            config = read_config()
            return config.node(node_name), config.local
        except RadlensError as err:
            self._say(str(err), error=True)
            return None

    def _say(self, text: str, *, error: bool = False) -> None:
        self.window.set_status(text, error=error)
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.show_message(text, error=error)

    # -- PACS ▸ Query / retrieve ---------------------------------------------------------------------
    def show_query(self):
        from radlens.viewer.pacs_dialog import QueryDialog

        if self.dialog is None:
            self.dialog = QueryDialog(self.window)
            self.dialog.find_requested.connect(self.find)
            self.dialog.series_requested.connect(self.find_series)
            self.dialog.retrieve_requested.connect(self.retrieve)
            self.dialog.cancel_requested.connect(self.cancel_retrieve)
            self.dialog.echo_requested.connect(self.echo)
            self.dialog.nodes_requested.connect(self.edit_nodes)
            folder = self.window.settings.value("pacs/retrieve_folder", "") or str(default_retrieve_folder())
            self.dialog.folder.setText(str(folder))
        self._load_nodes()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _load_nodes(self) -> None:
        from radlens.pacs.nodes import read_config

        try:
            config = read_config()
        except RadlensError as err:
            self.dialog.show_message(str(err), error=True)
            return
        self.dialog.set_nodes(config, self.dialog.node_name())

    def echo(self, node_name: str) -> None:
        pacs = self._pacs(node_name)
        if pacs:
            self._start("pacs-echo", functools.partial(dicom_jobs.echo, *pacs), self._say)

    def find(self, node_name: str, query) -> None:
        pacs = self._pacs(node_name)
        if pacs:
            self.dialog.show_message(f"searching {node_name} …")
            self._start("pacs-find", functools.partial(dicom_jobs.find, *pacs, query), self.dialog.show_studies)

    def find_series(self, node_name: str, study_uid: str) -> None:
        from radlens.pacs.query import Query

        pacs = self._pacs(node_name)
        if pacs:
            query = Query("series", {"StudyInstanceUID": study_uid})
            self._start("pacs-series", functools.partial(dicom_jobs.find, *pacs, query), self.dialog.show_series)

    def retrieve(self, node_name: str, study_uid: str, series_uid: str = "", folder: str = "") -> int | None:
        """Retrieve in the background; the slices show as they arrive, the study opens when complete."""
        pacs = self._pacs(node_name)
        if not pacs:
            return None
        dest = folder or str(default_retrieve_folder())
        self.window.settings.setValue("pacs/retrieve_folder", dest)
        job = functools.partial(dicom_jobs.retrieve, *pacs, study_uid, series_uid or None, dest)
        return self._start("retrieve", job, self._retrieved)

    def cancel_retrieve(self) -> None:
        self.runner.cancel("retrieve")
        if self.dialog is not None:
            self.dialog.show_progress(None)
            self.dialog.show_message("retrieve: cancelled")

    def _show_arrived(self, a: Arrived) -> None:
        """The newest slice received, in the axial view (the study it replaces is closed)."""
        if self.window.controller.study is not None:
            self.window.controller.set_volume(None)
        self.window.show_preview(a.image, a.pixel_mm, a.levels)

    def _retrieved(self, folders: list[Path]) -> None:
        """Open what arrived: the one series, or the study's folder holding all of them."""
        target = folders[0] if len(folders) == 1 else folders[0].parent
        self._say(f"retrieved into {target}")
        self.window.controller.open_paths([str(target)])

    # -- PACS ▸ Nodes ------------------------------------------------------------------------------
    def edit_nodes(self) -> None:
        from radlens.pacs.nodes import config_path, read_config, write_config
        from radlens.viewer.pacs_dialog import NodesDialog

        try:
            config = read_config()
        except RadlensError as err:
            self._say(str(err), error=True)
            return
        dlg = NodesDialog(config, config_path(), self.window)
        if dlg.exec() and dlg.config is not None:
            try:
                write_config(dlg.config)
            except RadlensError as err:
                self._say(str(err), error=True)
                return
            self._say(f"PACS nodes saved to {config_path()}")
            if self.dialog is not None:
                self._load_nodes()

    # -- results out: File ▸ Export to DICOM, PACS ▸ Send results -----------------------------------
    def _reviewed(self) -> tuple[Findings, dict] | None:
        """The open study's findings as reviewed, or None (and why) when there is nothing to write."""
        from radlens.inference.dicom_source import require_dicom

        study = self.window.study
        if study is None:
            self._say("open a study first", error=True)
            return None
        try:
            require_dicom(study.source)
        except RadlensError as err:  # a NIfTI study: said plainly, before any dialog
            self._say(str(err), error=True)
            return None
        if study.findings is None or not study.findings.models:
            self._say("no AI results on this series: run a model or open results first", error=True)
            return None
        st = study.state
        thresholds = {k: st.threshold(k) for k in st.layers if k.kind == "detection"}
        decisions = st.review.by_finding_id(st.rows)  # a lesion's decision on each of its findings
        stored = study.findings.reoriented(study.orientation.inverse(), study.source)  # as shown, on the stored grid
        return dicom_jobs.reviewed(stored, decisions, thresholds), decisions

    def capture(self, *, anonymize: bool) -> Capture:
        """The active plane as the user sees it, with its legend, for a Secondary Capture."""
        from radlens.viewer.export import render_study, rgb_array

        w, study = self.window, self.window.study
        plane = w.controller.active_plane()
        view = w.views[plane]
        image, legend = render_study(
            study.volume,
            study.state,
            plane,
            (view.width(), view.height()),
            anonymize=anonymize,
            synthetic=w.controller.synthetic,
            view_rect=view.vb.viewRect(),
        )
        axial = None  # the stored slice the view shows, when it shows one
        if plane == "axial" and study.orientation.axes[0] == 0:
            axial = round(study.orientation.source_index(study.state.cursor_zyx)[0])
        return Capture(rgb_array(image), " | ".join(legend), axial)

    def export_dicom_dialog(self) -> None:
        if self._reviewed() is None:
            return
        dlg = DicomExportDialog(self.window)
        if dlg.exec():
            self.export_dicom(dlg.folder.text(), anonymize=dlg.anon.isChecked(), screenshot=dlg.shot.isChecked())

    def export_dicom(self, folder, *, anonymize: bool = False, screenshot: bool = True) -> int | None:
        """SEG + SR (+ KOS) of the reviewed state, and the view as Secondary Capture, into ``folder``."""
        reviewed = self._reviewed()
        if reviewed is None:
            return None
        findings, decisions = reviewed
        capture = self.capture(anonymize=anonymize) if screenshot else None
        volume = self.window.study.source
        job = functools.partial(dicom_jobs.write_results, findings, volume, decisions, folder, anonymize, capture)
        return self._start("dicom-export", job, self._exported, Path(folder))

    def _exported(self, paths: list[Path], folder: Path) -> None:
        self._say(f"exported {len(paths)} DICOM objects ({', '.join(p.name for p in paths)}) to {folder}")

    def send_results_dialog(self) -> None:
        from radlens.pacs.nodes import read_config

        if self._reviewed() is None:
            return
        try:
            names = [n.name for n in read_config().nodes]
        except RadlensError as err:
            self._say(str(err), error=True)
            return
        if not names:
            self._say("no PACS nodes configured: PACS ▸ Nodes…", error=True)
            return
        name, ok = QtWidgets.QInputDialog.getItem(self.window, "Send results to PACS", "Node", names, 0, False)
        if ok:
            self.send_results(name)

    def send_results(self, node_name: str) -> int | None:
        """SEG + SR + KOS of the reviewed state to a node (which must hold the study's series)."""
        reviewed, pacs = self._reviewed(), self._pacs(node_name)
        if reviewed is None or pacs is None:
            return None
        findings, decisions = reviewed
        volume = self.window.study.source
        job = functools.partial(dicom_jobs.send_results, *pacs, findings, volume, decisions, None)
        return self._start("send", job, self._sent, pacs[0])

    def _sent(self, count: int, node) -> None:
        self._say(f"sent {count} DICOM objects (SEG, SR, key images) to {node}")

    # -- results in: File ▸ Open DICOM results, and those beside a series ---------------------------
    def open_results_dialog(self) -> None:
        if self.window.study is None:
            self._say("open a study before its results", error=True)
            return
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(self.window, "DICOM SEG, SR or RTSTRUCT files")
        if paths:
            self.open_results(paths)

    def open_results(self, paths) -> int | None:
        study = self.window.study
        if study is None:
            return None
        job = functools.partial(dicom_jobs.read_results, tuple(paths), study.source)
        return self._start("dicom-results", job, self._imported, study.key)

    def look_for_results(self) -> int | None:
        study = self.window.study
        if study is None or not study.source.files:
            return None
        job = functools.partial(dicom_jobs.results_beside, study.source)
        return self._start("dicom-results", job, self._imported, study.key)

    def _imported(self, imported, key: str) -> None:
        """Other tools' results as layers of the series they reference (models already shown are skipped)."""
        study = self.window.study
        if imported is None or study is None or study.key != key:
            return
        base = study.ai or Findings.empty_for(study.source)  # the AI's own, without the reader's edits
        shown = {m.name for m in base.models}
        new = imported.findings
        keep = {m.name for m in new.models} - shown
        new = Findings(
            new.input,
            new.device,
            tuple(m for m in new.models if m.name in keep),
            tuple(d for d in new.detections if d.model in keep),
            tuple(s for s in new.segmentations if s.model in keep),
        )
        if new.models:
            merged = base.merged(new)
            start = max((d.id for d in base.detections), default=0)  # merged renumbers the new detections
            renamed = {}
            for i, d in enumerate(new.detections):
                renamed[detection_key(d.model, d.id)] = detection_key(d.model, start + i + 1)
            for s in new.segmentations:
                renamed.update({component_key(s.model, s.label, c.id): component_key(s.model, s.label, c.id)
                                for c in s.components})  # fmt: skip
            for k, decision in imported.decisions.items():
                if k in renamed:  # the reader's decisions an SR carried: found on their lesions by id, then kept
                    study.state.review.legacy.setdefault(renamed[k], decision)  # by position (viewer.review)
            self.window.controller.models.results[study.key] = merged
            self.window.controller.set_findings(merged)
        names = ", ".join(sorted(keep)) or "nothing new"
        errors = f"; {len(imported.errors)} refused: {imported.errors[0]}" if imported.errors else ""
        self._say(f"DICOM results: {names}{errors}", error=bool(imported.errors) and not keep)


class DicomExportDialog(QtWidgets.QDialog):
    """File ▸ Export to DICOM: the folder, anonymised or not, with a screenshot of the view or not."""

    def __init__(self, parent):
        super().__init__(parent)
        self.setWindowTitle("Export to DICOM")
        form = QtWidgets.QFormLayout(self)
        form.addRow(QtWidgets.QLabel("SEG per model, SR with the review (accepted / rejected), key images"))
        self.folder = QtWidgets.QLineEdit(str(Path.home() / "radlens-dicom"))
        browse = QtWidgets.QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.folder)
        row.addWidget(browse)
        form.addRow("Folder", row)
        self.shot = QtWidgets.QCheckBox("Add the view as a screenshot (Secondary Capture)")
        self.shot.setChecked(True)
        self.anon = QtWidgets.QCheckBox("Anonymize (no patient name or ID)")
        form.addRow(self.shot)
        form.addRow(self.anon)
        form.addRow(save_cancel(self))

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Export to DICOM", self.folder.text())
        if path:
            self.folder.setText(path)
