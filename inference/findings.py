"""findings.json (docs/architecture.md, "Findings"): what models found in one series, on that series' grid.

Written by ``radlens infer`` and the viewer's AI worker, read by the viewer and ``radlens export``.
Masks and heat maps live beside findings.json as NIfTI files on exactly the input grid. In memory
a Segmentation/Classification may also carry its array, so the viewer needs no file round trip.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import write_json
from radlens.imaging.errors import ImagingError
from radlens.imaging.orient import Orientation
from radlens.imaging.volume import Volume

SCHEMA = "radlens.findings/1"
FILENAME = "findings.json"


class FindingsError(ImagingError):
    """A findings folder that is missing, malformed, or on another grid than the study."""


@dataclass(frozen=True)
class ModelRun:
    name: str
    version: str
    task: str  # detection | segmentation | classification
    sha256: str = ""
    seconds: float = 0.0
    threshold: float | None = None  # the bundle's suggested score/probability threshold
    warnings: tuple[str, ...] = ()  # what a reader must know about this run (e.g. lungs not found)

    def to_json(self) -> dict:
        d = {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "sha256": self.sha256,
            "seconds": round(float(self.seconds), 3),
        }
        if self.threshold is not None:
            d["threshold"] = float(self.threshold)
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class Detection:
    id: int
    model: str
    label: str
    score: float
    box_zyx: tuple[int, int, int, int, int, int]  # half-open voxel indices
    center_zyx: tuple[float, float, float]
    center_lps: tuple[float, float, float]
    diameter_mm: float

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "model": self.model,
            "label": self.label,
            "score": round(float(self.score), 4),
            "box_zyx": [int(v) for v in self.box_zyx],
            "center_zyx": [round(float(v), 2) for v in self.center_zyx],
            "center_lps": [round(float(v), 2) for v in self.center_lps],
            "diameter_mm": round(float(self.diameter_mm), 2),
        }

    @classmethod
    def from_json(cls, d: dict) -> Detection:
        return cls(
            int(d["id"]),
            str(d["model"]),
            str(d["label"]),
            float(d["score"]),
            tuple(int(v) for v in d["box_zyx"]),
            tuple(float(v) for v in d["center_zyx"]),
            tuple(float(v) for v in d["center_lps"]),
            float(d.get("diameter_mm", 0.0)),
        )


@dataclass(frozen=True)
class Component:
    id: int
    volume_ml: float
    center_lps: tuple[float, float, float]
    box_zyx: tuple[int, int, int, int, int, int]
    mean_probability: float

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "volume_ml": round(float(self.volume_ml), 4),
            "center_lps": [round(float(v), 2) for v in self.center_lps],
            "box_zyx": [int(v) for v in self.box_zyx],
            "mean_probability": round(float(self.mean_probability), 4),
        }

    @classmethod
    def from_json(cls, d: dict) -> Component:
        return cls(
            int(d["id"]),
            float(d["volume_ml"]),
            tuple(float(v) for v in d["center_lps"]),
            tuple(int(v) for v in d["box_zyx"]),
            float(d.get("mean_probability", 1.0)),
        )


@dataclass(frozen=True, eq=False)
class Segmentation:
    model: str
    label: str
    label_value: int
    volume_ml: float
    components: tuple[Component, ...] = ()
    mask_file: str = ""  # file name beside findings.json (a label map shared by the model's labels)
    mask: np.ndarray | None = None  # bool (z, y, x) on the input grid, when in memory
    colour: tuple[int, int, int] | None = None  # the model's own display colour for the label, when it has one
    # The model's label map (z, y, x) on the input grid, shared by its segmentations, when in memory:
    # ``label_map == label_value`` is ``mask``. One array for a model's hundred labels (viewer, writer).
    label_map: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {
            "model": self.model,
            "label": self.label,
            "mask": self.mask_file,
            "label_value": int(self.label_value),
            "volume_ml": round(float(self.volume_ml), 4),
            "components": [c.to_json() for c in self.components],
        }
        if self.colour is not None:
            out["colour"] = [int(c) for c in self.colour]
        return out


@dataclass(frozen=True, eq=False)
class Classification:
    model: str
    label: str
    probability: float
    per_slice: tuple[float, ...] = ()
    heatmap_file: str = ""
    heatmap: np.ndarray | None = None  # float32 (z, y, x) in [0, 1] on the input grid

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "label": self.label,
            "probability": round(float(self.probability), 4),
            "per_slice": [round(float(p), 4) for p in self.per_slice],
            "heatmap": self.heatmap_file,
        }


@dataclass(frozen=True, eq=False)
class Findings:
    input: dict  # path, series_uid, modality and the grid (Volume.geometry())
    device: str = "cpu"
    models: tuple[ModelRun, ...] = ()
    detections: tuple[Detection, ...] = ()
    segmentations: tuple[Segmentation, ...] = ()
    classifications: tuple[Classification, ...] = ()

    @classmethod
    def empty_for(cls, volume: Volume, device: str = "cpu") -> Findings:
        return cls(input=input_block(volume), device=device)

    def merged(self, other: Findings) -> Findings:
        """These findings plus another run's on the same series. A model that ran again replaces its
        earlier results instead of adding a second copy; detection ids are renumbered after the kept ones."""
        again = {m.name for m in other.models}
        kept = self.without(again)
        start = max((d.id for d in kept.detections), default=0)
        dets = tuple(dataclasses.replace(d, id=start + i + 1) for i, d in enumerate(other.detections))
        return Findings(
            self.input,
            other.device,
            kept.models + other.models,
            kept.detections + dets,
            kept.segmentations + other.segmentations,
            kept.classifications + other.classifications,
        )

    def without(self, models: set[str]) -> Findings:
        """These findings less every result of ``models``."""
        return Findings(
            self.input,
            self.device,
            tuple(m for m in self.models if m.name not in models),
            tuple(d for d in self.detections if d.model not in models),
            tuple(s for s in self.segmentations if s.model not in models),
            tuple(c for c in self.classifications if c.model not in models),
        )

    def reoriented(self, orientation: Orientation, display: Volume) -> Findings:
        """These findings on the display grid of ``orientation`` (imaging.orient; its ``inverse`` maps them
        back): boxes and centres mapped exactly, masks, label maps and heat maps as views of the same
        arrays; positions in LPS do not change."""
        if orientation.is_identity:
            return self

        def det(d: Detection) -> Detection:
            centre = tuple(float(v) for v in orientation.index(d.center_zyx))
            return dataclasses.replace(d, box_zyx=orientation.box(d.box_zyx), center_zyx=centre)

        def seg(s: Segmentation) -> Segmentation:
            comps = tuple(dataclasses.replace(c, box_zyx=orientation.box(c.box_zyx)) for c in s.components)
            mask = None if s.mask is None else orientation.array(s.mask)
            label_map = None if s.label_map is None else orientation.array(s.label_map)
            return dataclasses.replace(s, components=comps, mask=mask, label_map=label_map)

        def cls(c: Classification) -> Classification:
            heat = None if c.heatmap is None else orientation.array(c.heatmap)
            per_slice = c.per_slice if orientation.axes[0] == 0 else ()
            if heat is not None and orientation.axes[0] != 0:
                per_slice = tuple(float(v) for v in heat.max(axis=(1, 2)))
            return dataclasses.replace(c, heatmap=heat, per_slice=per_slice)

        return Findings(
            input_block(display),
            self.device,
            self.models,
            tuple(det(d) for d in self.detections),
            tuple(seg(s) for s in self.segmentations),
            tuple(cls(c) for c in self.classifications),
        )

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "input": self.input,
            "device": self.device,
            "models": [m.to_json() for m in self.models],
            "detections": [d.to_json() for d in self.detections],
            "segmentations": [s.to_json() for s in self.segmentations],
            "classifications": [c.to_json() for c in self.classifications],
        }


def input_block(volume: Volume) -> dict:
    return {"path": volume.source, "series_uid": volume.series_uid, "modality": volume.modality, **volume.geometry()}


def _grid_volume(findings: Findings) -> Volume:
    """The input grid as a Volume (its array a zero-stride view: no memory) for grid checks and writers."""
    g = findings.input
    shape = tuple(int(n) for n in g["shape_zyx"])
    array = np.broadcast_to(np.zeros((), dtype=np.uint8), shape)
    return Volume(array, tuple(g["spacing_zyx"]), tuple(g["origin_lps"]), np.asarray(g["direction"]))


def write_findings(findings: Findings, folder: str | os.PathLike) -> Path:
    """Write findings.json and its masks/heat maps into ``folder``; every file atomically."""
    from radlens.imaging.volume_io import write_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(findings.input["shape_zyx"])
    grid = _grid_volume(findings)
    segs = []
    by_model: dict[str, list[Segmentation]] = {}
    for s in findings.segmentations:
        by_model.setdefault(s.model, []).append(s)
    for model, items in by_model.items():
        name = f"{model}.nii.gz"
        with_mask = [s for s in items if s.mask is not None]
        if with_mask:
            shared = with_mask[0].label_map
            if shared is not None and all(s.label_map is shared for s in with_mask):
                labels = shared  # the model's own label map: no pass per label
            else:
                top = max(s.label_value for s in with_mask)
                labels = np.zeros(shape, dtype=np.uint8 if top < 256 else np.uint16)
                for s in with_mask:
                    labels[np.asarray(s.mask, dtype=bool)] = s.label_value
            write_volume(grid, folder / name, labels)
        segs += [replace(s, mask_file=name) if s.mask is not None else s for s in items]
    classes = []
    for c in findings.classifications:
        name = c.heatmap_file
        if c.heatmap is not None:
            name = f"{c.model}-{c.label}-heatmap.nii.gz"
            write_volume(grid, folder / name, c.heatmap.astype(np.float32))
        classes.append(Classification(c.model, c.label, c.probability, c.per_slice, name, c.heatmap))
    doc = Findings(
        findings.input, findings.device, findings.models, findings.detections, tuple(segs), tuple(classes)
    ).to_json()
    return write_json(folder / FILENAME, doc)


def read_findings(folder: str | os.PathLike, *, load_arrays: bool = True) -> Findings:
    """Read findings.json (and, by default, its masks and heat maps) from a folder or the file itself."""
    from radlens.imaging.volume_io import read_volume

    path = Path(folder)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise FindingsError(path, "no findings.json here (run `radlens infer` first)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FindingsError(path, f"not valid JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise FindingsError(
            path, f"not a {SCHEMA} file (schema: {doc.get('schema') if isinstance(doc, dict) else None!r})"
        )
    try:
        findings = Findings(
            input=dict(doc["input"]),
            device=str(doc.get("device", "cpu")),
            models=tuple(
                ModelRun(
                    m["name"],
                    str(m["version"]),
                    m["task"],
                    m.get("sha256", ""),
                    float(m.get("seconds", 0)),
                    m.get("threshold"),
                    tuple(str(w) for w in m.get("warnings", [])),
                )
                for m in doc.get("models", [])
            ),
            detections=tuple(Detection.from_json(d) for d in doc.get("detections", [])),
        )
        segs, classes = [], []
        shape = tuple(findings.input["shape_zyx"])
        from scipy import ndimage

        cache: dict[str, tuple[np.ndarray, list]] = {}
        for s in doc.get("segmentations", []):
            mask = label_map = None
            if load_arrays and s.get("mask"):
                if s["mask"] not in cache:
                    label_map = _read_on_grid(read_volume(path.parent / s["mask"]), findings, path)
                    label_map = label_map.astype(np.uint16 if label_map.max(initial=0) > 255 else np.uint8)
                    cache[s["mask"]] = label_map, ndimage.find_objects(label_map)
                label_map, boxes = cache[s["mask"]]
                mask = _label_mask(label_map, boxes, int(s["label_value"]))
            segs.append(
                Segmentation(
                    s["model"],
                    s["label"],
                    int(s["label_value"]),
                    float(s["volume_ml"]),
                    tuple(Component.from_json(c) for c in s.get("components", [])),
                    s.get("mask", ""),
                    mask,
                    _colour(s.get("colour")),
                    label_map,
                )
            )
        for c in doc.get("classifications", []):
            heat = None
            if load_arrays and c.get("heatmap"):
                heat = _read_on_grid(read_volume(path.parent / c["heatmap"]), findings, path).astype(np.float32)
            classes.append(
                Classification(
                    c["model"],
                    c["label"],
                    float(c["probability"]),
                    tuple(float(p) for p in c.get("per_slice", [])),
                    c.get("heatmap", ""),
                    heat,
                )
            )
        assert len(shape) == 3
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise FindingsError(path, f"malformed findings: {type(err).__name__}: {err}") from None
    return Findings(findings.input, findings.device, findings.models, findings.detections, tuple(segs), tuple(classes))


def empty_mask(shape_zyx) -> np.ndarray:
    """A full-grid boolean mask of False whose memory is taken only where it is written.

    Why: a model with a hundred labels (TotalSegmentator's organs) has a hundred full-grid masks, most
    of each False; on anonymous memory pages that are never written stay unmapped, so the masks
    together take about their labels' bounding boxes instead of a hundred volumes (np.zeros may
    reuse, and so touch, heap memory).
    """
    import mmap

    n = int(np.prod(shape_zyx))
    return np.frombuffer(mmap.mmap(-1, max(1, n)), dtype=bool, count=n).reshape(tuple(shape_zyx))


def _label_mask(label_map: np.ndarray, boxes: list, value: int) -> np.ndarray:
    """``label_map == value``, written only inside the label's box (``find_objects``): :func:`empty_mask`."""
    mask = empty_mask(label_map.shape)
    box = boxes[value - 1] if 0 < value <= len(boxes) else None
    if box is not None:
        mask[box] = label_map[box] == value
    return mask


def _read_on_grid(volume: Volume, findings: Findings, path: Path) -> np.ndarray:
    # NIfTI keeps the grid in float32: allow for its rounding of origins of a few hundred mm.
    if not volume.same_grid(_grid_volume(findings), tol=1e-2):
        raise FindingsError(path, f"{volume.source} is not on the input grid {findings.input['shape_zyx']}")
    return volume.array


def _colour(value) -> tuple[int, int, int] | None:
    ok = isinstance(value, list) and len(value) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in value)
    return tuple(value) if ok else None


def check_matches(findings: Findings, volume: Volume, where: str = "findings") -> None:
    """Refuse findings computed on another series or grid than ``volume``."""
    g = findings.input
    if not volume.same_grid(_grid_volume(findings)):
        raise FindingsError(
            where,
            f"computed on a {g['shape_zyx']} grid at {g['origin_lps']} mm, but the study is "
            f"{list(volume.shape_zyx)} at {list(volume.origin_lps)} mm",
        )
    if g.get("series_uid") and volume.series_uid and g["series_uid"] != volume.series_uid:
        raise FindingsError(where, f"computed on series {g['series_uid']}, not {volume.series_uid}")
