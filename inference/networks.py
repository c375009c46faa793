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
from radlens.inference.monai_bundle import MONAI_NETWORKS
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


# nnU-Net's plans name their network and its building blocks by import path; only these are built.
NNUNET_NETWORKS = ("PlainConvUNet", "ResidualEncoderUNet")
NNUNET_BLOCKS = {
    f"{module}.{cls.__name__}": cls
    for module, classes in (
        ("torch.nn.modules.conv", (nn.Conv2d, nn.Conv3d)),
        ("torch.nn.modules.instancenorm", (nn.InstanceNorm2d, nn.InstanceNorm3d)),
        ("torch.nn.modules.batchnorm", (nn.BatchNorm2d, nn.BatchNorm3d)),
        ("torch.nn.modules.dropout", (nn.Dropout, nn.Dropout2d, nn.Dropout3d)),
        ("torch.nn.modules.activation", (nn.LeakyReLU, nn.ReLU, nn.PReLU, nn.GELU)),
    )
    for cls in classes
}
NNUNET_BLOCKS.update({f"torch.nn.{cls.__name__}": cls for cls in set(NNUNET_BLOCKS.values())})


class SliceNetwork(nn.Module):
    """A 2D network run on (B, C, 1, Y, X) windows, so 2D models share the 3D sliding windows."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x[:, :, 0])[:, :, None]


def build_nnunet(
    network_class: str, arch_kwargs: dict, block_names: list | tuple = (), input_channels: int = 1, num_classes: int = 2
) -> nn.Module:
    """A dynamic_network_architectures U-Net from an nnU-Net plans ``architecture`` block, through allow-lists:
    the network by class name, its conv / norm / dropout / non-linearity by import path."""
    from dynamic_network_architectures.architectures import unet

    name = str(network_class).rsplit(".", 1)[-1]
    if name not in NNUNET_NETWORKS:
        raise ValueError(f"network {network_class!r} is not one RadLens builds ({', '.join(NNUNET_NETWORKS)})")
    kwargs = dict(arch_kwargs)
    for key in block_names:
        if kwargs.get(key) is None:
            continue
        if kwargs[key] not in NNUNET_BLOCKS:
            raise ValueError(f"{key} {kwargs[key]!r} is not an allowed building block")
        kwargs[key] = NNUNET_BLOCKS[kwargs[key]]
    network = getattr(unet, name)(input_channels=int(input_channels), num_classes=int(num_classes), **kwargs)
    network.decoder.deep_supervision = False
    is_2d = kwargs.get("conv_op") is nn.Conv2d
    return SliceNetwork(network) if is_2d else network


class NoduleClassifier3D(nn.Module):
    """The second stage of the two-stage detector (inference.candidates): nodule or not, from two
    views of a candidate (fine and coarse). Small on purpose: it sees a few hundred patches a scan."""

    def __init__(self, in_channels: int = 2, channels=(8, 16, 32, 64), dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], int(in_channels)
        for c in (int(c) for c in channels):
            for _ in range(2):
                layers += [nn.Conv3d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm3d(c), nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.MaxPool3d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(float(dropout)), nn.Linear(2 * c_in, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)
        return self.head(pooled)


class SliceSequenceClassifier(nn.Module):
    """A study-level classifier: a 2D CNN embeds every slice, a bidirectional GRU reads them in order.

    The recipe that won the RSNA intracranial haemorrhage challenge. ``slice_head`` scores a slice
    from its embedding alone (the CNN's own training target); the GRU gives each slice a logit that
    sees its neighbours and the study a logit from its slices' outputs (masked mean and max over
    time). Studies of different lengths ride in one padded batch with ``lengths``: the GRU reads
    them packed, so padding never enters a real slice's state or the study's pooling. ``context``:
    the CNN sees that many neighbours on each side of a slice as channels (2.5D, as the RSNA
    winners did: a blob and a tube look alike on one slice, not on three).
    """

    def __init__(self, channels=(16, 32, 64, 128), hidden: int = 64, dropout: float = 0.2, context: int = 0):
        super().__init__()
        self.context = int(context)
        layers, c_in = [], 2 * self.context + 1
        for i, c in enumerate(int(c) for c in channels):
            stride = 2 if i == 0 else 1  # a quick first reduction: slices are ~100 px, lesions ~5 px and up
            layers += [nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)  # its last ReLU is the Grad-CAM layer (CAM_LAYER)
        self.embedding_size = 2 * c_in
        self.dropout = nn.Dropout(float(dropout))
        self.slice_head = nn.Linear(self.embedding_size, 1)
        self.gru = nn.GRU(self.embedding_size, int(hidden), batch_first=True, bidirectional=True)
        self.slice_out = nn.Linear(2 * int(hidden), 1)
        self.study_out = nn.Linear(4 * int(hidden), 1)

    CAM_LAYER = "features"

    def with_context(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, Y, X) studies → (B, T, C, Y, X): each slice with its neighbours (the study's end repeated)."""
        b, t = x.shape[:2]
        lengths = torch.full((b,), t, dtype=torch.long) if lengths is None else lengths.to("cpu", torch.long)
        idx = context_indices(torch.arange(t).expand(b, t), lengths[:, None].expand(b, t), self.context)
        return x[torch.arange(b)[:, None, None], idx.to(x.device)]

    def embed(self, slices: torch.Tensor) -> torch.Tensor:
        """(N, C, Y, X) slices with their context → (N, E) embeddings (mean and max of the last feature map)."""
        f = self.features(slices)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def sequence(self, emb: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, E) embeddings (padded past ``lengths``) → study logits (B,) and slice logits (B, T)."""
        b, t, _ = emb.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(emb), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        valid = (torch.arange(t)[None, :] < lengths[:, None]).to(out.device)[..., None]
        mean = (out * valid).sum(1) / valid.sum(1).clamp(min=1)
        peak = out.masked_fill(~valid, float("-inf")).amax(1)
        study = self.study_out(self.dropout(torch.cat([mean, peak], dim=1)))[:, 0]
        return study, self.slice_out(out)[..., 0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, Y, X) studies → study logits (B,) and slice logits (B, T)."""
        b, t = x.shape[:2]
        emb = self.embed(self.with_context(x, lengths).flatten(0, 1)).reshape(b, t, -1)
        return self.sequence(emb, lengths)


def context_indices(positions: torch.Tensor, lengths: torch.Tensor, context: int) -> torch.Tensor:
    """The slices a slice at ``positions`` sees (``context`` each side), clamped to its study's ``lengths``."""
    offsets = torch.arange(-int(context), int(context) + 1)
    return (positions[..., None] + offsets).clamp(min=0).minimum(lengths[..., None] - 1)


class SliceLogits(nn.Module):
    """A SliceSequenceClassifier as Grad-CAM reads it: (N, 1, Y, X), the slices of one study in order,
    → (N, 1) their per-slice logits (each slice a "batch item" with its own activation map)."""

    def __init__(self, net: SliceSequenceClassifier):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = self.net.with_context(x[:, 0][None])[0]
        return self.net.sequence(self.net.embed(slices)[None])[1][0][:, None]


def build_monai(target: str, kwargs: dict | None = None) -> nn.Module:
    """A network of a MONAI bundle's ``network_def``: an allow-listed class of monai.networks.nets, literal kwargs."""
    from monai.networks import nets

    if target not in MONAI_NETWORKS:
        raise ValueError(f"network {target!r} is not one RadLens builds ({', '.join(MONAI_NETWORKS)})")
    return getattr(nets, target)(**dict(kwargs or {}))


REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "nnunet": build_nnunet,
    "monai": build_monai,
    "unet3d-seg": build_unet3d_seg,
    "centernet3d": CenterNet3D,
    "nodule-classifier3d": NoduleClassifier3D,
    "slice-gru-classifier": SliceSequenceClassifier,
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
