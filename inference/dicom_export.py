"""``write_dicom_results``: a series' findings, as reviewed, as DICOM objects a PACS, OHIF or Slicer reads.

One SEG per segmentation model (and, when asked, a FRACTIONAL SEG per heat-map model), one
Comprehensive 3D SR for the findings, and a Key Object Selection of their key slices, all in the
source study. A detection is reported when it reaches its model's threshold or the reader decided
on it; the review decisions (``review``: the review file's keys, ``det:MODEL:ID`` and
``seg:MODEL:LABEL:N``, to ``accepted``/``rejected``) travel as the SR's qualitative evaluations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from radlens.imaging.volume import Volume
from radlens.inference.dicom_capture import write_key_images
from radlens.inference.dicom_seg import write_seg
from radlens.inference.dicom_source import safe_name, source_series
from radlens.inference.dicom_sr import SrFinding, write_sr
from radlens.inference.findings import Findings, ModelRun, check_matches

FIRST_SERIES_NUMBER = 900  # derived series sort after the acquired ones


def write_dicom_results(
    findings: Findings,
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    review: Mapping | None = None,
    anonymize: bool = False,
    thresholds: Mapping[str, float] | None = None,
    probability_maps: bool = False,
) -> list[Path]:
    """Write the DICOM results of ``findings`` on ``volume`` into ``out_dir``; return the files written.

    ``thresholds`` (model → score) replaces the models' own, as the viewer's layer sliders do.
    """
    check_matches(findings, volume, "findings")
    source = source_series(volume)
    review = {str(k): str(v) for k, v in (review or {}).items()}
    out = Path(out_dir)
    models = {m.name: m for m in findings.models}
    written: list[Path] = []
    number = FIRST_SERIES_NUMBER
    for model, segs in _by_model(s for s in findings.segmentations if s.mask is not None).items():
        number += 1
        path = out / f"SEG-{safe_name(model)}.dcm"
        written.append(write_seg(segs, _run(models, model), source, path, series_number=number, anonymize=anonymize))
    if probability_maps:
        for model, maps in _by_model(c for c in findings.classifications if c.heatmap is not None).items():
            number += 1
            path = out / f"SEG-{safe_name(model)}-probability.dcm"
            written.append(
                write_seg(maps, _run(models, model), source, path, series_number=number, anonymize=anonymize)
            )
    entries = sr_findings(findings, review, thresholds or {})
    if entries:  # highdicom's TID 1500 needs at least one measurement group
        number += 1
        written.append(write_sr(entries, source, out / "SR-findings.dcm", series_number=number, anonymize=anonymize))
        accepted = [e for e in entries if e.decision == "accepted"]
        keys = accepted or [e for e in entries if e.decision != "rejected"]
        if keys:
            number += 1
            what = "accepted findings" if accepted else "AI findings not rejected"
            written.append(
                write_key_images(
                    source,
                    [e.key_slice for e in keys],
                    out / "KO-key-images.dcm",
                    series_number=number,
                    description=f"Key slices of the {what} (machine-generated)",
                    anonymize=anonymize,
                )
            )
    return written


def sr_findings(findings: Findings, review: Mapping[str, str], thresholds: Mapping[str, float]) -> list[SrFinding]:
    """The findings the SR reports: detections at or above threshold or reviewed, and every mask component."""
    models = {m.name: m for m in findings.models}
    out = []
    for d in findings.detections:
        key = f"det:{d.model}:{d.id}"
        threshold = thresholds.get(d.model, models[d.model].threshold if d.model in models else None)
        if threshold is not None and d.score < threshold and key not in review:
            continue
        z0, z1 = d.box_zyx[0], d.box_zyx[3]
        z = int(min(max(round(d.center_zyx[0]), z0), z1 - 1))
        out.append(
            SrFinding(key, _run(models, d.model), d.label, d.score, d.box_zyx, z, d.diameter_mm, None, review.get(key))
        )
    for s in findings.segmentations:
        for c in s.components:
            key = f"seg:{s.model}:{s.label}:{c.id}"
            z0, y0, x0, z1, y1, x1 = c.box_zyx
            z = z0
            if s.mask is not None:
                z = z0 + int(np.argmax(np.count_nonzero(s.mask[z0:z1, y0:y1, x0:x1], axis=(1, 2))))
            run = _run(models, s.model)
            out.append(
                SrFinding(key, run, s.label, c.mean_probability, c.box_zyx, z, None, c.volume_ml, review.get(key))
            )
    return out


def _by_model(items) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(item.model, []).append(item)
    return groups


def _run(models: Mapping[str, ModelRun], name: str) -> ModelRun:
    return models.get(name) or ModelRun(name, "", "unknown")
