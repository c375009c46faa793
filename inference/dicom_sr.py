"""Comprehensive 3D SR (TID 1500): RadLens findings out, any tool's planar and 3D ROIs in.

Each finding is a TID 1410 planar group on its key slice: long axis (mm), volume, score and the
review as a qualitative evaluation, around a SCOORD POLYLINE rectangle whose tracking identifier is
``Cornerstone3DTools@^0.1.0:RectangleROI``, the form OHIF rehydrates as a rectangle tool. A TID
1411 volumetric group with the same tracking UID holds the 3D box (its six faces as SCOORD3D
polygons in LPS mm) and RadLens' own key for the finding, so a round trip keeps ids and decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from radlens.imaging.volume import Volume
from radlens.inference.dicom_source import (
    MANUFACTURER,
    PRIVATE_SCHEME,
    SourceSeries,
    algorithm_id,
    device_observer,
    finding_code,
    label_of,
    producer,
    save,
)
from radlens.inference.errors import DicomResultsError
from radlens.inference.findings import Detection, ModelRun

OHIF_RECTANGLE = "Cornerstone3DTools@^0.1.0:RectangleROI"
KEY_PREFIX = "RadLens "  # the volumetric group's tracking identifier: "RadLens det:MODEL:ID"
REVIEW = hd.sr.CodedConcept("REVIEW", PRIVATE_SCHEME, "Review status")
DECISIONS = {
    "accepted": hd.sr.CodedConcept("ACCEPTED", PRIVATE_SCHEME, "Accepted by reader"),
    "rejected": hd.sr.CodedConcept("REJECTED", PRIVATE_SCHEME, "Rejected by reader"),
}


@dataclass(frozen=True)
class SrFinding:
    """One finding as the SR states it: a detection, or a segmented component."""

    key: str  # the review key (det:MODEL:ID or seg:MODEL:LABEL:N)
    model: ModelRun
    label: str
    score: float
    box_zyx: tuple[int, int, int, int, int, int]
    key_slice: int
    diameter_mm: float | None = None
    volume_ml: float | None = None
    decision: str | None = None  # accepted | rejected | None


def write_sr(
    findings: list[SrFinding],
    source: SourceSeries,
    path: str | os.PathLike,
    *,
    series_number: int,
    anonymize: bool = False,
    evidence: list = (),
) -> Path:
    """One measurement report for every finding; ``evidence`` adds objects it cites (e.g. the SEGs)."""
    groups = []
    for f in findings:
        uid = hd.UID()
        algo = algorithm_id(f.model)
        measurements = [hd.sr.Measurement(codes.DCM.Probability, f.score, codes.UCUM.NoUnits, algorithm_id=algo)]
        if f.diameter_mm is not None:
            measurements.append(
                hd.sr.Measurement(codes.SCT.LongAxis, f.diameter_mm, codes.UCUM.Millimeter, algorithm_id=algo)
            )
        if f.volume_ml is not None:
            measurements.append(
                hd.sr.Measurement(codes.SCT.Volume, f.volume_ml * 1000.0, codes.UCUM.CubicMillimeter, algorithm_id=algo)
            )
        quality = [hd.sr.QualitativeEvaluation(REVIEW, DECISIONS[f.decision])] if f.decision in DECISIONS else None
        _, y0, x0, _, y1, x1 = f.box_zyx
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=OHIF_RECTANGLE),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                    graphic_data=corners,
                    source_image=hd.sr.SourceImageForRegion.from_source_image(source.datasets[f.key_slice]),
                ),
                finding_type=finding_code(f.label),
                algorithm_id=algo,
                measurements=measurements,
                qualitative_evaluations=quality,
            )
        )
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=(KEY_PREFIX + f.key)[:64]),
                referenced_volume_surface=hd.sr.VolumeSurface(
                    graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
                    graphic_data=box_faces(source.volume, f.box_zyx),
                    frame_of_reference_uid=source.frame_of_reference_uid,
                    source_series=hd.sr.SourceSeriesForSegmentation(source.series_uid),
                ),
                finding_type=finding_code(f.label),
                algorithm_id=algo,
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer()),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    models = sorted({f.model.name for f in findings})
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source.datasets, *evidence],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"AI findings (machine-generated): {', '.join(models) or 'none'}"[:64],
    )
    return save(sr, path, anonymized=anonymize)


def box_faces(volume: Volume, box_zyx) -> list[np.ndarray]:
    """The six faces of a half-open voxel box as closed polygons through its voxel edges, in LPS mm."""
    z0, y0, x0, z1, y1, x1 = (float(v) - 0.5 for v in box_zyx)
    faces = []
    for axis in range(3):
        for side in ((z0, z1), (y0, y1), (x0, x1))[axis]:
            lo = [(z0, z1), (y0, y1), (x0, x1)]
            a, b = (i for i in range(3) if i != axis)
            ring = []
            for u, v in ((0, 0), (1, 0), (1, 1), (0, 1), (0, 0)):
                p = [0.0, 0.0, 0.0]
                p[axis], p[a], p[b] = side, lo[a][u], lo[b][v]
                ring.append(p)
            faces.append(volume.index_to_lps(np.array(ring)))
    return faces


# -- reading -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SrRead:
    """What an SR holds for a series: its detections, the models behind them, and any review decisions."""

    detections: tuple[Detection, ...]
    models: tuple[ModelRun, ...]
    decisions: dict[str, str]


def read_sr(sr, source: SourceSeries, path: str) -> SrRead:
    """TID 1500 planar and volumetric ROIs as detections on the source grid (segment components skipped:
    the SEG carries them), pairing a planar and a volumetric group by their tracking UID. An SR holds
    what was reported, so its models' threshold is 0: every finding in it shows."""
    try:
        report = hd.sr.MeasurementReport.from_sequence(sr.ContentSequence and [sr], copy=False)
    except (ValueError, AttributeError, TypeError) as err:
        raise DicomResultsError(path, f"not a TID 1500 measurement report: {err}") from None
    volume = source.volume
    slices = {str(ds.SOPInstanceUID): z for z, ds in enumerate(source.datasets)}
    fallback = producer(sr)
    by_uid: dict[str, dict] = {}
    for g in report.get_planar_roi_measurement_groups():
        entry = by_uid.setdefault(str(g.tracking_uid or hd.UID()), {})
        entry["planar"] = g
    for g in report.get_volumetric_roi_measurement_groups():
        entry = by_uid.setdefault(str(g.tracking_uid or hd.UID()), {})
        entry["volumetric"] = g
    detections, models, decisions = [], {}, {}
    for entry in by_uid.values():
        planar, volumetric = entry.get("planar"), entry.get("volumetric")
        ident = str((volumetric or planar).tracking_identifier or "")
        key = ident[len(KEY_PREFIX) :] if ident.startswith(KEY_PREFIX) else ""
        main = planar or volumetric
        decision = _decision(main)
        if key and decision:
            decisions[key] = decision
        if key.startswith("seg:"):
            continue
        box = None
        if volumetric is not None:
            box = _volume_box(volumetric.roi, source, slices, path)
        if box is None and planar is not None:
            box = _planar_box(planar.roi, source, slices, path)
        if box is None:
            continue
        model, version = _algorithm(main) or fallback
        models.setdefault(model, ModelRun(model, version, "detection", threshold=0.0))
        tail = key.rsplit(":", 1)[-1]
        number = int(tail) if key.startswith("det:") and tail.isdigit() else len(detections) + 1
        if decision and not key:
            decisions[f"det:{model}:{number}"] = decision
        centre = tuple((box[i] + box[i + 3] - 1) / 2.0 for i in range(3))
        detections.append(
            Detection(
                number,
                model,
                label_of(main.finding_type) if main.finding_type is not None else "finding",
                _value(main, codes.DCM.Probability, 1.0),
                box,
                centre,
                tuple(float(v) for v in volume.index_to_lps(centre)),
                _value(main, codes.SCT.LongAxis, _value(main, codes.SCT.Diameter, 0.0)),
            )
        )
    return SrRead(tuple(detections), tuple(models.values()), decisions)


def _algorithm(group) -> tuple[str, str] | None:
    from highdicom.sr.utils import find_content_items

    names = find_content_items(group[0], name=codes.DCM.AlgorithmName, recursive=True)
    if not names:
        return None
    versions = find_content_items(group[0], name=codes.DCM.AlgorithmVersion, recursive=True)
    return str(names[0].TextValue), str(versions[0].TextValue) if versions else ""


def _value(group, name, default: float) -> float:
    found = group.get_measurements(name=name)
    return float(found[0].value) if found else default


def _decision(group) -> str | None:
    for q in group.get_qualitative_evaluations(name=REVIEW):
        for decision, code in DECISIONS.items():
            if q.value == code:
                return decision
    return None


def _planar_box(region, source: SourceSeries, slices: dict, path: str):
    """A 2D region's bounding box on its slice (pixel coordinates: (0, 0) is a pixel's corner)."""
    if region is None:
        return None
    data = np.asarray(region.value, dtype=np.float64)
    if data.shape[-1] == 3:  # SCOORD3D
        _check_frame(region.ReferencedFrameOfReferenceUID, source, path)
        return _lps_box(source.volume, data)
    uid = str(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    if uid not in slices:
        raise DicomResultsError(
            path, f"a region is drawn on instance {uid}, which is not in series {source.series_uid}"
        )
    if str(region.GraphicType) == "CIRCLE":
        r = float(np.hypot(*(data[1] - data[0])))
        data = np.array([data[0] - r, data[0] + r])
    z = slices[uid]
    (c0, r0), (c1, r1) = data.min(axis=0), data.max(axis=0)
    return (
        z,
        int(np.floor(r0)),
        int(np.floor(c0)),
        z + 1,
        max(int(np.ceil(r1)), int(np.floor(r0)) + 1),
        max(int(np.ceil(c1)), int(np.floor(c0)) + 1),
    )


def _volume_box(roi, source: SourceSeries, slices: dict, path: str):
    """A 3D ROI's bounding box: a volume surface in LPS, or 2D regions on several slices."""
    if roi is None:
        return None
    if isinstance(roi, list):
        boxes = [_planar_box(r, source, slices, path) for r in roi]
        boxes = [b for b in boxes if b is not None]
        if not boxes:
            return None
        b = np.array(boxes)
        return tuple(int(v) for v in (*b[:, :3].min(axis=0), *b[:, 3:].max(axis=0)))
    _check_frame(roi.frame_of_reference_uid, source, path)
    return _lps_box(source.volume, np.concatenate([np.asarray(g).reshape(-1, 3) for g in roi.graphic_data]))


def _lps_box(volume: Volume, points_lps: np.ndarray):
    idx = volume.lps_to_index(points_lps)
    lo = np.floor(idx.min(axis=0) + 0.5 + 1e-3).astype(int)
    hi = np.ceil(idx.max(axis=0) + 0.5 - 1e-3).astype(int)
    hi = np.maximum(hi, lo + 1)
    lo, hi = np.maximum(lo, 0), np.minimum(hi, volume.shape_zyx)
    return tuple(int(v) for v in (*lo, *hi))


def _check_frame(uid, source: SourceSeries, path: str) -> None:
    if str(uid) != source.frame_of_reference_uid:
        raise DicomResultsError(
            path,
            f"frame of reference {uid} does not match series {source.series_uid} ({source.frame_of_reference_uid})",
        )
