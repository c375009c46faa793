"""The viewer's long jobs as Qt-free generators: each takes the cancel event last.

(docs/architecture.md, "Long work and threads")

The JobRunner runs them in a worker thread; they only compose the imaging/inference generators and
return immutable values. torch is imported inside ``infer`` only, when a model first runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.volume import Volume

THUMB = 96


@dataclass(frozen=True)
class JobEvent:
    """What a job reports (viewer.worker makes them in the worker thread): immutable, Qt-free."""

    job_id: int
    channel: str
    progress: Progress | None = None
    done: bool = False
    result: Any = None
    error: str = ""
    cancelled: bool = False


def scan_paths(paths: tuple[str, ...], cancel: threading.Event) -> Generator[Progress, None, list]:
    """Scan each path; a path that fails is reported as skipped, the others still count."""
    from radlens.imaging.discovery import ScanResult, Skipped, iter_scan
    from radlens.imaging.errors import ImagingError

    results = []
    for path in paths:
        try:
            result = yield from iter_scan(path, cancel)
        except ImagingError as err:
            result = ScanResult((), (Skipped(str(path), err.reason),))
        results.append((path, result))
    return results


def load_volume(source, cancel: threading.Event) -> Generator[Progress, None, Volume]:
    from radlens.imaging.loading import iter_load

    return (yield from iter_load(source, cancel))


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small uint8 picture of a slice (percentile window, strided down), for the browser."""
    from radlens.imaging.windowing import apply_window, percentile_window

    a = np.asarray(image)
    if a.ndim == 3:  # RGB
        step = max(1, max(a.shape[:2]) // THUMB)
        return np.ascontiguousarray(a[::step, ::step]).astype(np.uint8)
    step = max(1, max(a.shape) // THUMB)
    small = a[::step, ::step]
    return np.ascontiguousarray(apply_window(small, percentile_window(small)))


def thumbnails(series: tuple, cancel: threading.Event) -> Generator[Progress, None, None]:
    """The middle slice of each series: the loader's first preview, then the load is dropped."""
    from radlens.imaging.errors import RadlensError
    from radlens.imaging.loading import iter_load

    for i, s in enumerate(series):
        check_cancel(cancel, "thumbnails")
        try:
            job = iter_load(s, cancel)
            for p in job:
                if p.preview is not None:
                    yield Progress(i + 1, len(series), "thumbnails", preview=(s.uid, thumbnail(p.preview.image)))
                    break
            job.close()
        except RadlensError:
            continue


def demo_paths(cancel: threading.Event) -> Generator[Progress, None, list]:
    from radlens.viewer.demo import iter_demo_paths

    return (yield from iter_demo_paths(cancel))


def infer(volume: Volume, bundles: tuple, cancel: threading.Event):
    """Run models on the volume; each model's Findings arrives as a Progress preview (streamed)."""
    from radlens.inference.engine import iter_infer

    return (yield from iter_infer(volume, list(bundles), device="auto", cancel=cancel))


def grow_region(volume: Volume, seed_zyx: tuple[int, int, int], cancel: threading.Event):
    """A lesion grown from a click (imaging.regions): a bool mask on the volume's grid."""
    from radlens.imaging.regions import grow_from_seed

    yield Progress(0, 1, "segmenting at the click")
    check_cancel(cancel, "segmenting")
    return grow_from_seed(volume, seed_zyx)


CHILD_PROGRESS_S = 0.1  # a job in a process reports at most this often (previews and the end always)


MODELS_NICE = 10  # the models' process yields the CPU to the window whenever both want it


def serve(conn, stop) -> None:
    """The models' process (viewer.worker): runs each job it is sent, until the pipe closes. It runs at a
    lower priority than the window, so a frame is drawn first when a core is wanted by both."""
    if hasattr(os, "nice"):
        os.nice(MODELS_NICE)
    while True:
        try:
            factory = conn.recv()
        except (EOFError, OSError):
            return
        run_in_child(factory, conn, stop)


def run_in_child(factory, conn, stop) -> None:
    """One job in the models' process: its progress, then its result, its cancellation or its error in
    one line, sent through ``conn`` as (kind, value). ``stop`` is the cancel event."""
    from radlens.imaging.progress import Cancelled

    last = 0.0
    try:
        job = factory(stop)
        while True:
            try:
                p = next(job)
            except StopIteration as end:
                conn.send(("done", end.value))
                return
            now = time.monotonic()
            if p.preview is not None or (p.total and p.done >= p.total) or now - last >= CHILD_PROGRESS_S:
                conn.send(("progress", p))
                last = now
    except Cancelled:
        conn.send(("cancelled", None))
    except Exception as err:  # the viewer shows it; the process serves the next job
        conn.send(("error", " ".join(str(err).split()) or type(err).__name__))
