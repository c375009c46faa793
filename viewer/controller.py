"""The viewer's controller, without Qt: the open study, its reading and review, jobs and preferences.

ndv's model/view/controller split: widgets report what the user did, the controller changes the
ViewState and tells the view what to show through the few calls of ``View``. Long work runs through
a ``Runner`` (viewer.worker.JobRunner in the app) whose events arrive on the GUI thread. Three
collaborators it owns carry out the rest: ``models`` (viewer.model_runs) runs the AI and keeps its
results, ``editor`` (viewer.editor) corrects them, ``measurements`` (viewer.measurements) measures.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import numpy as np

from radlens.imaging.errors import RadlensError
from radlens.imaging.geometry import PLANES, SLAB_MODES
from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume, Window
from radlens.imaging.windowing import default_window, percentile_window, presets
from radlens.inference.findings import Findings, check_matches, read_findings
from radlens.viewer import jobs
from radlens.viewer.editing import StateEdit
from radlens.viewer.editor import Editor
from radlens.viewer.jobs import JobEvent
from radlens.viewer.layers import FindingKey, LayerKey
from radlens.viewer.layout import one_view
from radlens.viewer.measurements import Measurements
from radlens.viewer.model_runs import ModelRuns
from radlens.viewer.protocols import Runner, Settings, View
from radlens.viewer.review import load_review, save_review
from radlens.viewer.state import Study, ViewState, from_plane

BY_THE_READER = "by the reader"

RECENT_MAX = 10
PROGRESS_INTERVAL_S = 0.1  # a chatty job must not cost the views their frames


class Controller:
    def __init__(self, view: View, runner: Runner, settings: Settings):
        self.view, self.runner, self.settings = view, runner, settings
        self.study: Study | None = None
        self.synthetic = False
        self.cine = False
        self._layout, self._active_plane = "1x3", "axial"  # the user's choice, kept across series
        self._slab = ("", 10.0)
        self._loading = None  # the source being loaded, for its preview's pixel size and modality
        self.series_set = None  # the 4D set the shown study is a part of (viewer.phases slides over it)
        self._last_progress = 0.0
        self.models = ModelRuns(self)
        self.editor = Editor(self)
        self.measurements = Measurements(self)
        view.ai_panel.set_run_on_open(self.run_on_open())
        view.set_recent(self.recent())

    def actions(self) -> dict[str, Callable[[], None]]:
        """The keymap's actions that the controller carries out (the window adds dialogs and zoom)."""
        acts = {
            "toggle_layout": self.toggle_layout,
            "toggle_overlays": self.toggle_overlays,
            "cine": self.toggle_cine,
            "series_window": self.series_window,
            "auto_window": self.auto_window,
            "invert": self.toggle_invert,
            "next_finding": functools.partial(self.step_finding, 1),
            "previous_finding": functools.partial(self.step_finding, -1),
            "fill_holes": self.editor.fill_holes,
            "delete_box": self.editor.delete_boxes,
            "delete_measurement": self.measurements.delete,
            "undo": self.editor.undo,
            "redo": self.editor.redo,
        }
        acts.update({f"plane:{p}": functools.partial(self.set_active_plane, p) for p in PLANES})
        acts.update({f"preset:{p.name}": functools.partial(self.apply_preset, p.name) for p in presets()})
        return acts

    # -- preferences -------------------------------------------------------------------------------
    def run_on_open(self) -> bool:
        return self.settings.value("run_on_open", "false") == "true"

    def set_run_on_open(self, on: bool) -> None:
        self.settings.setValue("run_on_open", "true" if on else "false")
        self.view.ai_panel.set_run_on_open(on)

    def recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        items = ([path] + [p for p in self.recent() if p != path])[:RECENT_MAX]
        self.settings.setValue("recent", items)
        self.view.set_recent(items)

    # -- opening -----------------------------------------------------------------------------------
    def open_paths(self, paths, *, run_models: bool | None = None) -> None:
        """Scan files/folders in the background; the first series found is loaded."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        if run_models is not None:
            self.set_run_on_open(run_models)
        for p in paths:
            self._remember_recent(p)
        self.view.set_status(f"Scanning {', '.join(paths)} …")
        self.runner.start("scan", functools.partial(jobs.scan_paths, tuple(paths)))

    def load_source(self, source) -> None:
        """Load a SeriesInfo or a path in the background; the middle slice shows first."""
        self.runner.cancel("infer")
        self.runner.cancel("load")
        self.set_cine(False)
        self.view.set_status(f"Loading {getattr(source, 'description', '') or source} …")
        self._loading = source
        self.series_set = source if getattr(source, "parts", ()) else None
        self.runner.start("load", functools.partial(jobs.load_volume, source))

    def open_demo(self) -> None:
        self.synthetic = True
        self.view.set_status("Preparing the synthetic demo studies …")
        self.runner.start("demo", jobs.demo_paths)

    def load_findings_folder(self, folder) -> bool:
        if self.study is None:
            self.view.set_status("open a study before its findings", error=True)
            return False
        try:
            findings = read_findings(folder)
            check_matches(findings, self.study.source, str(folder))
        except RadlensError as err:
            self.view.set_status(str(err), error=True)
            return False
        self.set_findings(findings)
        return True

    def cancel_loading(self) -> None:
        for channel in ("scan", "load", "demo", "thumbs", "retrieve", "send", "dicom-export", "dicom-results"):
            self.runner.cancel(channel)
        self.view.show_progress(None)
        self.view.set_status("cancelled")

    # -- job events (GUI thread) -------------------------------------------------------------------
    def on_progress(self, ev: JobEvent) -> None:
        if ev.channel == "infer" and not self.models.is_current(ev):
            return
        p = ev.progress
        shown = self._show_progress(p)
        if ev.channel == "load" and p.preview is not None and hasattr(p.preview, "image"):
            self._show_load_preview(p.preview)
        elif ev.channel == "infer":
            self.models.progressed(p, shown)
        elif ev.channel == "thumbs" and p.preview is not None:
            self.view.browser.set_thumbnail(*p.preview)

    def on_finished(self, ev: JobEvent) -> None:
        run = None
        if ev.channel == "infer":
            run = self.models.finish(ev)
            if run is None:  # stale: dropped
                return
        self.view.show_progress(None)
        if ev.cancelled:
            self.view.set_status(f"{ev.channel}: cancelled")
        elif ev.error:
            self.view.set_status(ev.error, error=True)
        elif run is not None:
            self.models.done(ev.result, run)
        elif ev.channel == "scan":
            self._scan_done(ev.result)
        elif ev.channel == "load":
            self.set_volume(ev.result)
        elif ev.channel == "demo":
            self.open_paths(ev.result, run_models=True)
        elif ev.channel == "grow":
            self.editor.grown(ev.result)

    def _show_progress(self, p: Progress) -> bool:
        now = time.monotonic()
        finished = p.total > 0 and p.done >= p.total
        if not finished and now - self._last_progress < PROGRESS_INTERVAL_S:
            return False
        self._last_progress = now
        self.view.show_progress(p)
        return True

    def _scan_done(self, results) -> None:
        series = self.view.browser.add_scan(results)
        if not series:
            reasons = "; ".join(f"{s.path}: {s.reason}" for _, r in results for s in r.skipped[:3])
            self.view.set_status(f"no images found ({reasons or 'empty'})", error=True)
            return
        self.view.set_status(f"{len(series)} series found")
        self.load_source(series[0])
        self.runner.start("thumbs", functools.partial(jobs.thumbnails, tuple(series)))

    def _show_load_preview(self, preview) -> None:
        image = np.asarray(preview.image)
        window = percentile_window(image)
        if getattr(self._loading, "modality", "").upper() == "CT":
            window = default_window(Volume(np.zeros((1, 1, 1), np.int16), modality="CT"))
        self.set_volume(None)
        spacing = getattr(self._loading, "spacing_zyx", None)
        pixel_mm = (float(spacing[1]), float(spacing[2])) if spacing else None
        self.view.show_preview(image, pixel_mm, (window.low, window.high))
        self.view.set_status(f"Loading… showing slice {preview.index + 1}/{preview.total}")

    # -- the study ---------------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, window: Window | None = None) -> None:
        """Show a volume (None clears); findings beside it or kept from an earlier run come back."""
        self.models.forget()
        if volume is None:
            self.study = None
            self.view.show_volume(None, self.synthetic)
            return
        study = Study.open(volume, functools.partial(ViewState.for_volume, window=window or default_window(volume)))
        state = study.state
        state.review = load_review(volume)
        state.layout, state.active_plane = self._layout, self._active_plane
        state.slab, state.slab_mm = self._slab
        if one_view(volume):  # a radiograph, a cine, one slice: one view, no MPR
            state.layout, state.active_plane = "single", "axial"
        self.study = study
        self.editor.open(study)
        self.measurements.open(study)
        self.view.show_volume(study, self.synthetic)
        self.view.show_layout(state.layout, state.active_plane)
        msg = f"{volume.description or volume.source or 'volume'}: {' × '.join(map(str, volume.shape_zyx))}"
        self.view.set_status(msg + ("; " + "; ".join(volume.warnings) if volume.warnings else ""))
        self.set_findings(self.models.kept(study))
        if self.run_on_open() and study.key not in self.models.results:
            self.models.run()

    def show_part(self, volume: Volume) -> None:
        """Another part of the shown 4D set: on the same grid the slice, window and layout stay."""
        if self.study is None or volume.shape_zyx != self.study.source.shape_zyx:
            self.set_volume(volume)
            return
        self.models.forget()
        self.study.source = volume  # the same grid, so the same turn to the patient's axes
        self.study.volume = self.study.orientation.volume(volume)
        self.view.show_volume(self.study, self.synthetic)
        self.set_findings(self.models.kept(self.study))

    def set_modality(self, choice: str) -> None:
        """The reader says what the series is ("MR", "MR T2-like"): it is reopened as that (models, window, units)."""
        if self.study is None or choice == (vol := self.study.source).modality_and_contrast:
            return
        modality, _, contrast = choice.partition(" ")
        earlier = [w for w in vol.warnings if w.endswith(BY_THE_READER)]  # one note: what the file said, what now
        read_as = earlier[0].partition(",")[0] if earlier else f"read as {vol.modality_and_contrast}"
        notes = (
            *(w for w in vol.warnings if not w.endswith(BY_THE_READER)),
            f"{read_as}, set to {choice} {BY_THE_READER}",
        )
        changed = vol.with_array(vol.array, modality=modality, contrast=contrast, warnings=notes)
        self.set_volume(changed)

    def set_findings(self, findings: Findings | None) -> None:
        """The AI's findings for the study; they are shown with the reader's corrections over them."""
        if self.study is None:
            return
        self.study.ai = findings
        self.show_corrected()

    def show_corrected(self) -> None:
        """Show the AI's findings as the reader corrected them (viewer.corrections)."""
        study = self.study
        st = study.state
        shown = study.ai.reoriented(study.orientation, study.volume) if study.ai is not None else None
        st.set_findings(study.corrections.apply(shown, study.volume), study.volume)
        if st.review.legacy and st.review.adopt_legacy(st.rows):
            self.save_review()
        self.view.show_findings(st)

    # -- reading -----------------------------------------------------------------------------------
    def scroll(self, plane: str, delta: int) -> None:
        if self.study is not None:
            self.study.state.active_plane = plane
            self.study.state.scroll(plane, delta)
            self.view.redraw("slices")

    def drag_window(self, dx: float, dy: float) -> None:
        if self.study is not None:
            self.study.state.drag_window(dx, dy)
            self.view.redraw("levels")

    def set_window(self, window: Window) -> None:
        if self.study is not None:
            self.study.state.window = window
            self.view.redraw("levels")

    def apply_preset(self, name: str) -> None:
        p = next(p for p in presets() if p.name == name)
        self.set_window(p.window)
        self.view.set_status(f"window: {p.name} {p.window.width:g}/{p.window.level:g}")

    def series_window(self) -> None:
        if self.study is not None:
            self.set_window(default_window(self.study.volume))

    def auto_window(self) -> None:
        if self.study is not None:
            self.set_window(percentile_window(self.study.volume.array))

    def set_slab(self, mode: str, thickness_mm: float) -> None:
        """Thick slabs (MIP, MinIP or mean over ``thickness_mm``) or, with mode "", single slices."""
        if mode and mode not in SLAB_MODES:
            raise ValueError(f"slab mode {mode!r} is not one of {', '.join(SLAB_MODES)}")
        self._slab = (mode, float(thickness_mm))
        if self.study is not None:
            self.study.state.slab, self.study.state.slab_mm = self._slab
            self.view.redraw("images")

    def toggle_invert(self) -> None:
        if self.study is not None:
            self.study.state.invert = not self.study.state.invert
            self.view.redraw("levels")

    def click(self, plane: str, row: float, col: float) -> None:
        """A click in one plane moves the crosshair, and so the slices of the other two."""
        if self.study is None:
            return
        st = self.study.state
        st.active_plane = plane
        st.set_cursor(from_plane(plane, st.slice_index(plane), np.floor(row), np.floor(col), st.shape_zyx, st.flip_z))
        self.view.redraw("slices")

    def probe(self, plane: str, row: float, col: float) -> None:
        """The voxel under the mouse: its index, LPS position and value."""
        if self.study is None:
            return
        st, vol = self.study.state, self.study.volume
        r, c = int(np.floor(row)), int(np.floor(col))
        zyx = [round(v) for v in from_plane(plane, st.slice_index(plane), r, c, st.shape_zyx, st.flip_z)]
        if not all(0 <= i < n for i, n in zip(zyx, st.shape_zyx, strict=True)):
            self.view.set_probe("")
            return
        value = vol.array[tuple(zyx)]
        unit = " HU" if vol.modality == "CT" else ""
        lps = vol.index_to_lps(zyx)
        val = f"{value.tolist()}" if vol.is_rgb else f"{float(value):g}{unit}"
        z, y, x = (round(v) for v in self.study.orientation.source_index(zyx))  # the voxel as stored
        self.view.set_probe(f"voxel z{z} y{y} x{x}  LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm  {val}")

    def layout(self) -> str:
        return self.study.state.layout if self.study else self._layout

    def active_plane(self) -> str:
        return self.study.state.active_plane if self.study else self._active_plane

    def set_active_plane(self, plane: str) -> None:
        if self.study is not None:
            self.study.state.active_plane = plane
        self._active_plane = plane
        self.view.show_layout(self.layout(), plane)

    def toggle_layout(self) -> None:
        if self.study is not None and one_view(self.study.volume):
            self.view.set_status(f"a {self.study.volume.kind} is read in one view: it has no other planes")
            return
        self._layout = "single" if self.layout() == "1x3" else "1x3"
        if self.study is not None:
            self.study.state.layout = self._layout
        self.view.show_layout(self._layout, self.active_plane())

    def set_cine(self, on: bool) -> None:
        self.cine = bool(on and self.study is not None)
        self.view.set_cine(self.cine)

    def toggle_cine(self) -> None:
        self.set_cine(not self.cine)

    def cine_step(self, loop: bool = True) -> None:
        """The next slice (or frame) of the active plane, round and round; without ``loop`` it stops at the end."""
        if self.study is None:
            self.set_cine(False)
            return
        st = self.study.state
        plane = st.active_plane
        if not loop and st.slice_index(plane) + 1 >= st.count(plane):
            self.set_cine(False)
            return
        st.set_slice(plane, (st.slice_index(plane) + 1) % st.count(plane))
        self.view.redraw("slices")

    # -- overlays and findings ---------------------------------------------------------------------
    def toggle_overlays(self) -> None:
        self.set_overlays_on(not (self.study.state.overlays_on if self.study else True))

    def set_overlays_on(self, on: bool) -> None:
        if self.study is not None:
            self.study.state.overlays_on = bool(on)
            self.view.show_overlays_on(bool(on))

    def layer_changed(self, key: LayerKey) -> None:
        """A layer's visibility, opacity or threshold changed; a box threshold also filters the rows."""
        if self.study is None:
            return
        self.view.redraw("overlays")
        if key.kind == "detection":
            self.view.show_rows(self.study.state)

    def select_finding(self, key: FindingKey) -> None:
        if self.study is not None and self.study.state.select(key) is not None:
            self.view.show_selection(self.study.state)

    def step_finding(self, delta: int) -> None:
        if self.study is None:
            return
        row = self.study.state.step_finding(delta)
        if row is not None:
            self.view.show_selection(self.study.state)
            self.view.set_status(f"{row.label} {row.size} ({row.model})")

    def decide(self, key: FindingKey, decision: str) -> None:
        """Accept, reject or undecide a finding; the review file beside the study is rewritten."""
        if self.study is None:
            return
        st = self.study.state
        row = st.row(key)
        if row is None:
            return
        review = st.review
        before = review.decisions_state()
        review.decide(row, decision)
        edit = StateEdit(decision or "undecide", review.restore_decisions, before, review.decisions_state(), "review")
        self.study.history.push(edit)
        self.review_changed()

    def review_changed(self) -> None:
        """Decisions changed (a decision, its undo): the file beside the study and the rows follow."""
        self.save_review()
        self.view.show_rows(self.study.state)

    def save_review(self) -> None:
        try:
            path = save_review(self.study.source, self.study.state.review)
            self.view.set_status(f"review saved: {path.name}")
        except RadlensError as err:
            self.view.set_status(f"cannot save the review: {err}", error=True)

    # -- correcting (viewer.editor does it) ------------------------------------------------------------
    def set_brush(self, brush) -> None:
        self.editor.brush = brush

    def set_edit_label(self, label: str) -> None:
        self.editor.label = label

    def save_training_case(self, folder) -> bool:
        return self.editor.save_training_case(folder)
