"""Data augmentation on torch tensors, drawn from a seeded generator so a resumed epoch repeats it."""

from __future__ import annotations

import math


def augment(image, target, task: str, generator):
    """Random flips, in-plane 90° turns, a small affine (segmentation), intensity scale/shift and noise.

    On torch tensors, per sample, drawn from ``generator`` (so a resumed epoch repeats them). A 90°
    turn swaps the y and x box extents of detection targets; the detector gets no affine, whose
    rotation would change box extents by amounts a heatmap cannot follow exactly.
    """
    import torch
    import torch.nn.functional as F

    def rand(*shape):
        return torch.rand(shape, generator=generator)

    out_i, out_t = [], []
    square = image.shape[-1] == image.shape[-2]
    for b in range(image.shape[0]):
        x, t = image[b], target[b]
        for axis in (1, 2, 3):
            if rand(1).item() < 0.5:
                x, t = x.flip(axis), t.flip(axis)
        k = int(rand(1).item() * 4) if square else 2 * int(rand(1).item() * 2)
        if k:
            x, t = torch.rot90(x, k, dims=(2, 3)), torch.rot90(t, k, dims=(2, 3))
            if task == "detect" and k % 2:
                t = t[[0, 2, 1, 3, 4]]
        if task == "segment" and rand(1).item() < 0.3:
            angle = (rand(1).item() - 0.5) * math.radians(30)
            scale = 0.85 + 0.3 * rand(1).item()
            cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
            theta = torch.tensor([[[1 / scale, 0, 0, 0], [0, cos, -sin, 0], [0, sin, cos, 0]]], dtype=torch.float32)[
                :, [2, 1, 0]
            ][:, :, [2, 1, 0, 3]]  # affine_grid wants (x, y, z) order
            grid = F.affine_grid(theta, [1, 1, *x.shape[1:]], align_corners=False)
            x = F.grid_sample(x[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
            t = F.grid_sample(t[None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
            t = t.long()
        if rand(1).item() < 0.5:
            x = x * (0.9 + 0.2 * rand(1).item()) + (rand(1).item() - 0.5) * 0.2
        if rand(1).item() < 0.3:
            x = x + torch.randn(x.shape, generator=generator) * (0.1 * rand(1).item())
        out_i.append(x.contiguous())
        out_t.append(t.contiguous())
    return torch.stack(out_i), torch.stack(out_t)
