"""A corrected study as a training case: the image and its labels appended to an nnU-Net v2 folder.

The viewer's "Save as training case" writes here; ``radlens train`` reads the folder back
(training.datasets). Layout: ``dataset.json``, ``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``
(a label map) and ``labelsTr/CASE.json`` (each lesion's centre and size, for a detector). Saving the
same series again replaces its case, and ``numTraining`` is always the count of cases in the folder.
A folder that is not such a dataset, or holds another modality or instance maps, is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import write_json
from radlens.imaging.errors import ImagingError
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import write_volume

ENDING = ".nii.gz"


def case_id_for(volume: Volume) -> str:
    """A stable case name for a series (so a second save replaces the first)."""
    stem = volume.series_uid or Path(volume.source or "case").name.split(".")[0]
    return "case_" + re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")[-48:]


def save_training_case(
    folder,
    volume: Volume,
    labels: np.ndarray,
    names: dict[int, str],
    lesions: list[tuple[tuple[float, float, float], float]] = (),
    *,
    synthetic: bool = False,
) -> tuple[str, int]:
    """Write the case into ``folder``; returns (case id, cases in the folder).

    ``labels``: a label map on ``volume``'s grid whose values ``names`` names; ``lesions``: (centre in
    LPS mm, diameter in mm) of every lesion, for detection training.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ImagingError(root, "exists and is not a folder")
    if labels.shape != volume.shape_zyx:
        raise ImagingError(root, f"labels {labels.shape} are not on the image's grid {volume.shape_zyx}")
    meta = _dataset(root, volume, synthetic)
    values = meta["labels"]
    remap = np.zeros(max(names, default=0) + 1, dtype=np.uint8)
    for value, name in names.items():
        if name not in values:
            values[name] = max(values.values()) + 1
        remap[value] = values[name]
    case = case_id_for(volume)
    write_volume(volume, root / "imagesTr" / f"{case}_0000{ENDING}")
    label_volume = volume.with_array(remap[labels], modality="OT")
    write_volume(label_volume, root / "labelsTr" / f"{case}{ENDING}")
    write_json(
        root / "labelsTr" / f"{case}.json",
        {
            "case": case,
            "series_uid": volume.series_uid,
            "source": volume.source,
            "lesions": [
                {"center_lps": [round(float(v), 3) for v in c], "diameter_mm": round(float(d), 3)} for c, d in lesions
            ],
        },
    )
    count = sum(1 for p in (root / "imagesTr").iterdir() if p.name.endswith(f"_0000{ENDING}"))
    meta["numTraining"] = count
    write_json(root / "dataset.json", meta)
    return case, count


def _dataset(root: Path, volume: Volume, synthetic: bool) -> dict:
    """The folder's dataset.json (a new one for a new folder), checked against this case."""
    path = root / "dataset.json"
    modality = volume.modality if volume.modality not in ("", "OT") else "CT"
    if not path.is_file():
        if root.is_dir() and any(root.iterdir()):
            raise ImagingError(root, "is not empty and has no dataset.json; choose an empty folder or a dataset")
        return {
            "name": "RadLens corrected cases",
            "description": "studies corrected in the RadLens viewer and saved as training cases",
            "channel_names": {"0": modality},
            "labels": {"background": 0},
            "numTraining": 0,
            "file_ending": ENDING,
            "label_kind": "semantic",
            "synthetic": synthetic,
        }
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(meta, dict) and isinstance(meta.get("labels"), dict)
    except (OSError, ValueError, AssertionError):
        raise ImagingError(path, "not an nnU-Net dataset.json (no labels)") from None
    if meta.get("file_ending", ENDING) != ENDING:
        raise ImagingError(path, f"its cases are {meta['file_ending']} files; cases are saved as {ENDING}")
    if meta.get("label_kind") == "instances":
        raise ImagingError(path, "its labels are instance maps (one value per nodule); choose another folder")
    if not all(isinstance(v, int) for v in meta["labels"].values()):
        raise ImagingError(path, "its labels are not name → value (nnU-Net v2)")
    theirs = str(next(iter((meta.get("channel_names") or {"0": modality}).values()))).upper()
    if theirs != modality.upper() and not (modality == "MR" and theirs in ("T1", "T2", "FLAIR", "MR", "MRI")):
        raise ImagingError(path, f"holds {theirs} cases; this study is {modality}")
    meta["synthetic"] = bool(meta.get("synthetic", False)) or synthetic
    return meta
