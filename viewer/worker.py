"""Background jobs: Qt-free generators run on superqt's thread pool, one per channel.

(docs/architecture.md, "Long work and threads")

Only immutable ``JobEvent`` values cross threads. Each carries its job id; the runner (a QObject made
on the GUI thread, whose bound slots therefore run on the GUI thread) forwards only events of the
current job of their channel, so a result for a series that is no longer shown is dropped.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Generator
from typing import Any

from superqt.utils import GeneratorWorker

from radlens.imaging.progress import Cancelled, Progress, relay
from radlens.viewer.jobs import JobEvent
from radlens.viewer.qt import QtCore

JobFactory = Callable[[threading.Event], Generator[Progress, None, Any]]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _drive(job_id: int, channel: str, factory: JobFactory, cancel: threading.Event):
    """Run the job in the worker thread, turning its progress, result and errors into JobEvents."""
    try:
        result = yield from relay(factory(cancel), lambda p: JobEvent(job_id, channel, progress=p))
        return JobEvent(job_id, channel, done=True, result=result)
    except Cancelled:
        return JobEvent(job_id, channel, done=True, cancelled=True)
    except Exception as err:  # the application never dies on a job: the error is shown instead
        return JobEvent(job_id, channel, done=True, error=_one_line(err))


class JobRunner(QtCore.QObject):
    """Starts jobs per channel (scan, load, infer, ...); a new job in a channel cancels the old one."""

    progressed = QtCore.Signal(object)  # JobEvent with progress, current jobs only
    finished = QtCore.Signal(object)  # JobEvent with done=True, current jobs only

    def __init__(self, parent=None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._current: dict[str, int] = {}
        self._cancel: dict[int, threading.Event] = {}
        self._workers: dict[int, GeneratorWorker] = {}
        self.dropped = 0  # stale events dropped (what the tests check)

    def start(self, channel: str, factory: JobFactory) -> int:
        self.cancel(channel)
        job_id = next(self._ids)
        cancel = threading.Event()
        worker = GeneratorWorker(_drive, job_id, channel, factory, cancel)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        self._current[channel] = job_id
        self._cancel[job_id] = cancel
        self._workers[job_id] = worker
        worker.start()
        return job_id

    def cancel(self, channel: str) -> None:
        """Ask the channel's job to stop at its next yield; whatever it sends later is dropped."""
        job_id = self._current.pop(channel, None)
        if job_id is not None and job_id in self._cancel:
            self._cancel[job_id].set()

    def cancel_all(self) -> None:
        for channel in list(self._current):
            self.cancel(channel)

    def is_current(self, job_id: int, channel: str) -> bool:
        return self._current.get(channel) == job_id

    def busy(self, channel: str) -> bool:
        return channel in self._current

    @QtCore.Slot(object)
    def _on_yielded(self, ev: JobEvent) -> None:
        if not self.is_current(ev.job_id, ev.channel):
            self.dropped += 1
            return
        self.progressed.emit(ev)

    @QtCore.Slot(object)
    def _on_returned(self, ev: JobEvent) -> None:
        self._cancel.pop(ev.job_id, None)
        self._workers.pop(ev.job_id, None)
        if not self.is_current(ev.job_id, ev.channel):
            self.dropped += 1
            return
        del self._current[ev.channel]
        self.finished.emit(ev)

    def wait_idle(self, msecs: int = 30000) -> bool:
        """Block until every started job has returned (used when the window closes)."""
        return QtCore.QThreadPool.globalInstance().waitForDone(msecs)
