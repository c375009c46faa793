"""The viewer's DICOM and PACS jobs as Qt-free generators (like viewer.jobs): each takes the cancel event last.

Query, retrieve and send wrap radlens.pacs; the results written are radlens.inference's DICOM objects
of the reviewed state: the detections the reader sees (at or above their layer's threshold) or
decided on, every mask, the decisions as the SR's review status.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.volume import Volume
from radlens.inference.findings import Findings
from radlens.inference.lesions import detection_key
from radlens.viewer.layers import LayerKey

PREVIEW_INTERVAL_S = 0.25  # at most this often a received slice is decoded for the preview
CAPTURE_SERIES_NUMBER = 950  # a screenshot's series in the study, after the AI results' 901...


@dataclass(frozen=True)
class Arrived:
    """The newest slice a retrieve received, decoded for display (a Progress preview)."""

    image: np.ndarray
    received: int
    total: int
    pixel_mm: tuple[float, float]
    levels: tuple[float, float]


@dataclass(frozen=True)
class Capture:
    """An annotated rendering of the view, to travel as Secondary Capture with the results."""

    rgb: np.ndarray  # (rows, columns, 3) uint8
    description: str
    source_slice: int | None  # the axial slice it shows, if it shows one


def write_capture(capture: Capture, volume: Volume, path, *, anonymize: bool) -> Path:
    """The rendering as DICOM Secondary Capture in the study (BurnedInAnnotation YES)."""
    from radlens.inference.dicom_capture import write_screenshot
    from radlens.inference.dicom_source import source_series

    return write_screenshot(
        capture.rgb,
        source_series(volume),
        path,
        series_number=CAPTURE_SERIES_NUMBER,
        description=capture.description,
        source_slice=capture.source_slice,
        anonymize=anonymize,
    )


def echo(node, local, cancel: threading.Event) -> Generator[Progress, None, str]:
    from radlens.pacs.client import echo as pacs_echo

    yield Progress(0, 1, f"{node.name}: echo")
    return pacs_echo(node, local)


def find(node, local, query, cancel: threading.Event) -> Generator[Progress, None, list]:
    from radlens.pacs.client import find as pacs_find

    yield Progress(0, 1, f"{node.name}: searching")
    found = pacs_find(node, local, query)
    check_cancel(cancel, "query")
    return found


def retrieve(node, local, study_uid: str, series_uid: str | None, dest, cancel: threading.Event):
    """The study (or series) into ``dest``; every so often the newest slice comes along as an ``Arrived``."""
    from radlens.pacs.client import iter_retrieve

    job = iter_retrieve(node, local, study_uid, dest, series_uid=series_uid, cancel=cancel)
    shown = 0.0
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        preview = None
        if p.preview is not None and time.monotonic() - shown >= PREVIEW_INTERVAL_S:
            preview = arrived(p.preview, p.done, p.total)
            shown = time.monotonic()
        yield Progress(p.done, p.total, p.message, preview=preview)


def arrived(path: Path, received: int, total: int) -> Arrived | None:
    """One received instance's first frame in modality values, windowed as the series asks (None if it is no
    image: a SEG, an SR)."""
    from radlens.imaging.errors import RadlensError
    from radlens.imaging.loading import load
    from radlens.imaging.windowing import default_window

    try:
        vol = load(path)
    except RadlensError:
        return None
    if vol.is_rgb:
        return None
    window = default_window(vol)
    return Arrived(
        vol.array[0], received, total, tuple(float(s) for s in vol.spacing_zyx[1:]), (window.low, window.high)
    )


def reviewed(findings: Findings, decisions: Mapping[str, str], thresholds: Mapping[LayerKey, float]) -> Findings:
    """The findings as reviewed: detections at or above their layer's threshold, or decided on."""
    kept = tuple(
        d
        for d in findings.detections
        if d.score >= thresholds.get(LayerKey(d.model, "detection", d.label), 0.0)
        or detection_key(d.model, d.id) in decisions
    )
    return dataclasses.replace(findings, detections=kept)


def write_results(
    findings: Findings,
    volume: Volume,
    decisions: Mapping[str, str],
    folder,
    anonymize: bool,
    capture: Capture | None,
    cancel: threading.Event,
) -> Generator[Progress, None, list[Path]]:
    """SEG per model (heat maps as FRACTIONAL SEG), the SR with the review, key images, and the view as
    Secondary Capture, into ``folder``."""
    from radlens.inference.dicom_export import write_dicom_results

    yield Progress(0, 2, "writing DICOM results")
    models = {m.name: 0.0 for m in findings.models}  # thresholds were applied by ``reviewed``
    paths = write_dicom_results(
        findings, volume, folder, review=decisions, anonymize=anonymize, thresholds=models, probability_maps=True
    )
    check_cancel(cancel, "DICOM export")
    if capture is not None:
        yield Progress(1, 2, "writing the screenshot")
        paths.append(write_capture(capture, volume, Path(folder) / "SC-view.dcm", anonymize=anonymize))
    yield Progress(2, 2, f"wrote {len(paths)} DICOM objects")
    return paths


def send_results(
    node, local, findings: Findings, volume: Volume, decisions, capture: Capture | None, cancel: threading.Event
) -> Generator[Progress, None, int]:
    """Write the results into a temporary folder and send them; the PACS must hold the source series."""
    from radlens.pacs.client import iter_send

    with tempfile.TemporaryDirectory(prefix="radlens-send-") as folder:
        paths = yield from write_results(findings, volume, decisions, folder, False, capture, cancel)
        return (yield from iter_send(node, local, paths, cancel=cancel))


def read_results(paths, volume: Volume, cancel: threading.Event):
    """Other tools' SEG / SR / RTSTRUCT files on the open series (an ImportedResults)."""
    from radlens.inference.dicom_import import read_dicom_results

    paths = [str(p) for p in paths]
    yield Progress(0, 1, f"reading {len(paths)} DICOM result file(s)")
    check_cancel(cancel, "DICOM results")
    return read_dicom_results(paths, volume)


def results_beside(volume: Volume, cancel: threading.Event):
    """The SEG / SR / RTSTRUCT files near the series that reference it: in its own folder, or, laid out
    as a retrieve writes (``<study UID>/<series UID>/``), in its study's folder. None when there are none."""
    from radlens.inference.dicom_import import find_dicom_results

    if not volume.files:
        return None
    folder = Path(volume.files[0]).parent
    if folder.parent.name == volume.study.study_uid:
        folder = folder.parent
    yield Progress(0, 1, "looking for DICOM results")
    found = find_dicom_results(folder, volume)
    check_cancel(cancel, "DICOM results")
    if not found:
        return None
    return (yield from read_results(found, volume, cancel))
