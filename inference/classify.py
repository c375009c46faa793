"""Study-level classification (bundles whose task is ``classification``): the probability that a study
shows its label, a probability per slice, and a Grad-CAM heat map, all on the input grid.

The volume is prepared as for any bundle (resampled to the bundle's spacing, normalised); every
slice is cut to the bundle's in-plane patch around the volume's centre (padded with the background),
so training (:mod:`radlens.training.classify`) and inference see the same pixels. The per-slice
curve is given per input slice (each takes the model slice at its position), so the viewer's plot
lines up with its slices. The heat map is MONAI's Grad-CAM of the per-slice logits at the CNN's last
feature map: an approximate explanation (coarse: one cell is 16 px of the model grid), scaled so a
slice's strongest cell equals that slice's probability; a study the model calls healthy stays dark.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.inference.findings import Classification
from radlens.inference.preprocess import Prepared


def slices_of(image: np.ndarray, patch_yx) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(Z, PY, PX) slices of a prepared (Z, Y, X) image, cut or padded around the centre; and the
    in-plane window ``(y0, x0, y1, x1)`` of the image they show (may reach outside it)."""
    z, y, x = image.shape
    py, px = (int(v) for v in patch_yx)
    y0, x0 = (y - py) // 2, (x - px) // 2
    out = np.full((z, py, px), float(image.min()) if image.size else 0.0, dtype=np.float32)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(y, y0 + py), min(x, x0 + px)
    out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    return out, (y0, x0, y0 + py, x0 + px)


def probabilities(
    network, slices: np.ndarray, device: str = "cpu", mirror_axes: Sequence[int] = ()
) -> tuple[float, np.ndarray]:
    """The study's probability and one per slice, for (Z, PY, PX) slices of one study. ``mirror_axes``
    (0 = z, the slice order): test-time mirroring, the logits averaged over every combination of flips."""
    import torch

    from radlens.inference.engine import flip_combinations

    network.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[None].to(device)
    flips = flip_combinations([a + 1 for a in mirror_axes])  # the study comes first
    study, per_slice = 0.0, 0.0
    with torch.inference_mode():
        for dims in flips:
            s, p = network(x.flip(dims) if dims else x)
            study = study + s.float() / len(flips)
            per_slice = per_slice + (p.flip(1) if 1 in dims else p).float() / len(flips)
    return float(torch.sigmoid(study)[0]), torch.sigmoid(per_slice)[0].cpu().numpy()


def grad_cam(network, slices: np.ndarray, per_slice: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(Z, PY, PX) heat map in [0, 1]: Grad-CAM of each slice's logit, scaled per slice to its probability."""
    import torch
    from monai.visualize import GradCAM

    from radlens.inference.networks import SliceLogits

    wrapped = SliceLogits(network).to(device).eval()
    cam = GradCAM(wrapped, target_layers=f"net.{network.CAM_LAYER}", postprocessing=lambda m: m)
    # The input asks for its gradient only so that MONAI's backward hooks fire on the layer's input side too.
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None].to(device).requires_grad_(True)
    with torch.enable_grad():
        maps = cam(x, class_idx=0)[:, 0].detach().float().cpu().numpy()
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, per_slice / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
    return np.clip(maps * scale[:, None, None], 0.0, 1.0)


def per_input_slice(per_model_slice: np.ndarray, prepared: Prepared) -> np.ndarray:
    """A value per model slice as one per input slice: each input slice takes the model slice at its position."""
    source = prepared.source
    nz = source.shape_zyx[0]
    cy, cx = (n / 2 for n in source.shape_zyx[1:])
    at = np.stack([np.arange(nz, dtype=float), np.full(nz, cy), np.full(nz, cx)], axis=1)
    model_z = prepared.grid.lps_to_index(source.index_to_lps(at))[:, 0]
    k = np.clip(np.rint(model_z), 0, len(per_model_slice) - 1).astype(int)
    return np.asarray(per_model_slice, dtype=np.float32)[k]


def heatmap_on_input(heat: np.ndarray, window_yx, prepared: Prepared) -> np.ndarray:
    """The (Z, PY, PX) heat map of the slices placed back on the model grid, then on the input grid."""
    z, y, x = prepared.image.shape
    y0, x0, y1, x1 = window_yx
    full = np.zeros((z, y, x), dtype=np.float32)
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(y, y1), min(x, x1)
    full[:, sy0:sy1, sx0:sx1] = heat[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return prepared.to_input_grid(full, is_mask=False, fill=0.0).astype(np.float32)


def classify(
    network,
    prepared: Prepared,
    patch_yx,
    model: str,
    label: str,
    *,
    device: str = "cpu",
    cancel: threading.Event | None = None,
    mirror_axes: Sequence[int] = (),
) -> Generator[Progress, None, Classification]:
    """One study through a classification bundle: its Classification with the heat map in memory."""
    slices, window = slices_of(prepared.image, patch_yx)
    yield Progress(0, 2, f"{model}: {len(slices)} slices")
    study, per_slice = probabilities(network, slices, device, mirror_axes)
    check_cancel(cancel, model)
    yield Progress(1, 2, f"{model}: heat map")
    heat = grad_cam(network, slices, per_slice, device)
    check_cancel(cancel, model)
    curve = per_input_slice(per_slice, prepared)
    heatmap = heatmap_on_input(heat, window, prepared)
    yield Progress(2, 2, f"{model}: done")
    return Classification(model, label, study, tuple(float(v) for v in curve), "", heatmap)
