"""DICOMweb with dicomweb-client: QIDO-RS (find), WADO-RS (retrieve into a Staging folder), STOW-RS (send).

Requests' long exceptions become one line naming the node and the reason (unreachable, HTTP status).
A patient-level query is answered from the studies (QIDO-RS has no patient resource), one row per
patient with the number of its studies.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from radlens.imaging.progress import Cancelled, Progress
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import LocalAE, Node
from radlens.pacs.query import RETURN_KEYS, Match, Query, as_match
from radlens.pacs.staging import Staging

STOW_BATCH = 16  # instances per STOW-RS request: progress between requests, memory bounded


def client(node: Node, local: LocalAE) -> DICOMwebClient:
    if node.kind != "dicomweb":
        raise PacsError(node, "is a DIMSE node: DICOMweb needs a URL")
    web = DICOMwebClient(url=node.url, timeout=local.timeout_s)
    web.set_http_retry_params(retry=False)  # an unreachable node is said at once; the user retries
    return web


@contextmanager
def calls(node: Node, what: str):
    """Requests' and dicomweb-client's errors as one line naming the node."""
    try:
        yield
    except requests.HTTPError as err:
        response = err.response
        code = f"HTTP {response.status_code} {response.reason}" if response is not None else str(err)
        raise PacsError(node, f"{what}: {code}") from None
    except requests.Timeout:
        raise PacsError(node, f"{what}: no answer in time") from None
    except requests.ConnectionError as err:
        raise PacsError(node, f"unreachable: {_reason(err)}") from None
    except requests.RequestException as err:
        raise PacsError(node, f"{what}: {_reason(err)}") from None
    except ValueError as err:  # dicomweb-client's complaints about an answer it cannot parse
        raise PacsError(node, f"{what}: unexpected answer: {err}") from None


def _reason(err: BaseException) -> str:
    """The innermost socket error of requests' nested exceptions ("Connection refused", ...)."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return found[-1].strip() if found else type(err).__name__


def echo(node: Node, local: LocalAE) -> None:
    with calls(node, "QIDO-RS"):
        client(node, local).search_for_studies(limit=1)


def find(node: Node, local: LocalAE, query: Query) -> list[Match]:
    web = client(node, local)
    keys = dict(query.keys)
    level = "study" if query.level == "patient" else query.level
    fields = list(RETURN_KEYS[level])
    with calls(node, "QIDO-RS"):
        if level == "study":
            answers = web.search_for_studies(search_filters=keys, fields=fields, get_remaining=True)
        elif level == "series":
            study = keys.pop("StudyInstanceUID")
            answers = web.search_for_series(study, search_filters=keys, fields=fields, get_remaining=True)
        else:
            study, series = keys.pop("StudyInstanceUID"), keys.pop("SeriesInstanceUID")
            answers = web.search_for_instances(study, series, search_filters=keys, fields=fields, get_remaining=True)
        matches = [as_match(Dataset.from_json(a), level) for a in answers]
    return _patients(matches) if query.level == "patient" else matches


def _patients(studies: list[Match]) -> list[Match]:
    rows: dict[str, Match] = {}
    for s in studies:
        row = rows.setdefault(
            s["PatientID"],
            {k: "" for k in RETURN_KEYS["patient"]} | {"PatientID": s["PatientID"], "PatientName": s["PatientName"]},
        )
        row["NumberOfPatientRelatedStudies"] = str(int(row["NumberOfPatientRelatedStudies"] or 0) + 1)
    return list(rows.values())


def iter_wado(
    node: Node, local: LocalAE, series_uid: str | None, instances: list[Match], staging: Staging, cancel
) -> Generator[Progress, None, None]:
    """WADO-RS: the study (or series) streamed instance by instance into the staging folder."""
    web = client(node, local)
    total = len(instances)
    with calls(node, "WADO-RS"):
        stream = web.iter_series(staging.study_uid, series_uid) if series_uid else web.iter_study(staging.study_uid)
        try:
            for ds in stream:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"WADO-RS from {node}")
                if staging.add(ds) is None:
                    raise PacsError(node, f"WADO-RS: {staging.refused[-1]}")
                total = max(total, staging.count)
                yield Progress(staging.count, total, f"{node}: {staging.count}/{total} instances", preview=staging.last)
        finally:
            stream.close()


def iter_stow(node: Node, local: LocalAE, paths: list[Path], cancel) -> Generator[Progress, None, int]:
    """STOW-RS in batches; an instance the server refuses stops the send with its reason."""
    web = client(node, local)
    for start in range(0, len(paths), STOW_BATCH):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"STOW-RS to {node}")
        batch = {}
        for path in paths[start : start + STOW_BATCH]:
            ds = pydicom.dcmread(path)
            batch[str(ds.SOPInstanceUID)] = (path, ds)
        with calls(node, "STOW-RS"):
            answer = web.store_instances([ds for _, ds in batch.values()])
        failed = answer.get("FailedSOPSequence", [])
        if failed:
            item = failed[0]
            path, _ = batch.get(str(item.get("ReferencedSOPInstanceUID", "")), next(iter(batch.values())))
            reason = item.get("FailureReason", "")
            raise PacsError(path, f"{node} refused it (STOW-RS failure reason {reason}; {len(failed)} refused)")
        done = start + len(batch)
        yield Progress(done, len(paths), f"{node}: sent {done}/{len(paths)}")
    return len(paths)
