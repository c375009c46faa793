"""DICOM SEG: RadLens masks out (BINARY; heat maps FRACTIONAL), any tool's SEG in (binary, fractional, label map).

One SEG per model, one AUTOMATIC segment per label, written by highdicom over the source headers so
that every frame references its source instance. Reading places the SEG's voxels on the series' grid
with highdicom's ``match_geometry`` (axes permuted, flipped, padded, never resampled).
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from radlens.imaging.volume import Volume
from radlens.inference.dicom_source import (
    MANUFACTURER,
    SOFTWARE_VERSION,
    SourceSeries,
    algorithm_sequence,
    finding_code,
    producer,
    save,
)
from radlens.inference.errors import DicomResultsError
from radlens.inference.findings import Classification, ModelRun, Segmentation
from radlens.inference.postprocess import label_segmentations


def write_seg(
    items: list[Segmentation] | list[Classification],
    model: ModelRun,
    source: SourceSeries,
    path: str | os.PathLike,
    *,
    series_number: int,
    anonymize: bool = False,
) -> Path:
    """One SEG for one model: masks as BINARY, heat maps (Classifications) as FRACTIONAL probability."""
    fractional = isinstance(items[0], Classification)
    arrays = [np.asarray(i.heatmap if fractional else i.mask) for i in items]
    pixels = np.stack(arrays, axis=-1).astype(np.float32 if fractional else np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=item.label[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=finding_code(item.label),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_sequence(model),
            tracking_uid=hd.UID(),
            tracking_id=f"{model.name}:{item.label}"[:64],
        )
        for n, item in enumerate(items, start=1)
    ]
    what = "probability" if fractional else "segmentation"
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL
        if fractional
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model.name[:64],
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_description=f"{model.name} {model.version}: AI {what}, machine-generated"[:64],
        content_label="AI_" + ("PROB" if fractional else "SEG"),
        series_description=f"{model.name} AI {what} (machine-generated)"[:64],
        omit_empty_frames=bool(pixels.any()),  # an empty SEG keeps its frames: it still says "nothing found"
    )
    return save(seg, path, anonymized=anonymize)


def read_seg(seg: hd.seg.Segmentation, volume: Volume, path: str) -> tuple[tuple[str, str], list[Segmentation]]:
    """The SEG's segments on ``volume``'s grid: ((producer, version), one Segmentation per segment)."""
    try:
        seg_volume = seg.get_volume(combine_segments=False, rescale_fractional=True, dtype=np.float32)
        placed = seg_volume.match_geometry(grid_geometry(volume, seg.FrameOfReferenceUID))
    except (RuntimeError, ValueError) as err:
        raise DicomResultsError(path, f"the SEG is not on the grid of series {volume.series_uid}: {err}") from None
    values = np.asarray(placed.array)
    if values.ndim == 3:
        values = values[..., None]
    model, version = producer(seg)
    numbers = list(seg.segment_numbers)
    labels = [str(seg.get_segment_description(n).SegmentLabel) for n in numbers]
    prob = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    segs = []  # segments may overlap: each is its own mask
    everything = tuple(slice(0, n) for n in volume.shape_zyx)
    for i, label in enumerate(labels):
        only = np.where(values[..., i] >= 0.5, 1, 0).astype(np.uint8)
        (s,) = label_segmentations(only, prob[..., i], everything, volume, model, [label])
        segs.append(Segmentation(s.model, s.label, i + 1, s.volume_ml, s.components, "", s.mask))
    return (model, version), segs


def grid_geometry(volume: Volume, frame_of_reference_uid: str) -> hd.VolumeGeometry:
    """The volume's (z, y, x) grid as highdicom geometry (its affine maps array indices to LPS)."""
    affine = np.eye(4)
    affine[:3, :3] = (volume.direction * np.asarray(volume.spacing_zyx[::-1]))[:, ::-1]
    affine[:3, 3] = volume.origin_lps
    return hd.VolumeGeometry(affine, volume.shape_zyx, "PATIENT", frame_of_reference_uid=frame_of_reference_uid)
