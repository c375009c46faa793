"""Background jobs: Qt-free generators run on superqt's thread pool, one per channel.

(docs/architecture.md, "Long work and threads")

Only immutable ``JobEvent`` values cross threads. Each carries its job id; the runner (a QObject made
on the GUI thread, whose bound slots therefore run on the GUI thread) forwards only events of the
current job of their channel, so a result for a series that is no longer shown is dropped.

The models (channel ``infer``) run in a spawned process instead (never forked: Qt and CUDA do not
survive a fork): their Python work between torch kernels would otherwise hold the interpreter the
GUI draws with. A thread of the pool waits on the process's pipe and relays its events, so progress,
cancel and results work as for a thread job; a process that does not stop when cancelled is ended.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from superqt.utils import GeneratorWorker

from radlens.imaging.progress import Cancelled, Progress, relay
from radlens.viewer.jobs import JobEvent, serve
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


PROCESS_CHANNELS = frozenset({"infer"})
STOP_GRACE_S = 5.0  # a cancelled job gets this long to stop at its next check before its process is ended


class _Host:
    """One spawned process that runs the process channels' jobs one at a time, kept between jobs so
    that only the first pays for starting Python and importing torch."""

    def __init__(self):
        self.lock = threading.Lock()  # held by the pool thread whose job the process is running
        self.process = None
        self.conn = None
        self.stop = None

    def ensure(self):
        if self.process is None or not self.process.is_alive():
            ctx = multiprocessing.get_context("spawn")
            self.stop = ctx.Event()
            self.conn, child = ctx.Pipe()
            self.process = ctx.Process(target=serve, args=(child, self.stop), name="radlens-models", daemon=True)
            self.process.start()
            child.close()
        self.stop.clear()
        return self.conn, self.stop

    def end(self) -> None:
        """Stop the process (a job that ignored its cancel): the next job starts a new one."""
        if self.process is not None:
            self.process.terminate()
            self.process.join()
            self.conn.close()
        self.process = self.conn = self.stop = None


_HOST = _Host()


def _drive_process(job_id: int, channel: str, factory: JobFactory, cancel: threading.Event):
    """Run the job in the models' process; relay what it sends as JobEvents (in a pool thread)."""
    with _HOST.lock:
        if cancel.is_set():  # replaced while it waited for the process
            return JobEvent(job_id, channel, done=True, cancelled=True)
        try:
            conn, stop = _HOST.ensure()
            conn.send(factory)
        except Exception as err:  # e.g. the job cannot be pickled
            return JobEvent(job_id, channel, done=True, error=f"cannot start the {channel} job: {_one_line(err)}")
        stopped_at = None
        try:
            while True:
                if cancel.is_set() and stopped_at is None:
                    stop.set()
                    stopped_at = time.monotonic()
                if stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_S:
                    _HOST.end()
                    return JobEvent(job_id, channel, done=True, cancelled=True)
                if conn.poll(0.05):
                    kind, value = conn.recv()
                    if kind == "progress":
                        yield JobEvent(job_id, channel, progress=value)
                        continue
                    return JobEvent(job_id, channel, done=True, result=value if kind == "done" else None,
                                    error=value if kind == "error" else "", cancelled=kind == "cancelled")  # fmt: skip
                if not _HOST.process.is_alive():
                    raise EOFError
        except (EOFError, OSError):
            code = _HOST.process.exitcode if _HOST.process is not None else None
            _HOST.end()
            return JobEvent(job_id, channel, done=True, error=f"the models' process ended (exit code {code})")


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
        drive = _drive_process if channel in PROCESS_CHANNELS else _drive
        worker = GeneratorWorker(drive, job_id, channel, factory, cancel)
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
