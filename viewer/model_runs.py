"""The AI models run on the shown series, without Qt: started, cancelled, and their results kept.

The controller owns one ModelRuns and hands it the "infer" channel's events. A run remembers its job
id and series; anything it sends once another series is shown is dropped (ndv's generation number),
so a late result never lands on the wrong study. Each model's findings are merged into the series'
results as it finishes, and those results come back when the series is opened again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from radlens.imaging.progress import Progress
from radlens.inference.findings import Findings, FindingsError, check_matches, read_findings
from radlens.viewer import jobs
from radlens.viewer.jobs import JobEvent

if TYPE_CHECKING:
    from radlens.imaging.volume import Volume
    from radlens.viewer.controller import Controller
    from radlens.viewer.state import Study


@dataclass
class _InferRun:
    """The AI job started for one series, and the models whose results already streamed in."""

    job_id: int
    series: str
    streamed: set[str] = field(default_factory=set)


class ModelRuns:
    def __init__(self, controller: Controller):
        self.ctl = controller
        self.results: dict[str, Findings] = {}  # AI results per series, kept across reopenings
        self.dropped = 0  # AI events that came for a job or series no longer shown
        self._run: _InferRun | None = None

    @property
    def study(self) -> Study | None:
        return self.ctl.study

    def kept(self, study: Study) -> Findings | None:
        """The series' results: this session's runs, else a findings.json beside it (from radlens infer)."""
        return self.results.get(study.key) or _findings_beside(study.source)

    def run(self, bundles=None) -> None:
        if self.study is None:
            return
        ai_panel = self.ctl.view.ai_panel
        bundles = tuple(bundles) if bundles else tuple(ai_panel.selected_bundles())
        if not bundles:
            ai_panel.set_status("no model fits this series")
            return
        ai_panel.started(bundles)
        job_id = self.ctl.runner.start("infer", functools.partial(jobs.infer, self.study.source, bundles))
        self._run = _InferRun(job_id, self.study.key)

    def cancel(self) -> None:
        self.forget()
        self.ctl.view.ai_panel.stopped()

    def forget(self) -> None:
        """Another series (or part) is shown: the run is cancelled and what it still sends is dropped."""
        self.ctl.runner.cancel("infer")
        self._run = None

    # -- the "infer" channel's events (GUI thread) ---------------------------------------------------
    def is_current(self, ev: JobEvent) -> bool:
        """Whether an AI event belongs to the run started for the series on screen (else it is dropped)."""
        run, study = self._run, self.study
        if run is not None and run.job_id == ev.job_id and study is not None and study.key == run.series:
            return True
        self.dropped += 1
        return False

    def progressed(self, p: Progress, shown: bool) -> None:
        """A model's findings stream in as it finishes; other progress shows when the status bar did."""
        if isinstance(p.preview, Findings):
            self._run.streamed.update(m.name for m in p.preview.models)
            self._keep(p.preview)
            self.ctl.view.ai_panel.set_progress(p)
        elif shown:
            self.ctl.view.ai_panel.set_progress(p)

    def finish(self, ev: JobEvent) -> _InferRun | None:
        """The run the event ends, or None when the event is stale (and dropped)."""
        if not self.is_current(ev):
            return None
        run, self._run = self._run, None
        self.ctl.view.ai_panel.finished(ev)
        return run

    def done(self, findings: Findings | None, run: _InferRun) -> None:
        if findings is None:
            return
        if not run.streamed:  # each model's results usually stream in as it finishes
            self._keep(findings)
        warnings = [f"{m.name}: {w}" for m in findings.models for w in m.warnings]
        status = f"AI: {len(findings.detections)} detections, {len(findings.segmentations)} masks"
        self.ctl.view.set_status("; ".join([status, *warnings]))

    def _keep(self, findings: Findings) -> None:
        """Merge one model run's findings into the series' results (several runs add up)."""
        base = self.study.ai or Findings.empty_for(self.study.source, findings.device)
        merged = base.merged(findings)
        self.results[self.study.key] = merged
        self.ctl.set_findings(merged)


def _findings_beside(volume: Volume) -> Findings | None:
    """findings.json in the study's folder (from radlens infer), if it is for this grid."""
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
