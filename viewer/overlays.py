"""The per-slice pieces of the layers that the views draw (numpy only).

Masks and heat maps are Volumes on the study's grid (``viewer.layers``), so ``extract_plane``
orients them exactly like the image; boxes are arrays, so a slice's boxes need no Python loop.
"""

from __future__ import annotations

import numpy as np

from radlens.imaging.geometry import extract_plane
from radlens.viewer.layers import BoxSet, Layer
from radlens.viewer.state import AXIS, box_on_plane

FILL_ALPHA = 110
HEAT_FLOOR = 0.1  # heat below this is transparent so the anatomy stays readable


def layer_slice(layer: Layer, plane: str, index: int) -> np.ndarray:
    """A mask or heat map layer's 2D slice, oriented exactly like the image's (a label map's slice
    for a layer drawn from its model's label map, :func:`labels_rgba`)."""
    return extract_plane(layer.data, plane, index).image


def boxes_on_slice(
    bs: BoxSet, threshold: float, plane: str, index: int, shape_zyx, flip_z: bool
) -> list[tuple[int, float, tuple[int, int, int, int]]]:
    """(id, score, (row0, col0, row1, col1)) of the boxes above ``threshold`` that cross the slice."""
    axis = AXIS[plane]
    b = bs.boxes
    hit = (b[:, axis] <= index) & (index < b[:, axis + 3]) & (bs.scores >= threshold)
    return [
        (int(bs.ids[i]), float(bs.scores[i]), box_on_plane(b[i].tolist(), plane, index, shape_zyx, flip_z))
        for i in np.flatnonzero(hit)
    ]


def mask_rgba(mask: np.ndarray, color: tuple[int, int, int]) -> tuple[np.ndarray, int, int] | None:
    """The filled, outlined colour image of a 2D mask, cropped to where it is: (rgba, row0, col0).

    None when the slice holds none of it. Cropping keeps a small lesion's cost small on a 512² slice.
    """
    m = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    m = m[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    rgba = np.zeros((*m.shape, 4), dtype=np.uint8)
    rgba[..., :3] = color
    rgba[..., 3] = np.where(m, np.where(inner, FILL_ALPHA, 255), 0).astype(np.uint8)
    return rgba, r0, c0


def label_luts(layers, shown) -> tuple[np.ndarray, np.ndarray]:
    """Per label value of one label map, the RGBA (packed in a uint32, native order) of its fill and of
    its outline, from its layers' colour, visibility (``shown(key)``) and opacity; value 0 and hidden
    labels transparent."""
    n = max((layer.value for layer in layers), default=0) + 1
    fill = np.zeros((n, 4), dtype=np.uint8)
    edge = np.zeros((n, 4), dtype=np.uint8)
    for layer in layers:
        if shown(layer.key):
            fill[layer.value] = (*layer.colour, round(FILL_ALPHA * layer.opacity))
            edge[layer.value] = (*layer.colour, round(255 * layer.opacity))
    return fill.view(np.uint32)[:, 0], edge.view(np.uint32)[:, 0]


def labels_rgba(labels: np.ndarray, fill: np.ndarray, edge: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """A label map slice as one colour image: each shown label filled and outlined as :func:`mask_rgba`
    draws a mask, opacity included, cropped to the shown labels: (rgba, row0, col0), or None.
    ``fill``/``edge``: :func:`label_luts`. One pass over the slice, whatever the number of labels.
    """
    lab = np.asarray(labels)
    if lab.size and lab.max() >= len(fill):  # values no layer names: transparent
        lab = np.where(lab < len(fill), lab, 0)
    shown = edge.take(lab) != 0
    rows = np.flatnonzero(shown.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(shown.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    lab = lab[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    inner = np.zeros(lab.shape, dtype=bool)  # the crop's border is outline: nothing shown lies beyond it
    core = lab[1:-1, 1:-1]
    inner[1:-1, 1:-1] = (
        (core == lab[:-2, 1:-1]) & (core == lab[2:, 1:-1]) & (core == lab[1:-1, :-2]) & (core == lab[1:-1, 2:])
    )
    packed = np.where(inner, fill.take(lab), edge.take(lab))
    return packed.view(np.uint8).reshape(*lab.shape, 4), r0, c0


def heat_lut(colormap) -> np.ndarray:
    """A 256×4 lookup table whose alpha rises with the probability (pyqtgraph colormap in)."""
    lut = np.asarray(colormap.getLookupTable(0.0, 1.0, 256, alpha=True), dtype=np.uint8).copy()
    ramp = np.linspace(0, 1, 256)
    lut[:, 3] = np.where(ramp < HEAT_FLOOR, 0, np.clip(ramp * 1.2, 0, 1) * 255).astype(np.uint8)
    return lut
