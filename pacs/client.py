"""What the command line and the viewer call: echo, find, retrieve and send, over DIMSE or DICOMweb.

The node says which protocol (``Node.kind``); a DIMSE node retrieves with C-GET or C-MOVE as it is
configured (or as asked). Retrieve and send are generators yielding Progress and checking a
cancel event (docs/architecture.md, "Long work and threads").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from pathlib import Path

import pydicom

from radlens.imaging.dicom_references import DERIVED_MODALITIES, referenced_series
from radlens.imaging.progress import Progress, check_cancel
from radlens.pacs import dimse, web
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import LocalAE, Node
from radlens.pacs.query import Match, Query
from radlens.pacs.staging import Staging

METHODS = ("get", "move", "wado")


def echo(node: Node, local: LocalAE) -> str:
    """Check that the node answers; return what was checked."""
    if node.kind == "dicomweb":
        web.echo(node, local)
        return f"{node}: QIDO-RS answered"
    dimse.echo(node, local)
    return f"{node}: C-ECHO succeeded"


def find(node: Node, local: LocalAE, query: Query) -> list[Match]:
    return (web if node.kind == "dicomweb" else dimse).find(node, local, query)


def iter_retrieve(
    node: Node,
    local: LocalAE,
    study_uid: str,
    dest: str | os.PathLike,
    *,
    series_uid: str | None = None,
    method: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, list[Path]]:
    """A study (or one series) into ``DEST/<study>/<series>/``, all or nothing; returns the series folders.

    Each Progress's ``preview`` is the newest instance received (a path), so a viewer can show it.
    """
    method = method or ("wado" if node.kind == "dicomweb" else node.retrieve)
    if method not in METHODS:
        raise PacsError(f"--via {method}", f"must be one of {', '.join(METHODS)}")
    if (method == "wado") != (node.kind == "dicomweb"):
        raise PacsError(
            node, f"{'WADO-RS needs a DICOMweb node' if method == 'wado' else 'is a DICOMweb node: use WADO-RS'}"
        )
    instances = yield from _instances(node, local, study_uid, series_uid, cancel)
    what = f"series {series_uid}" if series_uid else f"study {study_uid}"
    if not instances:
        raise PacsError(node, f"holds no instances of {what}")
    yield Progress(0, len(instances), f"{node}: {len(instances)} instances of {what}")
    run = {"get": dimse.iter_get, "move": dimse.iter_move, "wado": web.iter_wado}[method]
    with Staging(dest, study_uid) as staging:
        yield from run(node, local, series_uid, instances, staging, cancel)
        check_cancel(cancel, f"retrieve from {node}")
        if staging.count < len(instances):
            why = f": {staging.refused[0]}" if staging.refused else ""
            raise PacsError(node, f"only {staging.count} of {len(instances)} instances of {what} arrived{why}")
        yield Progress(staging.count, len(instances), f"{node}: {staging.count} instances received")
        return staging.commit()


def _instances(node, local, study_uid, series_uid, cancel) -> Generator[Progress, None, list[Match]]:
    """Every instance to retrieve (image-level queries, series by series): the count and SOP classes."""
    series = (
        [series_uid]
        if series_uid
        else [m["SeriesInstanceUID"] for m in find(node, local, Query("series", {"StudyInstanceUID": study_uid}))]
    )
    out: list[Match] = []
    for i, uid in enumerate(series, start=1):
        check_cancel(cancel, f"retrieve from {node}")
        out += find(node, local, Query("image", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": uid}))
        yield Progress(i, len(series), f"{node}: listing series {i}/{len(series)}")
    return out


def dicom_files(paths) -> list[Path]:
    """The files to send: each path a file, or a folder whose files are all taken (hidden ones skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.parts))
        elif p.is_file():
            out.append(p)
        else:
            raise PacsError(p, "no such file or folder")
    if not out:
        raise PacsError(", ".join(map(str, paths)) or "send", "no files to send")
    return out


def read_headers(paths: list[Path]) -> dict[Path, pydicom.Dataset]:
    """Each file's header (no pixels); a file that is not DICOM, or has no file meta, is refused by name."""
    headers = {}
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            syntax = ds.file_meta.TransferSyntaxUID
        except Exception as err:  # any file at all may be named: it is refused, not a traceback
            raise PacsError(path, f"not a DICOM file to send: {type(err).__name__}: {err}") from None
        if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID") or not syntax:
            raise PacsError(path, "not a DICOM file to send: no SOP class, instance UID or transfer syntax")
        headers[path] = ds
    return headers


def check_references(node: Node, local: LocalAE, headers: dict[Path, pydicom.Dataset]) -> None:
    """Results (SEG, SR, KOS, RTSTRUCT) must join their source series on the node: each series they
    reference is sent with them or already held there, in the same study; else one line says which not."""
    sending = {str(ds.get("SeriesInstanceUID", "")) for ds in headers.values()}
    held: dict[str, bool] = {}
    for path, ds in headers.items():
        if str(ds.get("Modality", "")) not in DERIVED_MODALITIES:
            continue
        study = str(ds.get("StudyInstanceUID", ""))
        for series in sorted(referenced_series(ds) - sending):
            if series not in held:
                query = Query("series", {"StudyInstanceUID": study, "SeriesInstanceUID": series})
                held[series] = bool(find(node, local, query))
            if not held[series]:
                raise PacsError(
                    path,
                    f"references series {series}, which {node} does not hold in study {study}: send that series first",
                )


def iter_send(
    node: Node, local: LocalAE, paths, *, cancel: threading.Event | None = None, check: bool = True
) -> Generator[Progress, None, int]:
    """Send files (C-STORE or STOW-RS); results are checked against the node first (``check_references``)."""
    files = dicom_files(paths)
    yield Progress(0, len(files), f"{node}: checking {len(files)} files")
    headers = read_headers(files)
    if check:
        check_references(node, local, headers)
    if node.kind == "dicomweb":
        return (yield from web.iter_stow(node, local, files, cancel))
    return (yield from dimse.iter_store(node, local, headers, cancel))
