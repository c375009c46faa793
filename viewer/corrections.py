"""The reader's corrections of the AI's results, without Qt: painted masks, boxes, removed boxes.

They sit over the AI's findings (``apply``): a mask the reader painted is a segmentation of the model
``reader`` whose components become lesions like any model's, a box the reader drew a detection of
``reader``; AI boxes the reader deleted are left out by position (as review decisions are matched),
so they stay deleted when the models run again. A segmenter label the reader took over (its mask
copied into the reader's to be corrected) no longer gives lesions of its own.

Saved beside the study after every edit (``radlens-edits-<series>.npz``, written atomically): the
voxels of each mask as flat indices, and the rest as JSON, so a crash loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import atomic_path
from radlens.imaging.orient import Orientation
from radlens.imaging.volume import Volume
from radlens.inference.findings import Detection, Findings, ModelRun, Segmentation
from radlens.inference.postprocess import mask_components
from radlens.viewer.layers import READER
from radlens.viewer.review import Decision, review_path

SCHEMA = "radlens.edits/1"


@dataclass
class Corrections:
    """What the reader changed. ``masks`` are on the study's grid (the arrays the brush paints into)."""

    shape_zyx: tuple[int, int, int]  # the display grid's
    orientation: Orientation  # how the source grid is displayed: new masks are source arrays seen through it
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # label → bool mask
    boxes: list[tuple[str, tuple[int, int, int, int, int, int]]] = field(default_factory=list)  # (label, box)
    removed: list[Decision] = field(default_factory=list)  # AI boxes deleted, by position ("removed")
    taken_over: list[tuple[str, str]] = field(default_factory=list)  # (segmenter, label) the reader edits

    def empty(self) -> bool:
        return not (self.masks or self.boxes or self.removed or self.taken_over)

    def state(self) -> dict:
        """The small parts (not the voxels), for undo snapshots."""
        return {"boxes": list(self.boxes), "removed": list(self.removed), "taken_over": list(self.taken_over),
                "masks": dict(self.masks)}  # fmt: skip

    def restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, type(v)(v))

    # -- over the AI's findings ---------------------------------------------------------------------
    def apply(self, findings: Findings | None, volume: Volume) -> Findings | None:
        """The findings as the reader corrected them (``findings`` on ``volume``'s grid)."""
        if self.empty():
            return findings
        base = findings or Findings.empty_for(volume)
        dets = tuple(d for d in base.detections if not self._is_removed(d))
        taken = set(self.taken_over)
        segs = tuple(
            dataclasses.replace(s, components=()) if (s.model, s.label) in taken else s for s in base.segmentations
        )
        start = max((d.id for d in dets), default=0)
        mine = []
        for i, (label, box) in enumerate(self.boxes, start=start + 1):
            centre = tuple((box[k] + box[k + 3] - 1) / 2 for k in range(3))
            sy, sx = volume.spacing_zyx[1:]
            size = ((box[4] - box[1]) * sy + (box[5] - box[2]) * sx) / 2
            mine.append(Detection(i, READER, label, 1.0, box, centre, tuple(volume.index_to_lps(centre)), size))
        voxel_ml = float(np.prod(volume.spacing_zyx)) / 1000.0
        painted = tuple(
            Segmentation(READER, label, value, np.count_nonzero(m) * voxel_ml, mask_components(m, volume), mask=m)
            for value, (label, m) in enumerate(self.masks.items(), start=1)
        )
        runs = base.models + ((ModelRun(READER, "", "segmentation"),) if painted or mine else ())
        return Findings(base.input, base.device, runs, dets + tuple(mine), segs + painted, base.classifications)

    def _is_removed(self, d: Detection) -> bool:
        return any(r.matches(d.center_lps, d.diameter_mm) is not None and r.label == d.label for r in self.removed)

    def remove(self, d: Detection) -> None:
        """Leave an AI box out from now on (found again by position after a rerun)."""
        self.removed.append(Decision(d.label, tuple(d.center_lps), float(d.diameter_mm), "removed"))

    def mask_for(self, label: str, findings: Findings | None) -> tuple[np.ndarray, bool]:
        """The reader's mask of ``label``: the existing one, or a new one that starts as every AI mask of
        that label (which the reader then takes over). Returns (mask, whether it is new)."""
        if label in self.masks:
            return self.masks[label], False
        mask = self.orientation.array(np.zeros(self.orientation.source_shape, dtype=bool))
        for s in findings.segmentations if findings is not None else ():
            if s.label == label and s.mask is not None and s.model != READER:
                mask |= np.asarray(s.mask, dtype=bool)
                if (s.model, s.label) not in self.taken_over:
                    self.taken_over.append((s.model, s.label))
        self.masks[label] = mask
        return mask, True

    # -- on disk ------------------------------------------------------------------------------------

def edits_path(volume: Volume) -> Path:
    return review_path(volume, "edits", ".npz")


def save_corrections(volume: Volume, corrections: Corrections, grid_masks: dict[str, np.ndarray]) -> Path:
    """Write the corrections beside the study atomically; ``grid_masks`` are the masks on the source
    volume's own grid (what is stored and trained on)."""
    meta = {
        "schema": SCHEMA,
        "series_uid": volume.series_uid,
        "shape_zyx": list(volume.shape_zyx),
        "labels": list(grid_masks),
        "boxes": [[label, list(box)] for label, box in corrections.boxes],
        "removed": [d.to_json() for d in corrections.removed],
        "taken_over": [list(t) for t in corrections.taken_over],
    }
    arrays = {f"mask{i}": np.flatnonzero(np.asarray(m, dtype=bool)) for i, m in enumerate(grid_masks.values())}
    path = edits_path(volume)
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def load_corrections(volume: Volume) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(the small parts, masks on the source grid) saved beside the study, or None when there are none
    or they are for another grid (an unreadable file is ignored, never fatal)."""
    path = edits_path(volume)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("schema") != SCHEMA or tuple(meta["shape_zyx"]) != volume.shape_zyx:
                return None
            masks = {}
            for i, label in enumerate(meta["labels"]):
                m = np.zeros(volume.shape_zyx, dtype=bool)
                m.reshape(-1)[z[f"mask{i}"]] = True
                masks[str(label)] = m
        small = {
            "boxes": [(str(label), tuple(int(v) for v in box)) for label, box in meta["boxes"]],
            "removed": [
                Decision(str(d["label"]), tuple(float(v) for v in d["center_lps"]), float(d["size_mm"]), "removed")
                for d in meta["removed"]
            ],
            "taken_over": [(str(a), str(b)) for a, b in meta["taken_over"]],
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return small, masks
