"""The losses (Dice + cross-entropy for segmenters, CenterNet's for detectors) and the size head's
starting point that makes the detector's size loss converge in a few epochs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from radlens.training.cache import CaseCache
from radlens.training.plan import Plan


def heatmap_focal_loss(logits, target, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss on heatmap logits, normalised by the number of centres."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits.float())
    log_1p = F.logsigmoid(-logits.float())
    pos_loss = (pos * (1 - p) ** alpha * log_p).sum()
    neg_loss = ((1 - pos) * (1 - target) ** beta * p**alpha * log_1p).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def make_loss(task: str) -> Callable:
    import torch

    if task == "segment":
        from monai.losses import DiceCELoss

        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
        return lambda out, tgt: dice_ce(out.float(), tgt)

    def detection_loss(out, tgt):
        from radlens.inference.networks import HEATMAP_CHANNEL, SIZE_CHANNELS

        hm = heatmap_focal_loss(out[:, HEATMAP_CHANNEL], tgt[:, 0])
        mask = tgt[:, 4:5]
        size = (torch.abs(out[:, SIZE_CHANNELS].float() - tgt[:, 1:4]) * mask).sum() / mask.sum().clamp(min=1.0)
        return hm + 0.1 * size

    return detection_loss


def start_sizes_at_the_mean(network, cache: CaseCache, plan: Plan) -> None:
    """Start the size head at the training set's mean box extent (per axis, in voxels).

    Adam moves a bias by about the learning rate per step, so a head starting at 0 needs thousands
    of steps to reach extents of 5–15 voxels; starting at the mean it only learns the differences.
    """
    import torch

    extents = [e for cid in plan.train_cases for e in cache.cases[cid].extents_zyx]
    if not extents or not hasattr(network, "size"):
        return
    with torch.no_grad():
        network.size.bias.copy_(torch.as_tensor(np.mean(extents, axis=0), dtype=network.size.bias.dtype))
