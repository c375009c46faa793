"""A small SYNTHETIC DICOM chest CT and findings on it, for the DICOM results tests."""

from __future__ import annotations

import numpy as np

from radlens.imaging.dicom_write import write_dicom_series
from radlens.imaging.loading import load
from radlens.imaging.phantom import make_chest_ct
from radlens.imaging.volume import Volume
from radlens.inference.findings import Component, Detection, Findings, ModelRun, Segmentation

SHAPE = (24, 64, 64)


def dicom_study(folder, series_uid: str | None = None) -> Volume:
    """The phantom written as a DICOM series and read back (``files`` = one file per slice)."""
    ph = make_chest_ct(1, SHAPE)
    v = ph.volume
    write_dicom_series(
        v,
        folder,
        patient_name="SYNTHETIC^PATIENT",
        patient_id="PID-42",
        study_uid=v.study.study_uid,
        series_uid=series_uid or v.series_uid,
    )
    return load(folder)


def study_findings(volume: Volume) -> Findings:
    """A detector (one hit above threshold, one below, one mass) and a two-label segmenter."""
    nodule = np.zeros(volume.shape_zyx, dtype=bool)
    nodule[5:9, 10:20, 30:40] = True
    other = np.zeros(volume.shape_zyx, dtype=bool)
    other[15:17, 40:50, 5:9] = True

    def det(i, label, score, box, diameter):
        centre = tuple((box[k] + box[k + 3] - 1) / 2 for k in range(3))
        return Detection(i, "nodule-detector", label, score, box, centre, tuple(volume.index_to_lps(centre)), diameter)

    ml = float(np.prod(volume.spacing_zyx)) / 1000

    def comp(mask):
        z, y, x = np.nonzero(mask)
        box = (z.min(), y.min(), x.min(), z.max() + 1, y.max() + 1, x.max() + 1)
        return Component(1, mask.sum() * ml, tuple(volume.index_to_lps((z.mean(), y.mean(), x.mean()))), box, 1.0)

    return Findings(
        Findings.empty_for(volume).input,
        models=(
            ModelRun("nodule-detector", "1.2.0", "detection", threshold=0.5),
            ModelRun("nodule-segmenter", "0.3.1", "segmentation"),
        ),
        detections=(
            det(1, "nodule", 0.91, (3, 20, 20, 6, 30, 28), 12.5),
            det(2, "mass", 0.64, (10, 5, 5, 14, 15, 15), 33.0),
            det(3, "nodule", 0.12, (18, 40, 40, 20, 44, 44), 4.0),
        ),
        segmentations=(
            Segmentation("nodule-segmenter", "nodule", 1, nodule.sum() * ml, (comp(nodule),), mask=nodule),
            Segmentation("nodule-segmenter", "lesion", 2, other.sum() * ml, (comp(other),), mask=other),
        ),
    )


REVIEW = {"det:nodule-detector:1": "accepted", "det:nodule-detector:2": "rejected"}
