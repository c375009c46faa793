"""RTSTRUCT contours (3D Slicer, TPS, other tools) as masks on the series' grid.

Each closed planar contour lies on one slice: its LPS points go to voxel indices and the voxels
whose centres fall inside it are set; contours on one slice are combined by XOR, so a contour inside
another is a hole, as RTSTRUCT readers agree. Points and open contours carry no area and are skipped.
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path as Polygon

from radlens.inference.dicom_source import SourceSeries, producer
from radlens.inference.errors import DicomResultsError
from radlens.inference.findings import Segmentation
from radlens.inference.postprocess import label_segmentations

SLICE_TOLERANCE = 0.25  # a contour more than this many slices off a slice centre is not on the grid


def read_rtstruct(ds, source: SourceSeries, path: str) -> tuple[tuple[str, str], list[Segmentation]]:
    """One Segmentation per ROI with at least one closed contour: ((software, version), segmentations)."""
    volume = source.volume
    names = {
        int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in ds.get("StructureSetROISequence", [])
    }
    model, version = producer(ds)
    masks: list[tuple[str, np.ndarray]] = []
    for roi in ds.get("ROIContourSequence", []):
        mask = np.zeros(volume.shape_zyx, dtype=bool)
        closed = False
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            closed = True
            points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            _fill(mask, volume.lps_to_index(points), path)
        if closed:
            number = int(roi.ReferencedROINumber)
            masks.append((names.get(number, f"ROI {number}"), mask))
    segs = []
    everything = tuple(slice(0, n) for n in volume.shape_zyx)
    for value, (name, mask) in enumerate(masks, start=1):
        prob = np.where(mask, 255, 0).astype(np.uint8)
        (s,) = label_segmentations(mask.astype(np.uint8), prob, everything, volume, model, [name])
        segs.append(Segmentation(s.model, s.label, value, s.volume_ml, s.components, "", s.mask))
    return (model, version), segs


def _fill(mask: np.ndarray, index_zyx: np.ndarray, path: str) -> None:
    """XOR the voxels of one slice whose centres lie inside the polygon ``index_zyx`` (fractional z, y, x)."""
    z = float(np.median(index_zyx[:, 0]))
    if np.ptp(index_zyx[:, 0]) > 2 * SLICE_TOLERANCE or abs(z - round(z)) > SLICE_TOLERANCE:
        raise DicomResultsError(path, f"a contour lies between slices (at slice {z:.2f}): not on the series' grid")
    z = round(z)
    if not 0 <= z < mask.shape[0]:
        return
    yx = index_zyx[:, 1:]
    lo = np.maximum(np.floor(yx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(yx.max(axis=0)).astype(int) + 1, mask.shape[1:])
    if np.any(hi <= lo):
        return
    yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    inside = Polygon(yx).contains_points(np.column_stack([yy.ravel(), xx.ravel()])).reshape(yy.shape)
    mask[z, lo[0] : hi[0], lo[1] : hi[1]] ^= inside
