"""The architecture registry: the only way a bundle's ``arch`` string becomes a network.

A bundle names an architecture and its keyword arguments; this module maps the name to a builder
from a fixed dictionary (never ``eval``, never an import path taken from the file), so a bundle can
only choose among networks this code already knows. Importing this module imports torch and MONAI;
the rest of ``inference`` imports it lazily.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.nets import UNet
from torch import nn

from radlens.inference.errors import BundleError
from radlens.inference.metadata import Normalization
from radlens.inference.preprocess import NormalizeIntensity

# Detector output channels: 0 = centre heatmap logits, 1..3 = box extent (z, y, x) in voxels of the model grid.
HEATMAP_CHANNEL = 0
SIZE_CHANNELS = slice(1, 4)
# CenterNet's focal-loss prior: the heatmap starts near 0.1 everywhere so early training is stable.
HEATMAP_PRIOR_BIAS = -2.19


def _unet_kwargs(channels, strides, num_res_units, norm, dropout) -> dict:
    channels = tuple(int(c) for c in channels)
    strides = tuple(int(s) for s in strides) if strides is not None else (2,) * (len(channels) - 1)
    if len(strides) != len(channels) - 1:
        raise ValueError(f"strides {strides} must have one entry fewer than channels {channels}")
    return {
        "spatial_dims": 3,
        "channels": channels,
        "strides": strides,
        "num_res_units": int(num_res_units),
        "norm": norm,
        "dropout": float(dropout),
    }


def build_unet3d_seg(
    n_labels: int = 1,
    in_channels: int = 1,
    channels=(16, 32, 64, 128),
    strides=None,
    num_res_units: int = 1,
    norm: str = "instance",
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI's 3D U-Net; ``n_labels + 1`` output logits (channel 0 = background)."""
    return UNet(
        in_channels=int(in_channels),
        out_channels=int(n_labels) + 1,
        **_unet_kwargs(channels, strides, num_res_units, norm, dropout),
    )


class CenterNet3D(nn.Module):
    """A small MONAI U-Net trunk with two 1×1×1 heads: centre heatmap logits and box size.

    The output is one tensor ``(B, 4, Z, Y, X)`` (channel 0 heatmap logits, channels 1..3 the
    box extent in model-grid voxels, z/y/x) so that sliding-window inference stitches it like any
    segmentation output. Light enough for a CPU: the heavy part is a 3-level U-Net.
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: int = 16,
        channels=(16, 32, 64),
        strides=None,
        num_res_units: int = 1,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.trunk = UNet(
            in_channels=int(in_channels),
            out_channels=int(features),
            **_unet_kwargs(channels, strides, num_res_units, norm, dropout),
        )
        self.act = nn.PReLU()
        self.heatmap = nn.Conv3d(int(features), 1, kernel_size=1)
        self.size = nn.Conv3d(int(features), 3, kernel_size=1)
        nn.init.constant_(self.heatmap.bias, HEATMAP_PRIOR_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.act(self.trunk(x))
        return torch.cat([self.heatmap(f), self.size(f)], dim=1)


class _Rewindow(nn.Module):
    """Maps an image normalised with one CT window to the same image normalised with another.

    Exact wherever the target window lies inside the source one (the HU outside both are clipped
    alike), which :class:`Ensemble` guarantees by giving the bundle the widest of its members' windows.
    """

    def __init__(self, source: dict, target: dict):
        super().__init__()
        lo, hi, self.scale, self.offset = NormalizeIntensity(Normalization.from_json(source)).ct_affine()
        target_affine = NormalizeIntensity(Normalization.from_json(target)).ct_affine()
        self.lo, self.hi, self.target_scale, self.target_offset = target_affine
        if not lo <= self.lo < self.hi <= hi:
            raise ValueError(f"window {[self.lo, self.hi]} does not lie inside the input window {[lo, hi]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hu = (x - self.offset) / self.scale
        return hu.clamp(self.lo, self.hi) * self.target_scale + self.target_offset


class Ensemble(nn.Module):
    """Several networks of one architecture whose outputs are averaged, as nnU-Net ensembles its folds.

    Outputs (logits) are averaged the way test-time mirroring averages them. ``normalization`` is
    the bundle's own input normalisation and ``member_normalizations`` each member's (members
    trained on different splits measure slightly different CT windows); a member whose window
    differs gets its input re-normalised its own way, so each sees exactly what it was trained on.
    """

    def __init__(
        self,
        member_arch: str,
        member_arch_kwargs: dict | None = None,
        members: int = 2,
        normalization: dict | None = None,
        member_normalizations: list | None = None,
    ):
        super().__init__()
        if member_arch == "ensemble":
            raise ValueError("an ensemble's members cannot themselves be ensembles")
        if int(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(
            build_network(member_arch, **dict(member_arch_kwargs or {})) for _ in range(int(members))
        )
        norms = list(member_normalizations or [normalization] * int(members))
        if len(norms) != int(members):
            raise ValueError(f"{len(norms)} member normalizations for {members} members")
        self.inputs = nn.ModuleList(
            nn.Identity() if norm == normalization else _Rewindow(normalization or {}, norm or {}) for norm in norms
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member, to_input in zip(self.members, self.inputs, strict=True):
            out = member(to_input(x)).float()
            total = out if total is None else total + out
        return total / len(self.members)


REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "unet3d-seg": build_unet3d_seg,
    "centernet3d": CenterNet3D,
    "ensemble": Ensemble,
}


def build_network(arch: str, **arch_kwargs) -> nn.Module:
    """Build a registered architecture; an unknown name or bad arguments raise BundleError."""
    try:
        builder = REGISTRY[arch]
    except (KeyError, TypeError):
        raise BundleError(f"arch {arch!r}", f"unknown architecture (known: {', '.join(sorted(REGISTRY))})") from None
    try:
        return builder(**arch_kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise BundleError(f"arch {arch!r}", f"bad arch_kwargs {arch_kwargs}: {err}") from None
