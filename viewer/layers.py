"""Layers and findings as typed values (no Qt): the keys that name them and one record per layer.

Keys are built here only, and code reads their fields instead of parsing text. A key equals its text
form ("det:nodule-detector:nodule", "lesion:nodule:12.0,-40.5,101.0:8.4mm"), so it can stand in a
dict or a file name. A finding's review decision is matched by position (viewer.review), not by key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np

from radlens.imaging.volume import Volume
from radlens.inference.findings import Findings
from radlens.inference.lesions import Lesion, fuse

Kind = Literal["detection", "segmentation", "classification"]
SHOWN_AS: dict[Kind, str] = {"detection": "boxes", "segmentation": "mask", "classification": "heatmap"}
_PREFIX: dict[Kind, str] = {"detection": "det", "segmentation": "seg", "classification": "heat"}
# Up to this many labels a model's masks are drawn one image each; beyond, from the model's label map
# as one image (a hundred organs cost what one costs: bench/labels.py).
MASK_IMAGES_UP_TO = 8
READER = "reader"  # the model name of what the reader drew or corrected (viewer.corrections)
READER_COLOUR = (60, 255, 120)
PALETTE = ((255, 200, 0), (0, 220, 255), (255, 80, 200), (120, 255, 80), (255, 120, 40), (160, 140, 255))


def palette_colour(i: int) -> tuple[int, int, int]:
    """The i-th layer's colour: the six above, then hues a golden angle apart, so a model with a hundred
    labels (TotalSegmentator's organs) still shows neighbours in different colours."""
    if i < len(PALETTE):
        return PALETTE[i]
    import colorsys

    hue = (i * 0.618033988749895) % 1.0
    light = (0.55, 0.7, 0.45)[i % 3]
    return tuple(round(255 * c) for c in colorsys.hls_to_rgb(hue, light, 0.85))


class _TextKey:
    """Equal to, and hashed like, its text form (see the module docstring)."""

    def __eq__(self, other) -> bool:
        if isinstance(other, (_TextKey, str)):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


@dataclass(frozen=True, eq=False)
class LayerKey(_TextKey):
    """One overlay: a detector's boxes of one label, a segmenter's mask of one label, or a heat map."""

    model: str
    kind: Kind
    label: str

    def __str__(self) -> str:
        return f"{_PREFIX[self.kind]}:{self.model}:{self.label}"


@dataclass(frozen=True, eq=False)
class FindingKey(_TextKey):
    """One finding: a lesion, named by its label, where it is (LPS mm) and its size, so that the name
    survives reruns and restarts; or a study's classification, named by its model and label."""

    label: str
    center_lps: tuple[float, float, float] | None = None  # a lesion's (rounded to 0.1 mm)
    size_mm: float = 0.0
    model: str = ""  # a classification's

    @classmethod
    def of_lesion(cls, lesion: Lesion) -> FindingKey:
        return cls(lesion.label, tuple(round(v, 1) for v in lesion.center_lps), round(lesion.size_mm, 1))

    @property
    def kind(self) -> str:
        return "lesion" if self.center_lps is not None else "classification"

    def __str__(self) -> str:
        if self.center_lps is None:
            return f"cls:{self.model}:{self.label}"
        x, y, z = self.center_lps
        return f"lesion:{self.label}:{x:.1f},{y:.1f},{z:.1f}:{self.size_mm:.1f}mm"


@dataclass(frozen=True, eq=False)
class BoxSet:
    """A detector label's boxes as arrays, so a slice's boxes are found without a Python loop."""

    ids: np.ndarray  # (n,) detection ids
    boxes: np.ndarray  # (n, 6) half-open z0 y0 x0 z1 y1 x1
    scores: np.ndarray  # (n,)


@dataclass(eq=False)
class Layer:
    """Everything about one overlay: its data on the study's grid, and how the user shows it."""

    key: LayerKey
    version: str
    colour: tuple[int, int, int]
    data: BoxSet | Volume  # boxes, or a mask (bool) / label map / heat map (float) wrapped as a Volume
    visible: bool = True
    opacity: float = 0.5
    threshold: float = 0.0
    value: int | None = None  # a mask kept in its model's label map (``data``, shared): the label's value there


@dataclass(frozen=True, eq=False)
class FindingRow:
    """A row of the findings panel: one lesion (every model's view of it fused), or one classification."""

    key: FindingKey
    scores: tuple[tuple[str, float], ...]  # (model, score), one per model that found it
    size: str
    center_zyx: tuple[int, int, int]
    box_zyx: tuple[int, int, int, int, int, int] | None
    lesion: Lesion | None = None
    boxes: tuple[tuple[LayerKey, int, float], ...] = ()  # its detections: (layer, id, score)
    masked: bool = False  # a segmenter outlined it

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.scores)

    @property
    def model(self) -> str:
        return ", ".join(self.models)

    @property
    def score(self) -> float | None:
        """The models' highest score (what the reader drew has none)."""
        return max((s for m, s in self.scores if m != READER), default=None)

    @property
    def legacy_keys(self) -> tuple[str, ...]:
        """Its findings' keys in the review files before lesions were fused (``radlens.review/1``)."""
        if self.lesion is None:
            return (str(self.key),)
        return tuple(m.legacy_key for m in self.lesion.members)


def model_text(model: str, version: str) -> str:
    return "the reader's edits" if model == READER else f"{model} v{version}"


def build_layers(findings: Findings, volume: Volume) -> list[Layer]:
    """One layer per detector label, per mask and per heat map, in that order, each its own colour
    (a model's own colour for a label when its findings carry one)."""
    versions = {m.name: m.version for m in findings.models}
    thresholds = {m.name: m.threshold for m in findings.models}
    data: dict[LayerKey, BoxSet | Volume] = {}
    own_colours: dict[LayerKey, tuple[int, int, int]] = {}
    label_values: dict[LayerKey, int] = {}
    label_maps: dict[int, Volume] = {}  # one Volume per model's label map, shared by its labels' layers
    groups: dict[LayerKey, list] = {}
    for d in findings.detections:
        groups.setdefault(LayerKey(d.model, "detection", d.label), []).append(d)
    for key, dets in groups.items():
        data[key] = BoxSet(
            np.array([d.id for d in dets]),
            np.array([d.box_zyx for d in dets], dtype=np.int64).reshape(-1, 6),
            np.array([d.score for d in dets], dtype=np.float64),
        )
    per_model = Counter(s.model for s in findings.segmentations if s.label_map is not None)
    for s in findings.segmentations:
        if s.mask is not None:
            key = LayerKey(s.model, "segmentation", s.label)
            if s.label_map is not None and per_model[s.model] > MASK_IMAGES_UP_TO:
                if id(s.label_map) not in label_maps:
                    label_maps[id(s.label_map)] = volume.with_array(s.label_map)
                data[key], label_values[key] = label_maps[id(s.label_map)], s.label_value
            else:
                data[key] = volume.with_array(np.asarray(s.mask, dtype=bool))
            if s.colour is not None:
                own_colours[key] = tuple(s.colour)
    for c in findings.classifications:
        if c.heatmap is not None:
            heat = volume.with_array(np.asarray(c.heatmap, dtype=np.float32))
            data[LayerKey(c.model, "classification", c.label)] = heat
    layers = []
    for i, (key, values) in enumerate(data.items()):
        threshold = thresholds.get(key.model)
        layers.append(
            Layer(
                key,
                versions.get(key.model, "?"),
                READER_COLOUR if key.model == READER else own_colours.get(key, palette_colour(i)),
                values,
                opacity=0.8 if key.kind == "detection" else 0.6 if key.model == READER else 0.4,
                threshold=threshold if threshold is not None else 0.5,
                value=label_values.get(key),
            )
        )
    return layers


def finding_rows(findings: Findings, volume: Volume) -> list[FindingRow]:
    """One row per lesion (inference.lesions fuses the models' boxes and components), then one per
    classification."""
    rows = []
    for lesion in fuse(findings, volume):
        boxes = tuple(
            (LayerKey(m.model, "detection", m.label), m.number, m.score)
            for m in lesion.members
            if m.kind == "detection"
        )
        size = f"{lesion.long_mm:.1f} × {lesion.short_mm:.1f} mm"
        rows.append(
            FindingRow(
                FindingKey.of_lesion(lesion),
                tuple((m.model, m.score) for m in lesion.members),
                size,
                tuple(round(v) for v in lesion.center_zyx),
                lesion.box_zyx,
                lesion,
                boxes,
                any(m.kind == "segmentation" for m in lesion.members),
            )
        )
    nz, ny, nx = volume.shape_zyx
    for cl in findings.classifications:
        z = int(np.argmax(cl.per_slice)) if cl.per_slice else nz // 2
        key = FindingKey(cl.label, model=cl.model)
        rows.append(FindingRow(key, ((cl.model, cl.probability),), "study", (z, ny // 2, nx // 2), None))
    return rows
