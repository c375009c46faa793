"""Long work as generators (docs/architecture.md, "Long work and threads").

A long job is a generator that yields :class:`Progress` and returns its result; it checks a cancel
``threading.Event`` at each yield. The CLI drives it with a tqdm bar (:func:`run_with_progress`), the
viewer in a worker thread. ``preview`` carries an early, immutable partial result (the first slice
of a series being loaded) so the user sees something before the job ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from radlens.imaging.errors import RadlensError

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str = ""
    preview: Any = None


class Cancelled(RadlensError):
    """Raised inside a job when its cancel event is set."""

    def __init__(self, what: str = "job"):
        super().__init__(f"{what}: cancelled")


def check_cancel(cancel: threading.Event | None, what: str = "job") -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


def relay(job: Generator[Progress, None, T], change: Callable[[Progress], Any]) -> Generator[Any, None, T]:
    """A sub-job's progress, each passed through ``change``; its result is returned:
    ``result = yield from relay(job, change)`` (a job reporting a part of its own work)."""
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        yield change(p)


def run_showing(job: Generator[Progress, None, T], see: Callable[[Progress], None]) -> T:
    """Run a job to its end, handing each Progress to ``see`` (a bar, a log, a test); return its result."""
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        see(p)


def run_to_end(job: Generator[Progress, None, T]) -> T:
    """Run a job without showing progress; return its result."""
    return run_showing(job, lambda p: None)


def run_with_progress(job: Generator[Progress, None, T], desc: str = "", *, show: bool | None = None) -> T:
    """Run a job with a tqdm bar on a terminal (silent when stderr is not a terminal)."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return run_to_end(job)
    from tqdm import tqdm

    with tqdm(desc=desc, unit="", leave=False, dynamic_ncols=True) as bar:

        def show_on_bar(p: Progress) -> None:
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            if p.message:
                bar.set_postfix_str(p.message, refresh=False)
            bar.refresh()

        return run_showing(job, show_on_bar)
