"""One finding per lesion: a detector's box and a segmenter's component of the same lesion, fused.

Why: a nodule that the detector and the segmenter both find is one thing to a reader, with one
size, one review decision and each model's score beside it. Members fuse only across models (a
model's own boxes, or its own components, are distinct by that model's word) and only where
their boxes overlap (IoU ≥ ``MIN_IOU``). A lesion's extent comes from its mask when a segmenter
gave one, else from the detector's box.

Sizes follow RECIST on the grid's first axis (the axial plane once the viewer has turned the volume
to the patient frame): the long axis is the longest diameter on the slice where the lesion is
largest, the short axis its longest extent perpendicular to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from radlens.imaging.volume import Volume
from radlens.inference.findings import Findings, Segmentation

MIN_IOU = 0.1
LABEL_BELOW = 2_000_000  # voxels: smaller mask crops are split into components (a neighbour's voxels left out)

MemberKind = Literal["detection", "segmentation"]


def detection_key(model: str, number: int) -> str:
    """A detection named by its id: ``det:MODEL:ID`` (the first review files, DICOM SR's review)."""
    return f"det:{model}:{number}"


def component_key(model: str, label: str, number: int) -> str:
    """A segmented component named by its id: ``seg:MODEL:LABEL:ID``."""
    return f"seg:{model}:{label}:{number}"


@dataclass(frozen=True)
class Member:
    """What one model found of a lesion: a detection (``number`` = its id) or a segmented component."""

    model: str
    kind: MemberKind
    label: str
    number: int
    score: float
    box_zyx: tuple[int, int, int, int, int, int]

    @property
    def legacy_key(self) -> str:
        """The key of this finding by its id (review files before lesions were fused, DICOM SR)."""
        if self.kind == "detection":
            return detection_key(self.model, self.number)
        return component_key(self.model, self.label, self.number)


@dataclass(frozen=True, eq=False)
class Lesion:
    label: str
    box_zyx: tuple[int, int, int, int, int, int]
    center_zyx: tuple[float, float, float]
    center_lps: tuple[float, float, float]
    long_mm: float
    short_mm: float
    volume_ml: float | None  # from a mask; None for a box alone
    mean_value: float | None  # mean modality value (HU on CT) inside the mask, or the box's inscribed ellipsoid
    members: tuple[Member, ...]
    mask: np.ndarray | None = field(default=None, repr=False)  # bool, on ``box_zyx``'s crop

    @property
    def scores(self) -> dict[str, float]:
        """Each model's score for this lesion (a detector's box score, a segmenter's mean probability)."""
        return {m.model: m.score for m in self.members}

    @property
    def size_mm(self) -> float:
        return self.long_mm


def box_iou(box, boxes: np.ndarray) -> np.ndarray:
    """IoU of one half-open box with each of ``boxes`` (n, 6)."""
    b = np.asarray(box, dtype=np.float64)
    bs = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    lo = np.maximum(bs[:, :3], b[:3])
    hi = np.minimum(bs[:, 3:], b[3:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    vol = np.prod(b[3:] - b[:3])
    vols = np.prod(bs[:, 3:] - bs[:, :3], axis=1)
    return inter / np.maximum(vol + vols - inter, 1e-9)


def members_of(findings: Findings) -> list[tuple[Member, Segmentation | None]]:
    """Every detection and segmented component, with the segmentation a component's mask is in."""
    out: list[tuple[Member, Segmentation | None]] = []
    for s in findings.segmentations:
        for c in s.components:
            out.append((Member(s.model, "segmentation", s.label, c.id, c.mean_probability, tuple(c.box_zyx)), s))
    for d in sorted(findings.detections, key=lambda d: -d.score):
        out.append((Member(d.model, "detection", d.label, d.id, d.score, tuple(d.box_zyx)), None))
    return out


def group_members(items: list[tuple[Member, Segmentation | None]]) -> list[list[tuple[Member, Segmentation | None]]]:
    """Greedy fusion in the given order (components first, then boxes by score): a member joins the
    group it overlaps most that has nothing yet from its model."""
    groups: list[list[tuple[Member, Segmentation | None]]] = []
    boxes: list[tuple[int, ...]] = []
    for item in items:
        member = item[0]
        best, best_iou = -1, MIN_IOU
        if boxes:
            ious = box_iou(member.box_zyx, np.asarray(boxes))
            for g in np.argsort(-ious):
                if ious[g] < best_iou:
                    break
                if all(m.model != member.model for m, _ in groups[g]):
                    best = int(g)
                    break
        if best < 0:
            groups.append([item])
            boxes.append(member.box_zyx)
        else:
            groups[best].append(item)
    return groups


def fuse(findings: Findings, volume: Volume) -> list[Lesion]:
    """The lesions of ``findings`` (on ``volume``'s grid), in the order components then boxes by score."""
    return [lesion_of(group, volume) for group in group_members(members_of(findings))]


def lesion_of(group: list[tuple[Member, Segmentation | None]], volume: Volume) -> Lesion:
    members = tuple(m for m, _ in group)
    masked = [(m, s) for m, s in group if s is not None and s.mask is not None]
    spacing = volume.spacing_zyx
    if masked:
        member, seg = max(masked, key=lambda ms: ms[0].score)
        box = member.box_zyx
        mask = component_mask(seg.mask, box, alone=len(seg.components) <= 1)
    else:
        member = max(members, key=lambda m: m.score)
        box = member.box_zyx
        mask = None
    crop = tuple(slice(box[i], box[i + 3]) for i in range(3))
    areas = mask.sum(axis=(1, 2)) if mask is not None else None
    if areas is not None and areas.any():  # projections, not np.argwhere: an organ's mask is millions of voxels
        count = float(areas.sum())
        profiles = (areas, mask.sum(axis=(0, 2)), mask.sum(axis=(0, 1)))
        centre = tuple(float(p @ np.arange(len(p)) / count + box[i]) for i, p in enumerate(profiles))
        long_mm, short_mm = recist_axes(mask, spacing, areas)
        volume_ml = count * float(np.prod(spacing)) / 1000.0
        inside = mask
    else:
        centre = tuple((box[i] + box[i + 3] - 1) / 2 for i in range(3))
        extents = sorted(((box[4] - box[1]) * spacing[1], (box[5] - box[2]) * spacing[2]), reverse=True)
        long_mm, short_mm = float(extents[0]), float(extents[1])
        volume_ml = None
        inside = inscribed_ellipsoid(tuple(box[i + 3] - box[i] for i in range(3)))
    mean_value = None
    if not volume.is_rgb:
        values = np.asarray(volume.array[crop])
        if values.shape == inside.shape and inside.any():
            mean_value = float(values[inside].mean())
    label = member.label
    return Lesion(
        label=label,
        box_zyx=tuple(int(v) for v in box),
        center_zyx=centre,
        center_lps=tuple(float(v) for v in volume.index_to_lps(centre)),
        long_mm=round(long_mm, 2),
        short_mm=round(short_mm, 2),
        volume_ml=volume_ml,
        mean_value=mean_value,
        members=members,
        mask=mask,
    )


def component_mask(mask: np.ndarray, box, alone: bool = False) -> np.ndarray:
    """The component's voxels in its box: the largest connected piece there (a neighbour reaching into
    the box is left out); the crop whole when the component is its label's only one (``alone``) or the
    crop is large (an organ)."""
    from radlens.inference.postprocess import label_components

    crop = np.asarray(mask[tuple(slice(box[i], box[i + 3]) for i in range(3))], dtype=bool)
    if alone or crop.size > LABEL_BELOW or not crop.any():
        return crop
    comp, n = label_components(crop)
    if n <= 1:
        return crop
    counts = np.bincount(comp.reshape(-1))
    counts[0] = 0
    return comp == int(np.argmax(counts))


def inscribed_ellipsoid(shape_zyx) -> np.ndarray:
    """The ellipsoid inscribed in a box of ``shape_zyx`` voxels (voxel centres inside it)."""
    axes = [((np.arange(n) + 0.5) / n - 0.5) * 2 for n in shape_zyx]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return (z**2 + y**2 + x**2) <= 1.0


def recist_axes(mask: np.ndarray, spacing_zyx, areas: np.ndarray | None = None) -> tuple[float, float]:
    """(long, short) axis in mm on the slice of the first axis where the mask is largest.

    Long: the largest distance between two pixels' centres plus one pixel; short: the extent
    perpendicular to it, measured the same way. ``areas``: the mask's voxels per slice, if known.
    """
    if areas is None:
        areas = mask.sum(axis=(1, 2))
    sl = mask[int(np.argmax(areas))]
    pts = np.argwhere(sl).astype(np.float64) * np.asarray(spacing_zyx[1:])
    if len(pts) == 0:
        return 0.0, 0.0
    pixel = float(np.sqrt(spacing_zyx[1] * spacing_zyx[2]))
    hull = _hull(pts)
    d = hull[:, None, :] - hull[None, :, :]
    dist = np.hypot(d[..., 0], d[..., 1])
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long = float(dist[i, j])
    if long == 0.0:
        return pixel, pixel
    axis = (hull[j] - hull[i]) / long
    across = pts @ np.array([-axis[1], axis[0]])
    return long + pixel, float(across.max() - across.min()) + pixel


def _hull(pts: np.ndarray) -> np.ndarray:
    """The convex hull's vertices (all points when they are too few or collinear)."""
    if len(pts) < 4:
        return pts
    from scipy.spatial import ConvexHull, QhullError

    try:
        return pts[ConvexHull(pts).vertices]
    except QhullError:
        return pts
