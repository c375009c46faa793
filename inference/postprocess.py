"""Network outputs on the model grid → findings on the input grid (docs/architecture.md, "Findings").

Detection: centre-heatmap peaks (3D max-pool NMS) plus the size head give boxes; overlapping boxes
are suppressed with MONAI's box utilities; every candidate above a low floor is kept (the threshold
is the reader's choice). Segmentation: argmax (or a threshold for a single label) → label map,
pasted back on the input grid only where it is non-empty, then connected components, vectorised,
without the specks below the bundle's minimum component size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from radlens.imaging.volume import Volume
from radlens.inference.findings import Component, Detection, Segmentation, empty_mask
from radlens.inference.lungs import Lungs
from radlens.inference.preprocess import Prepared

SCORE_FLOOR = 0.05
MAX_CANDIDATES = 200
NMS_IOU = 0.2
# A lung nodule over 30 mm is a mass (Fleischner Society glossary): reported under its own label.
MASS_ABOVE_MM = 30.0
MAX_COMPONENTS = 1000


def decode_detections(
    output,
    prep: Prepared,
    model: str,
    label: str,
    *,
    floor: float = SCORE_FLOOR,
    max_candidates: int = MAX_CANDIDATES,
    nms_iou: float = NMS_IOU,
) -> tuple[Detection, ...]:
    """Boxes from a (4, Z, Y, X) output on the model grid: heatmap logits, then extent z, y, x in voxels.

    A "nodule" box over :data:`MASS_ABOVE_MM` is labelled "mass"."""
    import torch

    out = torch.as_tensor(output).float()
    idx = _heatmap_peaks(out[0], math.log(floor / (1 - floor)))
    if idx.numel() == 0:
        return ()
    scores = torch.sigmoid(out[0][idx[:, 0], idx[:, 1], idx[:, 2]])
    order = torch.argsort(scores, descending=True)[:max_candidates]
    idx, scores = idx[order], scores[order]
    sizes = out[1:4][:, idx[:, 0], idx[:, 1], idx[:, 2]].T.clamp(min=1.0)  # (N, 3) model voxels

    return detections_on_input_grid(
        idx.double().numpy(), sizes.double().numpy() / 2, scores.double().numpy(), prep, model, label, nms_iou
    )


def detections_on_input_grid(
    centre_model: np.ndarray, half_model: np.ndarray, scores: np.ndarray, prep: Prepared, model: str, label: str,
    nms_iou: float = NMS_IOU,
) -> tuple[Detection, ...]:
    """Boxes given on the model grid (centres and half-extents in its voxels) as Detections on the
    input grid, overlapping ones suppressed; a "nodule" over :data:`MASS_ABOVE_MM` is a "mass"."""
    from monai.data.box_utils import non_max_suppression

    if not len(scores):
        return ()
    centre_in = prep.model_index_to_input_index(centre_model)
    lo_in = prep.model_index_to_input_index(centre_model - half_model)
    hi_in = prep.model_index_to_input_index(centre_model + half_model)
    lo, hi = np.minimum(lo_in, hi_in), np.maximum(lo_in, hi_in)
    spacing = np.asarray(prep.source.spacing_zyx)
    # NMS in millimetres so anisotropic voxels do not skew the overlap. MONAI's corner-corner mode
    # is (x, y, z) ordered; IoU does not care that ours are (z, y, x).
    boxes_mm = np.concatenate([lo * spacing, hi * spacing], axis=1)
    keep = np.asarray(non_max_suppression(boxes_mm, np.asarray(scores, dtype=np.float64), nms_thresh=nms_iou))
    keep = keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]
    keep = keep[_outside_stronger(centre_in[keep] * spacing, np.mean((hi[keep] - lo[keep]) * spacing, axis=1) / 2)]

    shape = np.asarray(prep.source.shape_zyx)
    dets = []
    for n, k in enumerate(keep.tolist(), start=1):
        # Half-open integer box: the voxels whose centres lie inside the box (at least one voxel).
        b0 = np.clip(np.floor(lo[k] + 0.5), 0, shape - 1).astype(int)
        b1 = np.clip(np.ceil(hi[k] + 0.5), b0 + 1, shape).astype(int)
        centre = centre_in[k]
        diameter = float(np.mean((hi[k] - lo[k]) * spacing))
        dets.append(
            Detection(
                id=n,
                model=model,
                label="mass" if label == "nodule" and diameter > MASS_ABOVE_MM else label,
                score=float(scores[k]),
                box_zyx=(*(int(v) for v in b0), *(int(v) for v in b1)),
                center_zyx=tuple(float(v) for v in centre),
                center_lps=tuple(float(v) for v in prep.source.index_to_lps(centre)),
                diameter_mm=diameter,
            )
        )
    return tuple(dets)


def _outside_stronger(centres_mm: np.ndarray, radii_mm: np.ndarray) -> np.ndarray:
    """Which of these detections (strongest first) keep their place: a weaker one closer to a stronger
    kept one than the larger of their radii plus half the smaller is the same object, seen at another
    scale or from its rim.

    Why: IoU alone lets a small box inside a large one stand (their overlap is tiny), so a 25 mm
    nodule drew about twenty boxes, and the second lesion of a scan fell out of the top three."""
    kept: list[int] = []
    for i in range(len(centres_mm)):
        if kept:
            k = np.asarray(kept)
            reach = np.maximum(radii_mm[k], radii_mm[i]) + 0.5 * np.minimum(radii_mm[k], radii_mm[i])
            if np.any(np.linalg.norm(centres_mm[k] - centres_mm[i], axis=1) < reach):
                continue
        kept.append(i)
    return np.asarray(kept, dtype=int)


def _heatmap_peaks(logits, floor_logit: float, dense_above: int = 200_000):
    """(N, 3) indices of voxels above the floor that are the maximum of their 3×3×3 neighbourhood.

    The 3D max-pool NMS of CenterNet, evaluated only at the voxels above the floor (a trained
    heatmap has few): 27 gathers per candidate instead of a pass over the whole grid. Too many
    candidates (an untrained model) → the dense max-pool, which then costs less. Logits, not
    probabilities: the sigmoid is monotonic, so the peaks are the same.
    """
    import torch
    import torch.nn.functional as F

    above = torch.nonzero(logits > floor_logit)
    if len(above) > dense_above:
        pooled = F.max_pool3d(logits[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
        return torch.nonzero((logits == pooled) & (logits > floor_logit))
    padded = F.pad(logits[None, None], (1, 1, 1, 1, 1, 1), value=float("-inf"))[0, 0]
    z, y, x = (above[:, a : a + 1] + 1 for a in range(3))
    offsets = torch.tensor([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    neighbours = padded[z + offsets[:, 0], y + offsets[:, 1], x + offsets[:, 2]]  # (N, 27)
    centre = logits[above[:, 0], above[:, 1], above[:, 2]]
    return above[centre >= neighbours.max(dim=1).values]


def segment(
    output,
    prep: Prepared,
    model: str,
    labels: list[str],
    *,
    threshold: float | None = None,
    min_component_ml: float = 0.0,
    lungs: Lungs | None = None,
    confirming_boxes: Sequence | None = None,
):
    """Per-label masks and connected components on the input grid from (C, Z, Y, X) logits.

    Components smaller than ``min_component_ml`` (the bundle's choice, made on its validation split)
    are dropped from the mask as well as from the list: specks a reader would otherwise step through.
    With ``lungs``, so are the components that do not reach them (a lung model's findings elsewhere);
    with ``confirming_boxes`` (half-open boxes on the input grid), those that touch none of them.
    """
    import torch

    out = torch.as_tensor(output).float()
    probs = torch.softmax(out, dim=0)
    if threshold is not None and out.shape[0] == 2:
        best_p = probs[1]
        label_map = (best_p >= threshold).to(torch.uint8)
    else:
        best_p, label_map = probs.max(dim=0)
        label_map = label_map.to(torch.uint8)
    label_map = label_map.numpy()
    # Label and probability travel together through one nearest-neighbour resample: label in the
    # high byte, probability (1/255 steps) in the low byte.
    packed = label_map.astype(np.uint16) << 8
    packed |= np.round(best_p.numpy() * 255).astype(np.uint16)
    packed[label_map == 0] = 0
    region = _nonzero_box(label_map)
    on_input, where = prep.to_input_grid_region(packed, region)
    lab = (on_input >> 8).astype(np.uint8)
    prob = (on_input & 0xFF).astype(np.uint8)  # kept in bytes: a float copy would be 4× the mask
    del on_input
    return label_segmentations(
        lab,
        prob,
        where,
        prep.source,
        model,
        labels,
        min_component_ml=min_component_ml,
        lungs=lungs,
        confirming_boxes=confirming_boxes,
    )


def label_segmentations(
    lab: np.ndarray,
    prob: np.ndarray,
    where: tuple[slice, ...],
    source: Volume,
    model: str,
    labels,
    *,
    min_component_ml: float = 0.0,
    lungs: Lungs | None = None,
    colours: dict | None = None,
    confirming_boxes: Sequence | None = None,
) -> tuple[Segmentation, ...]:
    """One Segmentation per label from a label map and its probability bytes on the input-grid region ``where``;
    ``colours``: the model's display colour per label name, where it has them; ``confirming_boxes``:
    half-open boxes on the input grid, one of which a component must touch to be kept.

    Each label is worked on inside its own bounding box (one ``find_objects`` pass finds them all), so a
    model with a hundred labels (TotalSegmentator's organs) costs about what one label map costs: a
    label's full-grid mask is written only inside its box (:func:`~radlens.inference.findings.empty_mask`:
    the rest takes no memory), and the segmentations share the model's label map of what was kept.
    """
    colours = colours or {}
    voxel_ml = float(np.prod(source.spacing_zyx)) / 1000.0
    boxes = ndimage.find_objects(lab, max_label=len(labels)) if lab.size else []
    label_map = np.zeros(source.shape_zyx, dtype=np.uint8 if len(labels) < 256 else np.uint16)
    segs = []
    for value, name in enumerate(labels, start=1):
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        mask = empty_mask(source.shape_zyx)
        comps, count = (), 0
        if box is not None:
            at = tuple(slice(w.start + b.start, w.start + b.stop) for w, b in zip(where, box, strict=True))
            sub = drop_small_components(lab[box] == value, min_component_ml / voxel_ml)
            if lungs is not None:
                sub = _keep_touching_lungs(sub, prob[box], at, source, voxel_ml, lungs)
            if confirming_boxes is not None:
                sub = _keep_touching_boxes(sub, at, confirming_boxes)
            mask[at] = sub
            label_map[at][sub] = value
            comps = _components(sub, prob[box], at, source, voxel_ml)
            count = int(np.count_nonzero(sub))
        segs.append(
            Segmentation(
                model=model,
                label=name,
                label_value=value,
                volume_ml=float(count) * voxel_ml,
                components=comps,
                mask=mask,
                colour=tuple(colours[name]) if name in colours else None,
                label_map=label_map,
            )
        )
    return tuple(segs)


def mask_components(mask: np.ndarray, source: Volume) -> tuple[Component, ...]:
    """The connected components of a bool mask on ``source``'s grid (a reader's drawing: probability 1),
    computed in the mask's bounding box only."""
    box = _nonzero_box(mask)
    if box is None:
        return ()
    where = tuple(slice(box[i], box[i + 3]) for i in range(3))
    sub = np.asarray(mask[where], dtype=bool)
    prob = np.full(sub.shape, 255, dtype=np.uint8)
    return _components(sub, prob, where, source, float(np.prod(source.spacing_zyx)) / 1000.0)


def _nonzero_box(label_map: np.ndarray):
    """Half-open box of the non-zero voxels (with a one-voxel margin), or None when empty."""
    nz = ndimage.find_objects((label_map > 0).astype(np.uint8))
    if not nz or nz[0] is None:
        return None
    sl = nz[0]
    shape = label_map.shape
    return tuple(max(0, s.start - 1) for s in sl) + tuple(min(n, s.stop + 1) for s, n in zip(sl, shape, strict=True))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a mask, numbered 1..n: (labels, n). The one rule for what counts as one
    object, in findings and in training's metrics alike: voxels touching by a face, an edge or a corner
    (26-connectivity in 3D). In 16 bits when they fit, 32 otherwise (half the memory)."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    try:
        return ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        return ndimage.label(mask, structure=structure, output=np.int32)


def drop_small_components(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """``mask`` without its connected components (:func:`label_components`) of fewer than ``min_voxels`` voxels."""
    if min_voxels <= 1 or not mask.any():
        return mask
    comp, _ = label_components(mask)
    counts = np.bincount(comp.reshape(-1))
    small = counts < min_voxels
    small[0] = True  # background stays background
    return ~small[comp]


def _keep_touching_boxes(sub: np.ndarray, where, boxes: Sequence) -> np.ndarray:
    """``sub`` (a mask on the input-grid region ``where``) without its components that touch none of ``boxes``."""
    if not sub.any() or not len(boxes):
        return np.zeros_like(sub)
    comp, _ = label_components(sub)
    hit = set()
    for box in boxes:
        lo = [max(0, int(b) - w.start) for b, w in zip(box[:3], where, strict=True)]
        hi = [min(n, int(b) - w.start) for b, w, n in zip(box[3:], where, sub.shape, strict=True)]
        if all(h > lo_ for lo_, h in zip(lo, hi, strict=True)):
            hit.update(np.unique(comp[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]).tolist())
    hit.discard(0)
    return np.isin(comp, sorted(hit)) if hit else np.zeros_like(sub)


def _keep_touching_lungs(sub: np.ndarray, prob, where, source: Volume, voxel_ml: float, lungs: Lungs) -> np.ndarray:
    """``sub`` (a mask on the input-grid region ``where``) without its components away from the lungs."""
    if not sub.any():
        return sub
    comp, n = label_components(sub)
    counts, _, centres = _component_stats(comp, n, prob)
    offset = np.asarray([s.start for s in where], dtype=np.float64)
    diameters = 2 * np.cbrt(3 * counts * voxel_ml * 1000 / (4 * np.pi))  # the sphere of the same volume
    keep = np.concatenate([[False], lungs.touches(source.index_to_lps(centres + offset), diameters)])
    return keep[comp]


def _component_stats(comp: np.ndarray, n: int, prob: np.ndarray, slab_voxels: int = 1 << 22):
    """Per component: voxel count, probability sum and voxel-index centre, in z slabs.

    Vectorised (bincount per slab), and the float64 weights bincount needs exist for one slab at
    a time instead of for the whole region.
    """
    _, ny, nx = comp.shape
    counts = np.zeros(n + 1)
    psum = np.zeros(n + 1)
    csum = np.zeros((3, n + 1))
    step = max(1, slab_voxels // max(1, ny * nx))
    yy = np.repeat(np.arange(ny, dtype=np.float64), nx)
    xx = np.tile(np.arange(nx, dtype=np.float64), ny)
    for z0 in range(0, comp.shape[0], step):
        c = comp[z0 : z0 + step]
        k = c.shape[0]
        flat = c.reshape(-1)
        counts += np.bincount(flat, minlength=n + 1)
        psum += np.bincount(flat, weights=prob[z0 : z0 + k].reshape(-1), minlength=n + 1)
        csum[0] += np.bincount(
            flat, weights=np.repeat(np.arange(z0, z0 + k, dtype=np.float64), ny * nx), minlength=n + 1
        )
        csum[1] += np.bincount(flat, weights=np.tile(yy, k), minlength=n + 1)
        csum[2] += np.bincount(flat, weights=np.tile(xx, k), minlength=n + 1)
    counts, psum, csum = counts[1:], psum[1:], csum[:, 1:]
    return counts, psum / 255.0, (csum / counts).T


def _components(sub: np.ndarray, prob: np.ndarray, where, source: Volume, voxel_ml: float) -> tuple[Component, ...]:
    """Connected components of one label's mask (on the input-grid region ``where``), largest first."""
    if sub.size == 0 or not sub.any():
        return ()
    comp, n = label_components(sub)
    counts, psum, centres = _component_stats(comp, n, prob)
    offset = np.asarray([s.start for s in where], dtype=np.float64)
    centres_lps = source.index_to_lps(centres + offset)
    boxes = ndimage.find_objects(comp)
    # Largest first (what a reader looks at first); a noisy model's specks beyond the cap are not listed.
    order = np.argsort(-counts, kind="stable")[:MAX_COMPONENTS]
    out = []
    for rank, i in enumerate(order.tolist(), start=1):
        sl = boxes[i]
        box = tuple(int(s.start + o) for s, o in zip(sl, offset, strict=True)) + tuple(
            int(s.stop + o) for s, o in zip(sl, offset, strict=True)
        )
        out.append(
            Component(
                id=rank,
                volume_ml=float(counts[i]) * voxel_ml,
                center_lps=tuple(float(v) for v in centres_lps[i]),
                box_zyx=box,
                mean_probability=float(psum[i] / counts[i]),
            )
        )
    return tuple(out)
