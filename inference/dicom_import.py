"""Other tools' results (DICOM SEG, TID 1500 SR, RTSTRUCT) as RadLens findings on the series they reference.

A result is matched to the open series by the series it references and its frame of reference; one
that points elsewhere is refused in one line naming the file and the reason. Each producer becomes a
``ModelRun`` named after it (the algorithm a SEG names, else the software), so its masks and boxes
show as layers like RadLens' own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import pydicom

from radlens.imaging.dicom_references import referenced_series
from radlens.imaging.volume import Volume
from radlens.inference.dicom_rtstruct import read_rtstruct
from radlens.inference.dicom_seg import read_seg
from radlens.inference.dicom_source import SourceSeries, source_series
from radlens.inference.dicom_sr import read_sr
from radlens.inference.errors import DicomResultsError
from radlens.inference.findings import Detection, Findings, ModelRun

RESULT_MODALITIES = ("SEG", "SR", "RTSTRUCT")


@dataclass(frozen=True, eq=False)
class ImportedResults:
    """Findings read from DICOM results, the review decisions an SR carried, and what was refused."""

    findings: Findings
    decisions: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


def is_dicom_result(path: str | os.PathLike) -> bool:
    """Whether a file is a SEG, SR or RTSTRUCT (headers only; anything unreadable is not)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"], force=True)
    except Exception:  # any file at all may be dropped on the window
        return False
    return str(ds.get("Modality", "")) in RESULT_MODALITIES


def find_dicom_results(folder: str | os.PathLike, volume: Volume) -> list[Path]:
    """The SEG/SR/RTSTRUCT files directly in ``folder`` (or its subfolders) that reference ``volume``'s series."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm")):
        if str(path) in volume.files or not is_dicom_result(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        if volume.series_uid in referenced_series(ds):
            found.append(path)
    return found


def read_dicom_results(paths, volume: Volume) -> ImportedResults:
    """Every file's results on ``volume``, combined; a file that does not fit is listed in ``errors``."""
    source = source_series(volume)
    base = Findings.empty_for(volume)
    models: dict[str, ModelRun] = {}
    detections: list[Detection] = []
    segmentations, decisions, errors = [], {}, []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        try:
            runs, dets, segs, decided = read_one(path, source)
        except DicomResultsError as err:
            errors.append(str(err))
            continue
        for run in runs:
            models.setdefault(run.name, run)
        taken = {d.id for d in detections}
        for d in dets:
            if d.id in taken:
                d = Detection(max(taken) + 1, *(getattr(d, f) for f in list(Detection.__dataclass_fields__)[1:]))
            taken.add(d.id)
            detections.append(d)
        segmentations += segs
        decisions.update(decided)
    findings = Findings(base.input, "cpu", tuple(models.values()), tuple(detections), tuple(segmentations))
    return ImportedResults(findings, decisions, tuple(errors))


def read_one(path, source: SourceSeries) -> tuple[list[ModelRun], list[Detection], list, dict[str, str]]:
    """One result file on the source series: (model runs, detections, segmentations, decisions)."""
    path = str(path)
    try:
        ds = pydicom.dcmread(path, force=True)  # some tools write no preamble
    except Exception as err:
        raise DicomResultsError(path, f"not a readable DICOM file: {type(err).__name__}: {err}") from None
    modality = str(ds.get("Modality", ""))
    if modality not in RESULT_MODALITIES:
        raise DicomResultsError(path, f"not a SEG, SR or RTSTRUCT (modality {modality or 'none'})")
    check_references(ds, source, path)
    volume = source.volume
    if modality == "SR":
        read = read_sr(hd.sr.Comprehensive3DSR.from_dataset(ds, copy=False), source, path)
        return list(read.models), list(read.detections), [], read.decisions
    try:
        if modality == "SEG":
            (name, version), segs = read_seg(hd.seg.Segmentation.from_dataset(ds, copy=False), volume, path)
        else:
            (name, version), segs = read_rtstruct(ds, source, path)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise DicomResultsError(path, f"malformed {modality}: {type(err).__name__}: {err}") from None
    return [ModelRun(name, version, "segmentation")], [], segs, {}


def check_references(ds, source: SourceSeries, path: str) -> None:
    """Refuse a result derived from another series, or in another frame of reference."""
    series = referenced_series(ds)
    if series and source.series_uid not in series:
        raise DicomResultsError(path, f"references series {', '.join(sorted(series))}, not {source.series_uid}")
    frames = {str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if "FrameOfReferenceUID" in ds and str(ds.get("Modality")) != "SR":
        frames.add(str(ds.FrameOfReferenceUID))
    if frames and source.frame_of_reference_uid not in frames:
        raise DicomResultsError(
            path,
            f"frame of reference {', '.join(sorted(frames))} is not the series' {source.frame_of_reference_uid}",
        )
