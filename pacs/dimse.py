"""DIMSE with pynetdicom: C-ECHO, C-FIND, C-GET and C-MOVE into a Staging folder, C-STORE.

Every association is opened by ``associate``, which turns a node that cannot be reached or that
refuses into one line naming the node and the reason. Retrieval follows the PACS's pending
responses, yielding Progress per instance; a cancel aborts the association at the next one.
C-MOVE needs a storage SCP the PACS can reach: RadLens starts one for the retrieve on
``local.host:local.port`` under ``local.ae_title`` (the PACS must know that title) and stops it after.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Generator, Iterable
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom import uid as uids
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from radlens.imaging.progress import Cancelled, Progress
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import LocalAE, Node
from radlens.pacs.query import Match, Query, as_match
from radlens.pacs.staging import Staging

# What RadLens reads (pydicom with the pylibjpeg plugins): offered for every instance it receives.
RECEIVE_SYNTAXES = [
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
    uids.JPEGBaseline8Bit,
    uids.JPEGExtended12Bit,
    uids.JPEGLossless,
    uids.JPEGLosslessSV1,
    uids.JPEGLSLossless,
    uids.JPEGLSNearLossless,
    uids.JPEG2000Lossless,
    uids.JPEG2000,
    uids.RLELossless,
]
UNCOMPRESSED = [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian]
MAX_CONTEXTS = 128  # the most presentation contexts one association may propose
PENDING = (0xFF00, 0xFF01)
SUCCESS_OR_WARNING = (0x0000, 0x0001, 0xB000, 0xB006, 0xB007)
STATUS_MEANING = {
    0xA700: "out of resources",
    0xA701: "out of resources (cannot count the matches)",
    0xA702: "out of resources (cannot perform the sub-operations)",
    0xA801: "the move destination is unknown: the PACS must know RadLens' AE title, host and port",
    0xA900: "the identifier does not match the SOP class",
    0xC000: "unable to process",
    0xFE00: "cancelled",
}

logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its failures come back to the user as PacsErrors


def _ae(local: LocalAE) -> AE:
    ae = AE(ae_title=local.ae_title)
    ae.connection_timeout = local.timeout_s
    ae.acse_timeout = local.timeout_s
    ae.network_timeout = max(local.timeout_s, 30.0)
    ae.dimse_timeout = max(local.timeout_s, 30.0)
    return ae


@contextmanager
def associate(node: Node, local: LocalAE, contexts, *, roles=(), handlers=()):
    """An established association with ``node`` (released after the block, aborted on an error).

    ``contexts``: (abstract syntax, [transfer syntaxes]) pairs; ``roles``: SCP/SCU role selections.
    """
    if node.kind != "dimse":
        raise PacsError(node, "is a DICOMweb node: DIMSE needs an AE title, host and port")
    ae = _ae(local)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    try:
        assoc = ae.associate(
            node.host, node.port, ae_title=node.ae_title, ext_neg=list(roles) or None, evt_handlers=list(handlers)
        )
    except OSError as err:  # the host name does not resolve
        raise PacsError(node, f"unreachable: {err.strerror or err}") from None
    if not assoc.is_established:
        raise PacsError(node, _why_not(assoc, node, local.timeout_s))
    try:
        yield assoc
    except BaseException:
        assoc.abort()
        raise
    assoc.release()


def _why_not(assoc, node: Node, timeout_s: float) -> str:
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        p = assoc.acceptor.primitive
        return f"association rejected by the {p.source_str} ({p.result_str.split()[-1].lower()}): {p.reason_str}"
    try:  # pynetdicom only logs why it could not connect; ask the network once more for the reason
        socket.create_connection((node.host, node.port), timeout=timeout_s).close()
    except OSError as err:
        return f"unreachable: {err.strerror or err or type(err).__name__}"
    return "no DICOM association (connection closed or timed out: is this the DICOM port?)"


def _accepted(assoc, abstract: str, node: Node, what: str) -> None:
    if not any(cx.abstract_syntax == abstract for cx in assoc.accepted_contexts):
        raise PacsError(node, f"does not accept {what} ({uids.UID(abstract).name})")


def _status(status: Dataset, node: Node, what: str) -> int:
    if not status or "Status" not in status:
        raise PacsError(node, f"{what}: no answer (aborted or timed out: does the node accept RadLens' AE title?)")
    return int(status.Status)


def _failure(node: Node, what: str, code: int, status: Dataset) -> PacsError:
    meaning = STATUS_MEANING.get(code) or STATUS_MEANING.get(code & 0xFF00, "failed")
    comment = str(status.get("ErrorComment", "")).strip()
    return PacsError(node, f"{what}: status 0x{code:04X}, {meaning}" + (f" ({comment})" if comment else ""))


# -- verification and query ----------------------------------------------------------------------------
def echo(node: Node, local: LocalAE) -> None:
    with associate(node, local, [(Verification, UNCOMPRESSED)]) as assoc:
        code = _status(assoc.send_c_echo(), node, "C-ECHO")
        if code != 0x0000:
            raise _failure(node, "C-ECHO", code, Dataset())


def find(node: Node, local: LocalAE, query: Query) -> list[Match]:
    model = (
        PatientRootQueryRetrieveInformationModelFind
        if query.level == "patient"
        else StudyRootQueryRetrieveInformationModelFind
    )
    with associate(node, local, [(model, UNCOMPRESSED)]) as assoc:
        _accepted(assoc, model, node, "C-FIND")
        found = []
        for status, identifier in assoc.send_c_find(query.identifier(), model):
            code = _status(status, node, "C-FIND")
            if code in PENDING:
                found.append(as_match(identifier, query.level))
            elif code == 0x0000:
                break
            else:
                raise _failure(node, "C-FIND", code, status)
    return found


# -- retrieval -----------------------------------------------------------------------------------------
def _received(staging: Staging, event) -> int:
    """EVT_C_STORE: one instance into the staging folder (in the association's thread)."""
    try:
        path = staging.add(event.dataset, event.encoded_dataset())
    except PacsError as err:
        staging.refuse(str(err))
        return 0xC211
    except Exception as err:  # a full disk, an undecodable header: that instance fails, the PACS hears it
        staging.refuse(f"cannot store an instance: {type(err).__name__}: {err}")
        return 0xA700
    return 0x0000 if path is not None else 0xC211  # another study's instance is refused


def _identifier(study_uid: str, series_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _follow(responses: Iterable, node: Node, what: str, total: int, staging: Staging, cancel):
    """Follow a C-GET/C-MOVE's responses: Progress per pending one, a PacsError on failure."""
    for status, _ in responses:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{what} from {node}")
        code = _status(status, node, what)
        if code in PENDING:
            counts = [int(status.get(k) or 0) for k in _SUBOPS]
            total = max(total, sum(counts))
            yield Progress(staging.count, total, f"{node}: {staging.count}/{total} instances", preview=staging.last)
            continue
        failed = int(status.get("NumberOfFailedSuboperations") or 0)
        if code in SUCCESS_OR_WARNING and not failed:
            return
        if failed:
            why = f"; {staging.refused[0]}" if staging.refused else ""
            raise PacsError(node, f"{what}: {failed} of {total} instances failed (status 0x{code:04X}){why}")
        raise _failure(node, what, code, status)


_SUBOPS = (
    "NumberOfRemainingSuboperations",
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)


def iter_get(
    node: Node, local: LocalAE, series_uid: str | None, instances: list[Match], staging: Staging, cancel
) -> Generator[Progress, None, None]:
    """C-GET: the PACS sends the instances back over our own association, as C-STOREs we accept."""
    classes = sorted({m["SOPClassUID"] for m in instances if m.get("SOPClassUID")})
    if not classes:  # the PACS did not say: offer the common storage classes
        classes = [cx.abstract_syntax for cx in StoragePresentationContexts[: MAX_CONTEXTS - 1]]
    if len(classes) >= MAX_CONTEXTS:
        raise PacsError(node, f"C-GET: {len(classes)} SOP classes in one retrieve (at most {MAX_CONTEXTS - 1})")
    contexts = [(StudyRootQueryRetrieveInformationModelGet, UNCOMPRESSED)]
    contexts += [(c, RECEIVE_SYNTAXES) for c in classes]
    roles = [build_role(c, scp_role=True) for c in classes]
    handler = (evt.EVT_C_STORE, functools.partial(_received, staging))
    with associate(node, local, contexts, roles=roles, handlers=[handler]) as assoc:
        _accepted(assoc, StudyRootQueryRetrieveInformationModelGet, node, "C-GET")
        responses = assoc.send_c_get(
            _identifier(staging.study_uid, series_uid), StudyRootQueryRetrieveInformationModelGet
        )
        yield from _follow(responses, node, "C-GET", len(instances), staging, cancel)


def iter_move(
    node: Node, local: LocalAE, series_uid: str | None, instances: list[Match], staging: Staging, cancel
) -> Generator[Progress, None, None]:
    """C-MOVE: the PACS opens its own association to RadLens' storage SCP, started here for the retrieve."""
    scp = _ae(local)
    for cx in AllStoragePresentationContexts:
        scp.add_supported_context(cx.abstract_syntax, RECEIVE_SYNTAXES)
    handler = (evt.EVT_C_STORE, functools.partial(_received, staging))
    try:
        server = scp.start_server((local.host, local.port), block=False, evt_handlers=[handler])
    except OSError as err:
        where = f"RadLens storage SCP {local.ae_title}@{local.host}:{local.port}"
        raise PacsError(where, f"cannot listen: {err.strerror or err}") from None
    try:
        model = StudyRootQueryRetrieveInformationModelMove
        with associate(node, local, [(model, UNCOMPRESSED)]) as assoc:
            _accepted(assoc, model, node, "C-MOVE")
            responses = assoc.send_c_move(_identifier(staging.study_uid, series_uid), local.ae_title, model)
            yield from _follow(responses, node, "C-MOVE", len(instances), staging, cancel)
    finally:
        server.shutdown()


# -- sending -------------------------------------------------------------------------------------------
def iter_store(node: Node, local: LocalAE, headers: dict[Path, Dataset], cancel) -> Generator[Progress, None, int]:
    """C-STORE every file (``headers``: path → its header) over one association; a refused instance stops
    the send with its reason."""
    wanted: dict[str, set[str]] = {}
    for ds in headers.values():
        syntax = str(ds.file_meta.TransferSyntaxUID)
        wanted.setdefault(str(ds.SOPClassUID), set()).add(syntax)
    contexts = []
    for sop_class, syntaxes in sorted(wanted.items()):
        plain = [s for s in syntaxes if uids.UID(s) in UNCOMPRESSED or s == uids.ExplicitVRBigEndian]
        compressed = sorted(set(syntaxes) - set(plain))
        if plain:
            contexts.append((sop_class, UNCOMPRESSED))
        contexts += [(sop_class, [s]) for s in compressed]
    if len(contexts) > MAX_CONTEXTS:
        raise PacsError(node, f"C-STORE: {len(contexts)} kinds of object in one send (at most {MAX_CONTEXTS})")
    with associate(node, local, contexts) as assoc:
        for i, path in enumerate(headers, start=1):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"C-STORE to {node}")
            try:
                status = assoc.send_c_store(pydicom.dcmread(path))
            except ValueError as err:  # no accepted context for this SOP class / transfer syntax
                raise PacsError(path, f"{node} accepts no way to store it: {err}") from None
            code = _status(status, node, "C-STORE")
            if code not in SUCCESS_OR_WARNING:
                comment = str(status.get("ErrorComment", "")).strip()
                raise PacsError(path, f"{node} refused it: status 0x{code:04X}" + (f" ({comment})" if comment else ""))
            yield Progress(i, len(headers), f"{node}: sent {i}/{len(headers)}")
    return len(headers)
