"""``radlens train segment|detect``: a labelled folder → a model bundle that ``radlens infer`` runs.

Reads top to bottom like torchvision's reference script: plan (defaults from the data, nnU-Net's
rules) → cache (volumes preprocessed by inference's own :class:`~inference.preprocess.Preprocess`,
so what is trained is what runs) → network from inference's registry → optimiser → resume → epochs
→ checkpoints → bundle.

Reproducibility: every random stream (patch sampler, augmentation) is seeded from
``(seed, epoch, rank)`` at the start of each epoch, and the learning rate is a pure function of the
step, so a run resumed from the checkpoint of epoch *k* replays epochs *k+1…* exactly as an
uninterrupted run would. Checkpoints are single safetensors files (weights, optimiser tensors and a
JSON state in the header: no pickle), written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import atomic_path, write_text
from radlens.imaging.errors import RadlensError
from radlens.imaging.progress import Progress, check_cancel
from radlens.inference.metadata import DEFAULT_BLEND, DEFAULT_OVERLAP, InputSpec, is_window_overlap
from radlens.training.datasets import Case, Dataset, load_image, load_label, nodules_from_instances, read_dataset

TASKS = {"segment": "segmentation", "detect": "detection"}
CHECKPOINTS = "checkpoints"
LOG_CSV = "training_log.csv"
LOG_JSON = "training_log.json"
# Voxels of one patch the default plan aims at (nnU-Net sizes patches from GPU memory the same way).
PATCH_BUDGET = {"cpu": 48 * 64 * 64, "cuda": 128 * 128 * 128}
FOREGROUND_FRACTION = 0.5  # nodules are small: half of the patches are centred near one
VAL_FRACTION = 0.2
EPOCH_VALIDATION_OVERLAP = 0.25  # at most, for comparing epochs (the final validation uses the plan's)
PLAN_CASES = 20
DETECTION_MIN_SIGMA = 1.0  # voxels; the centre heatmap's narrowest Gaussian
# A single-label segmenter's operating point is chosen on the validation split from these grids.
PROBABILITY_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
MIN_COMPONENT_DIAMETER_GRID_MM = (0.0, 3.0, 4.0, 5.0)  # equal-volume sphere diameters


class TrainingError(RadlensError):
    """Training stopped for a reason the user can act on (NaN loss, bad options, no checkpoint)."""


# -- plan ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything that decides the run; printed before training and recorded in the bundle."""

    task: str
    modality: str
    labels: list[str]
    label_values: list[int]
    spacing_zyx: list[float]
    patch_zyx: list[int]
    normalization: dict
    arch: str
    arch_kwargs: dict
    batch: int
    epochs: int
    iterations: int
    lr: float
    weight_decay: float
    seed: int
    foreground_fraction: float
    train_cases: list[str]
    validation_cases: list[str]
    val_every: int = 1
    crop: str | None = None
    notes: list[str] = field(default_factory=list)
    mirror_axes: list[int] = field(default_factory=list)  # test-time mirroring the bundle will run with
    # Sliding windows, for the final validation and in the bundle.
    overlap: float = DEFAULT_OVERLAP
    blend: str = DEFAULT_BLEND

    def input_block(self) -> dict:
        block = {
            "modality": self.modality,
            "spacing_zyx": self.spacing_zyx,
            "patch_zyx": self.patch_zyx,
            "normalization": self.normalization,
        }
        if self.crop is not None:
            block["crop"] = self.crop
        if self.mirror_axes:
            block["mirror_axes"] = self.mirror_axes
        block["overlap"] = self.overlap
        block["blend"] = self.blend
        return block

    def describe(self) -> str:
        lines = [
            f"task {self.task}; modality {self.modality}; labels {self.labels}",
            f"spacing_zyx {self.spacing_zyx} mm; patch_zyx {self.patch_zyx}; batch {self.batch}",
            f"normalization {json.dumps(self.normalization)}",
            f"network {self.arch} {json.dumps(self.arch_kwargs)}",
            f"epochs {self.epochs} × {self.iterations} iterations; AdamW lr {self.lr} (cosine), weight decay "
            f"{self.weight_decay}; foreground patches {self.foreground_fraction:.0%}; seed {self.seed}",
            f"cases: {len(self.train_cases)} training, {len(self.validation_cases)} validation",
            f"sliding windows: overlap {self.overlap:g}, {self.blend} blend in the bundle and its final validation "
            f"(epochs compare at overlap ≤ {EPOCH_VALIDATION_OVERLAP:g}, unmirrored)",
            *(
                [f"test-time mirroring on axes {self.mirror_axes} (zyx) for the final validation and in the bundle"]
                if self.mirror_axes
                else []
            ),
            *self.notes,
        ]
        return "\n".join(lines)


def _median_spacing(cases: list[Case]) -> list[float]:
    import SimpleITK as sitk

    spacings = []
    for case in cases:
        if case.image.is_file():
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(case.image))
            reader.ReadImageInformation()
            spacings.append(reader.GetSpacing()[::-1])
        else:
            spacings.append(load_image(case.image).spacing_zyx)
    return [round(float(s), 4) for s in np.median(np.asarray(spacings), axis=0)]


def default_patch(shape_zyx, spacing_zyx, budget: int, divisor: int) -> list[int]:
    """nnU-Net's rule: start from the median image shape, shrink the axis longest in mm until it fits."""
    patch = np.asarray(shape_zyx, dtype=float)
    spacing = np.asarray(spacing_zyx, dtype=float)
    while np.prod(patch) > budget:
        mm = patch * spacing
        axis = int(np.argmax(np.where(patch > divisor, mm, -1)))
        patch[axis] = max(divisor, patch[axis] - divisor)
        if np.all(patch <= divisor):
            break
    return [int(max(divisor, math.floor(p / divisor) * divisor)) for p in patch]


def split_cases(case_ids: list[str], seed: int, fraction: float = VAL_FRACTION) -> tuple[list[str], list[str]]:
    """A validation split fixed by the seed: same seed, same cases, whatever order the folder lists them."""
    ids = sorted(case_ids)
    if len(ids) < 2:
        return ids, []
    n_val = max(1, round(len(ids) * fraction))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val


def make_plan(ds: Dataset, task: str, args: argparse.Namespace, device: str) -> Plan:
    notes = []
    spacing = [float(s) for s in args.spacing] if args.spacing else _median_spacing(ds.train_cases)
    if not args.spacing:
        notes.append(f"spacing: median of the training images ({spacing} mm)")
    if task == "detect":
        labels, values = ["nodule"], [1]
    else:
        values = sorted(ds.labels)
        labels = [ds.labels[v] for v in values]
    channels = tuple(args.channels) if getattr(args, "channels", None) else None
    res_units = int(args.res_units if getattr(args, "res_units", None) is not None else 1)
    if task == "detect":
        channels = channels or (16, 32, 64)
        arch, arch_kwargs = "centernet3d", {"channels": list(channels), "features": int(channels[0])}
    else:
        channels = channels or (16, 32, 64, 128)
        arch, arch_kwargs = "unet3d-seg", {"n_labels": len(labels), "channels": list(channels)}
    arch_kwargs["num_res_units"] = res_units
    divisor = 2 ** (len(channels) - 1)
    train_ids, val_ids = split_cases(
        [c.case_id for c in ds.train_cases], args.seed, getattr(args, "val_fraction", None) or VAL_FRACTION
    )
    return Plan(
        task=task,
        modality=ds.modality,
        labels=labels,
        label_values=values,
        spacing_zyx=spacing,
        patch_zyx=list(args.patch) if args.patch else [],
        normalization={},
        arch=arch,
        arch_kwargs=arch_kwargs,
        batch=int(args.batch or (2 if device == "cpu" else 4)),
        epochs=int(args.epochs or (20 if device == "cpu" else 200)),
        iterations=int(getattr(args, "iterations", None) or (50 if device == "cpu" else 250)),
        lr=float(args.lr or 2e-3),
        weight_decay=3e-5,
        seed=int(args.seed),
        foreground_fraction=FOREGROUND_FRACTION,
        train_cases=train_ids,
        validation_cases=val_ids,
        val_every=int(getattr(args, "val_every", None) or 1),
        crop="body" if ds.modality == "CT" else None,
        mirror_axes=sorted(set(getattr(args, "mirror_axes", None) or [])),
        overlap=float(getattr(args, "overlap", DEFAULT_OVERLAP)),
        blend=str(getattr(args, "blend", DEFAULT_BLEND)),
        notes=[*notes, f"patch divisor {divisor} (the network downsamples {len(channels) - 1} times)"],
    )


def intensity_normalization(ds: Dataset, plan: Plan, raw: dict[str, tuple]) -> dict:
    """CT: clip to the 0.5/99.5 percentiles of foreground HU, then z-score with the foreground's mean/std
    (nnU-Net's CT scheme); everything else: per-volume z-score."""
    if ds.modality != "CT":
        return {"kind": "zscore", "foreground_above": 0.0}
    samples = []
    rng = np.random.default_rng(plan.seed)
    for image, mask in raw.values():
        fg = image[mask]
        if fg.size:
            samples.append(fg[rng.integers(0, fg.size, size=min(fg.size, 10000))])
    if not samples:
        return {"kind": "ct-clip", "clip": [-1000.0, 400.0], "scale": "unit"}
    fg = np.concatenate(samples).astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(fg, [0.5, 99.5]))
    clipped = np.clip(fg, lo, hi)
    return {
        "kind": "ct-clip",
        "clip": [round(lo, 1), round(hi, 1)],
        "scale": "zscore",
        "mean": round(float(clipped.mean()), 3),
        "std": round(float(clipped.std()) or 1.0, 3),
    }


def complete_plan(ds: Dataset, plan: Plan, device: str) -> None:
    """Fill what the data decides (intensity normalisation, patch size) from up to PLAN_CASES training
    images at the model spacing: nnU-Net's dataset fingerprint."""
    if plan.normalization and plan.patch_zyx:
        return
    raw = CaseCache(ds, plan).raw_foreground(plan.train_cases[:PLAN_CASES])
    if not plan.normalization:
        plan.normalization = intensity_normalization(ds, plan, raw)
    if not plan.patch_zyx:
        shapes = [v[0].shape for v in raw.values()]
        divisor = 2 ** (len(plan.arch_kwargs["channels"]) - 1)
        budget = PATCH_BUDGET.get(device.split(":")[0], PATCH_BUDGET["cpu"])
        plan.patch_zyx = default_patch(np.median(shapes, axis=0), plan.spacing_zyx, budget, divisor)


# -- cache --------------------------------------------------------------------------------------


@dataclass
class CachedCase:
    """A case on the model grid, normalised, padded to at least one patch; what the sampler slices."""

    case_id: str
    image: np.ndarray  # float32 (z, y, x)
    label: np.ndarray | None  # uint8 label values 0..K (segmentation)
    centers_zyx: np.ndarray  # (n, 3) float voxel centres of nodules (detection)
    extents_zyx: np.ndarray  # (n, 3) float box extents in voxels (detection)
    foreground: np.ndarray  # (k, 3) int voxel centres of the objects foreground patches are centred near
    spacing_zyx: tuple[float, float, float]


def _nodules_of(case: Case) -> list:
    if case.nodules is not None:
        return case.nodules
    if case.label is not None:
        return nodules_from_instances(load_label(case.label))
    return []


def _component_centres(mask: np.ndarray) -> np.ndarray:
    """One voxel per connected object (its centre of mass, rounded): the sampler picks objects, not
    voxels, so a 6 mm nodule is as likely to be centred in a patch as a 30 mm one."""
    from scipy import ndimage

    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 3), dtype=np.int64)
    centres = ndimage.center_of_mass(mask, comp, np.arange(1, n + 1))
    return np.round(np.asarray(centres)).astype(np.int64).reshape(-1, 3)


def _pad_to(array: np.ndarray, patch, value) -> tuple[np.ndarray, np.ndarray]:
    before = [max(0, (p - s + 1) // 2) for s, p in zip(array.shape, patch, strict=True)]
    after = [max(0, p - s - b) for s, p, b in zip(array.shape, patch, before, strict=True)]
    if not any(before) and not any(after):
        return array, np.zeros(3)
    return np.pad(array, list(zip(before, after, strict=True)), constant_values=value), np.asarray(before, float)


class CaseCache:
    """Decoded, resampled, normalised volumes in memory: each file is read and preprocessed once."""

    def __init__(self, ds: Dataset, plan: Plan):
        self.ds = ds
        self.plan = plan
        self.cases: dict[str, CachedCase] = {}

    def raw_foreground(self, case_ids: list[str]) -> dict[str, tuple]:
        """Each training image at the model spacing with its foreground mask: for the intensity plan."""
        from radlens.inference.preprocess import Preprocess

        out = {}
        meta = {**self.plan.input_block(), "normalization": {"kind": "ct-clip", "clip": [-1e9, 1e9], "scale": "zscore"}}
        prep = Preprocess(InputSpec.from_json(meta))
        for case in self.ds.cases:
            if case.case_id not in case_ids:
                continue
            prepared = prep(load_image(case.image))
            mask = self._mask(case, prepared)
            out[case.case_id] = (prepared.image, mask)
        return out

    def _mask(self, case: Case, prepared) -> np.ndarray:
        if case.label is not None:
            return prepared.label_on_model_grid(load_label(case.label)) > 0
        mask = np.zeros(prepared.image.shape, dtype=bool)
        grid = prepared.grid
        zz, yy, xx = np.indices(mask.shape, sparse=True)
        for n in _nodules_of(case):
            c = grid.lps_to_index(n.center_lps)
            s = np.asarray(grid.spacing_zyx)
            d2 = ((zz - c[0]) * s[0]) ** 2 + ((yy - c[1]) * s[1]) ** 2 + ((xx - c[2]) * s[2]) ** 2
            mask |= d2 <= (n.diameter_mm / 2) ** 2
        return mask

    def load(self, case_ids: list[str], cancel: threading.Event | None = None) -> Generator[Progress, None, None]:
        from radlens.inference.preprocess import Preprocess

        prep = Preprocess(InputSpec.from_json(self.plan.input_block()))
        lut = np.zeros(max([*self.plan.label_values, 0]) + 1, dtype=np.uint8)
        for i, v in enumerate(self.plan.label_values, start=1):
            lut[v] = i
        todo = [c for c in self.ds.cases if c.case_id in case_ids and c.case_id not in self.cases]
        patch = self.plan.patch_zyx
        for k, case in enumerate(todo):
            check_cancel(cancel, "training")
            yield Progress(k, len(todo), f"caching {case.case_id}")
            prepared = prep(load_image(case.image))
            image, shift = _pad_to(prepared.image.astype(np.float32), patch, float(prepared.image.min()))
            label = None
            if self.plan.task == "segment":
                raw = prepared.label_on_model_grid(load_label(case.label))
                if self.ds.instances:  # objects numbered 1..N of one class
                    raw = (raw > 0).astype(np.int64) * self.plan.label_values[0]
                raw = np.where(raw < lut.size, raw, 0).astype(np.int64)
                label, _ = _pad_to(lut[raw], patch, 0)
            centers, extents = np.zeros((0, 3)), np.zeros((0, 3))
            if self.plan.task == "detect":
                nodules = _nodules_of(case)
                if nodules:
                    centers = np.asarray([prepared.grid.lps_to_index(n.center_lps) for n in nodules]) + shift
                    extents = np.asarray([[n.diameter_mm / s for s in prepared.grid.spacing_zyx] for n in nodules])
                foreground = np.round(centers).astype(np.int64).reshape(-1, 3)
            else:
                foreground = _component_centres(label > 0)
            self.cases[case.case_id] = CachedCase(
                case.case_id, np.ascontiguousarray(image), label, centers, extents, foreground,
                tuple(prepared.grid.spacing_zyx),
            )  # fmt: skip
        yield Progress(len(todo), len(todo), "cached")


# -- patches, targets, augmentation -------------------------------------------------------------


def detection_targets(centers, extents, origin, patch) -> np.ndarray:
    """CenterNet targets for one patch: (5, Z, Y, X) = heatmap, box extent z/y/x, size-loss mask.

    The heatmap is a Gaussian per nodule (sigma = extent/6 per axis, at least one voxel), exactly 1.0
    at the voxel nearest the centre; where Gaussians overlap the larger value wins. Extents are the
    box size in voxels of the model grid, the convention inference's decoder reads; they are
    supervised where the nodule's Gaussian is at least 0.5.
    """
    out = np.zeros((5, *patch), dtype=np.float32)
    if len(centers) == 0:
        return out
    zz, yy, xx = (np.arange(n, dtype=np.float32) for n in patch)
    for c, e in zip(np.asarray(centers) - origin, extents, strict=True):
        sigma = np.maximum(np.asarray(e) / 6.0, DETECTION_MIN_SIGMA)
        reach = 3 * sigma
        if np.any(c + reach < 0) or np.any(c - reach > np.asarray(patch) - 1):
            continue
        g = (
            np.exp(-((zz - c[0]) ** 2) / (2 * sigma[0] ** 2))[:, None, None]
            * np.exp(-((yy - c[1]) ** 2) / (2 * sigma[1] ** 2))[None, :, None]
            * np.exp(-((xx - c[2]) ** 2) / (2 * sigma[2] ** 2))[None, None, :]
        ).astype(np.float32)
        peak = np.round(c).astype(int)
        if np.all(peak >= 0) and np.all(peak < np.asarray(patch)):
            g[tuple(peak)] = 1.0
        wins = g > out[0]
        out[0] = np.where(wins, g, out[0])
        near = wins & (g >= 0.5)
        for k in range(3):
            out[1 + k][near] = e[k]
        out[4][near] = 1.0
    return out


class PatchSampler:
    """Draws batches of patches for one epoch from a seeded generator (foreground oversampled)."""

    def __init__(self, cache: CaseCache, plan: Plan, case_order: list[str], rng: np.random.Generator):
        self.cache = cache
        self.plan = plan
        self.order = case_order
        self.rng = rng
        self.patch = np.asarray(plan.patch_zyx)
        self.k = 0

    def _origin(self, c: CachedCase) -> np.ndarray:
        shape = np.asarray(c.image.shape)
        high = shape - self.patch
        if len(c.foreground) and self.rng.random() < self.plan.foreground_fraction:
            centre = c.foreground[self.rng.integers(len(c.foreground))]
            jitter = self.rng.integers(-(self.patch // 4), self.patch // 4 + 1)
            origin = centre - self.patch // 2 + jitter
        else:
            origin = np.asarray([self.rng.integers(0, h + 1) for h in high])
        return np.clip(origin, 0, high)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        images, targets = [], []
        for _ in range(self.plan.batch):
            c = self.cache.cases[self.order[self.k % len(self.order)]]
            self.k += 1
            o = self._origin(c)
            sl = tuple(slice(int(a), int(a + p)) for a, p in zip(o, self.patch, strict=True))
            images.append(c.image[sl][None])
            if self.plan.task == "segment":
                targets.append(c.label[sl][None].astype(np.int64))
            else:
                targets.append(detection_targets(c.centers_zyx, c.extents_zyx, o, self.patch))
        return np.stack(images), np.stack(targets)


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


class Prefetcher:
    """Builds the next batches in a background thread (numpy slicing and torch ops release the GIL),
    in a fixed order, so the result is the same as building them inline; records the time the
    training loop waits for data."""

    def __init__(self, make: Callable[[], tuple], count: int, depth: int = 2):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.count = count
        self.waited = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self._thread.start()

    def _run(self, make) -> None:
        for _ in range(self.count):
            try:
                item = make()
            except BaseException as err:  # handed to the consumer, raised there
                item = err
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator:
        for _ in range(self.count):
            t0 = time.perf_counter()
            item = self.queue.get()
            self.waited += time.perf_counter() - t0
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- losses -------------------------------------------------------------------------------------


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


def _start_sizes_at_the_mean(network, cache: CaseCache, plan: Plan) -> None:
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


# -- validation ---------------------------------------------------------------------------------


def predict_volume(network, image: np.ndarray, plan: Plan, device: str, final: bool = True) -> np.ndarray:
    """The network over a whole cached volume with inference's own sliding windows: (C, Z, Y, X) numpy.

    ``final``: exactly as the bundle will run (the plan's overlap, blend and mirroring). Otherwise
    the cheap way epochs are compared (as nnU-Net does): no mirroring (2ⁿ times fewer passes) and at
    most :data:`EPOCH_VALIDATION_OVERLAP` (overlap 0.5 has about 3× the windows of 0.25).
    """
    from radlens.imaging.progress import run_to_end
    from radlens.inference.engine import sliding_windows

    windows = sliding_windows(
        network,
        image,
        plan.patch_zyx,
        device=device,
        mirror_axes=plan.mirror_axes if final else (),
        overlap=plan.overlap if final else min(plan.overlap, EPOCH_VALIDATION_OVERLAP),
        blend=plan.blend,
    )
    out, _ = run_to_end(windows)
    return out.numpy()


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def validate(network, cache: CaseCache, plan: Plan, device: str, final: bool = True) -> tuple[float, dict]:
    """The validation metric (mean Dice or FROC CPM) on the validation split, and its details.

    ``final``: the bundle's own validation, windows run as the bundle runs them; otherwise an
    epoch's cheaper comparison (:func:`predict_volume`).
    """
    from radlens.training import metrics

    network.eval()
    if plan.task == "segment":
        dices = {}
        for cid in plan.validation_cases:
            c = cache.cases[cid]
            pred = predict_volume(network, c.image, plan, device, final).argmax(0)
            per = [metrics.dice(pred == i, c.label == i) for i in range(1, len(plan.labels) + 1)]
            dices[cid] = float(np.mean(per))
        network.train()
        return float(np.mean(list(dices.values()))), {"dice_per_case": dices}
    scans = []
    for cid in plan.validation_cases:
        c = cache.cases[cid]
        out = predict_volume(network, c.image, plan, device, final)
        scans.append(detection_scan(out, c))
    network.train()
    result = metrics.froc(scans)
    return result["cpm"], result


def choose_operating_point(network, cache: CaseCache, plan: Plan, device: str) -> tuple[dict, dict]:
    """A single-label segmenter's probability threshold and minimum component size, from validation.

    The threshold is the one with the best mean validation Dice; then the minimum component size
    (as a sphere diameter) with the best pooled per-lesion F1 at that threshold, so the specks a
    reader would have to step through go only when that does not cost real lesions. Ties keep the
    threshold nearest 0.5 and the smallest size. Returns (thresholds, the table behind the choice).
    """
    import torch

    from radlens.inference.postprocess import drop_small_components
    from radlens.training import metrics

    network.eval()
    fg, ref = {}, {}
    for cid in plan.validation_cases:
        c = cache.cases[cid]
        out = torch.as_tensor(predict_volume(network, c.image, plan, device)).float()
        fg[cid], ref[cid] = torch.softmax(out, dim=0)[1].numpy(), c.label == 1
    network.train()
    dice_at = {t: float(np.mean([metrics.dice(fg[c] >= t, ref[c]) for c in fg])) for t in PROBABILITY_GRID}
    threshold = max(PROBABILITY_GRID, key=lambda t: (round(dice_at[t], 4), -abs(t - 0.5)))
    voxel_mm3 = float(np.prod(plan.spacing_zyx))
    by_size = {}
    for d in MIN_COMPONENT_DIAMETER_GRID_MM:
        min_mm3 = math.pi / 6 * d**3
        masks = {c: drop_small_components(fg[c] >= threshold, min_mm3 / voxel_mm3) for c in fg}
        counts = [metrics.lesion_detection(masks[c], ref[c]) for c in fg]
        found, lesions = sum(k["lesions_found"] for k in counts), sum(k["lesions"] for k in counts)
        true, comps = sum(k["components_true"] for k in counts), sum(k["components"] for k in counts)
        sens = found / lesions if lesions else 1.0
        prec = true / comps if comps else 1.0
        by_size[d] = {
            "min_component_ml": round(min_mm3 / 1000, 5),
            "lesion_f1": 2 * sens * prec / (sens + prec) if sens + prec else 0.0,
            "lesion_sensitivity": sens,
            "lesion_precision": prec,
            "dice_mean": float(np.mean([metrics.dice(masks[c], ref[c]) for c in fg])),
        }
    size = max(MIN_COMPONENT_DIAMETER_GRID_MM, key=lambda d: (round(by_size[d]["lesion_f1"], 4), -d))
    thresholds = {"probability": threshold, "min_component_ml": by_size[size]["min_component_ml"]}
    table = {
        "dice_mean_by_probability": {f"{t:g}": v for t, v in dice_at.items()},
        "by_min_component_diameter_mm": {f"{d:g}": v for d, v in by_size.items()},
        "chosen": {**thresholds, "min_component_diameter_mm": size, **by_size[size]},
    }
    return thresholds, table


def model_grid_prepared(c: CachedCase):
    """A Prepared whose input grid is the model grid itself (origin 0, identity direction): decoded
    detections then come back in model voxels, and their ``center_lps`` in millimetres on that grid."""
    from radlens.imaging.volume import Volume
    from radlens.inference.preprocess import Prepared

    grid = Volume(c.image, spacing_zyx=c.spacing_zyx)
    return Prepared(c.image, grid, (0, 0, 0, *grid.shape_zyx), grid, grid)


def detection_scan(output: np.ndarray, c: CachedCase):
    """Decode a detector's output with inference's decoder into FROC candidates and references, in mm."""
    from radlens.inference.postprocess import decode_detections
    from radlens.training.metrics import Candidate, Nodule

    dets = decode_detections(output, model_grid_prepared(c), "validation", "nodule")
    spacing = np.asarray(c.spacing_zyx)
    candidates = [Candidate(tuple(d.center_lps), float(d.score)) for d in dets]
    nodules = [
        Nodule(tuple(ctr[::-1] * spacing[::-1]), float(np.mean(ext * spacing)))
        for ctr, ext in zip(c.centers_zyx, c.extents_zyx, strict=True)
    ]
    return candidates, nodules


# -- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(path: Path, network, optimizer, scaler, state: dict) -> None:
    """Weights, optimiser tensors and a JSON state in one safetensors file, atomically (no pickle)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    meta = {
        "state": json.dumps(state),
        "optim_groups": json.dumps(opt["param_groups"]),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}),
    }
    data = save(tensors, metadata=meta)
    with atomic_path(path, ".safetensors") as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # a checkpoint must survive a kill right after the rename


def load_checkpoint(path: Path, network, optimizer=None, scaler=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the JSON state."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if optimizer is not None:
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        device = next(network.parameters()).device
        for st in state.values():
            for key, value in st.items():
                st[key] = value if key == "step" else value.to(device)
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
    if scaler is not None and scaler.is_enabled():
        saved = json.loads(meta.get("scaler", "{}"))
        if saved:
            scaler.load_state_dict(saved)
    return json.loads(meta["state"])


# -- the run ------------------------------------------------------------------------------------


def optimisation_step(model, optimizer, scaler, loss_fn, img, tgt, device: str) -> float:
    """One forward/backward/update (AMP on CUDA); returns the loss, and skips the update when it is
    not finite so that the weights stay those of the last good step."""
    import torch

    img = img.to(device, non_blocking=True)
    tgt = tgt.to(device, non_blocking=True)
    with _autocast(device):
        loss = loss_fn(model(img), tgt)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, 12.0)
    scaler.step(optimizer)
    scaler.update()
    return value


@dataclass
class EpochReport:
    epoch: int
    loss: float
    metric: float | None
    lr: float
    seconds: float
    data_wait_fraction: float
    best: bool


def pick_device(requested: str) -> str:
    import torch

    if requested in ("auto", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("--device mps: no MPS device is available")
    return requested


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero: a pure function of the step (nothing to save)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _write_logs(out: Path, history: list[dict]) -> None:
    text = json.dumps(history, indent=1)
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    for name, content in ((LOG_JSON, text), (LOG_CSV, buf.getvalue())):
        write_text(out / name, content)


def train(
    args: argparse.Namespace,
    cancel: threading.Event | None = None,
    log: Callable[[str], None] = print,
) -> Generator[Progress, None, Path]:
    """The whole run as a job (design 3): yields Progress per iteration; returns the bundle folder."""
    import torch

    from radlens.inference.networks import build_network

    world, rank, local_rank = _dist_info()
    main = rank == 0
    task = args.task
    if task not in TASKS:
        raise TrainingError(f"radlens train {task}: only {' and '.join(TASKS)} are implemented")
    if not is_window_overlap(getattr(args, "overlap", DEFAULT_OVERLAP)):
        raise TrainingError(f"--overlap {args.overlap}: must be from 0 up to (not including) 1")
    device = pick_device(args.device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if device == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        if device == "cuda":
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
    out = Path(args.out)
    ckpt_dir = out / CHECKPOINTS
    resume_state = None
    if args.resume:
        if not (ckpt_dir / "last.safetensors").is_file():
            raise TrainingError(f"{ckpt_dir / 'last.safetensors'}: no checkpoint to resume from")
        from safetensors import safe_open

        with safe_open(str(ckpt_dir / "last.safetensors"), framework="pt") as f:
            resume_state = json.loads(f.metadata()["state"])

    ds = read_dataset(args.dataset, task)
    if resume_state is not None:
        plan = Plan(**resume_state["plan"])
        if args.epochs and args.epochs != plan.epochs:
            plan.epochs = int(args.epochs)
            plan.notes.append(f"epochs changed to {plan.epochs} on resume")
    else:
        plan = make_plan(ds, task, args, device.split(":")[0])
    missing = [c for c in plan.train_cases + plan.validation_cases if c not in {x.case_id for x in ds.cases}]
    if missing:
        raise TrainingError(f"{ds.root}: the checkpoint's cases {missing[:5]} are no longer in the dataset")
    complete_plan(ds, plan, device)
    cache = CaseCache(ds, plan)
    if main:
        log(("resuming: " if resume_state else "") + plan.describe())
    yield from cache.load(plan.train_cases + plan.validation_cases, cancel)

    torch.manual_seed(plan.seed)
    network = build_network(plan.arch, **plan.arch_kwargs)
    if task == "detect":
        _start_sizes_at_the_mean(network, cache, plan)
    network = network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    commands = [command_line()]  # a resumed run records every command that built it, in order
    best = -math.inf
    start_epoch = 0
    if resume_state is not None:
        load_checkpoint(ckpt_dir / "last.safetensors", network, optimizer, scaler)
        history = resume_state["history"]
        commands = [*resume_state.get("commands", []), command_line()]
        best = resume_state["best"] if resume_state["best"] is not None else -math.inf
        start_epoch = resume_state["epoch"] + 1
    model = network
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(network, device_ids=[local_rank] if device.startswith("cuda") else None)
    loss_fn = make_loss(task)
    total_steps = plan.epochs * plan.iterations
    warmup = min(plan.iterations, max(1, total_steps // 20))

    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(len(plan.train_cases)), num_replicas=world, rank=rank, shuffle=True, seed=plan.seed
    )
    for epoch in range(start_epoch, plan.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        order = [plan.train_cases[i] for i in sampler]
        rng = np.random.default_rng([plan.seed, epoch, rank])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        patches = PatchSampler(cache, plan, order, rng)

        def make(patches=patches, gen=gen):
            img, tgt = patches.next_batch()
            return augment(torch.from_numpy(img), torch.from_numpy(tgt), task, gen)

        prefetch = Prefetcher(make, plan.iterations)
        losses = []
        try:
            for it, (img, tgt) in enumerate(prefetch):
                step = epoch * plan.iterations + it
                lr = lr_at(step, total_steps, plan.lr, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                value = optimisation_step(model, optimizer, scaler, loss_fn, img, tgt, device)
                if not math.isfinite(value):
                    kept = ckpt_dir / "last.safetensors"
                    where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
                    raise TrainingError(
                        f"epoch {epoch + 1} iteration {it + 1}: loss is {value}; training stopped ({where}; "
                        f"try a lower --lr)"
                    )
                losses.append(value)
                check_cancel(cancel, "training")
                yield Progress(it + 1, plan.iterations, f"epoch {epoch + 1}/{plan.epochs} loss {np.mean(losses):.4f}",
                               preview={"epoch": epoch + 1, "loss": float(np.mean(losses))})  # fmt: skip
        finally:
            prefetch.close()
        seconds = time.perf_counter() - t0
        metric, is_best = None, False
        if main:
            last_epoch = epoch == plan.epochs - 1
            if plan.validation_cases and ((epoch + 1) % plan.val_every == 0 or last_epoch):
                metric, _ = validate(network, cache, plan, device, final=False)
                is_best = metric > best
            elif not plan.validation_cases:
                is_best = True
            if is_best:
                best = metric if metric is not None else best
            row = asdict(EpochReport(epoch + 1, float(np.mean(losses)), metric, lr, round(seconds, 2),
                                     round(prefetch.waited / max(seconds, 1e-9), 4), is_best))  # fmt: skip
            history.append(row)
            state = {
                "epoch": epoch,
                "best": best if math.isfinite(best) else None,
                "history": history,
                "plan": asdict(plan),
                "commands": commands,
            }
            if is_best:
                save_checkpoint(ckpt_dir / "best.safetensors", network, optimizer, scaler, state)
            save_checkpoint(ckpt_dir / "last.safetensors", network, optimizer, scaler, state)
            _write_logs(out, history)
            yield Progress(plan.iterations, plan.iterations, "epoch done", preview={"epoch_report": row})
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    if main:
        yield Progress(0, 1, "writing bundle")
        _write_bundle(out, ds, plan, network, cache, device, history, commands)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return out


def command_line() -> str:
    """The command as a user would retype it (recorded in bundles so results can be reproduced)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("radlens", "__main__.py", "cli.py"):
        argv[0] = "radlens"
    return shlex.join(argv)


def _write_bundle(
    out: Path, ds: Dataset, plan: Plan, network, cache: CaseCache, device: str, history, commands
) -> None:
    from radlens.inference.bundle import save_bundle

    best_path = out / CHECKPOINTS / "best.safetensors"
    if best_path.is_file():
        load_checkpoint(best_path, network)
    evaluation: dict = {}
    thresholds: dict = {}
    if plan.validation_cases:
        metric, details = validate(network, cache, plan, device)
        if plan.task == "detect":
            thresholds["score"] = suggest_threshold(details)
            at = froc_at_threshold(details, thresholds["score"])
            evaluation["validation"] = {"cases": len(plan.validation_cases), "cpm": metric, "froc": details, **at}
        else:
            evaluation["validation"] = {"cases": len(plan.validation_cases), "dice_mean": metric, **details}
            if len(plan.labels) == 1:
                thresholds, table = choose_operating_point(network, cache, plan, device)
                evaluation["validation"]["operating_point"] = table
    if plan.task == "detect":
        thresholds.setdefault("score", 0.5)
    else:
        thresholds.setdefault("probability", 0.5)
    name = out.resolve().name
    kind = "synthetic phantoms" if ds.synthetic else f"the dataset {ds.name}"
    meta = {
        "name": name,
        "version": "1.0.0",
        "task": TASKS[plan.task],
        "description": f"{plan.arch} {TASKS[plan.task]} of {', '.join(plan.labels)} ({ds.modality}), "
        f"trained by radlens train on {kind}",
        "labels": plan.labels,
        "arch": plan.arch,
        "arch_kwargs": plan.arch_kwargs,
        "input": plan.input_block(),
        "thresholds": thresholds,
        "training": {
            "dataset": str(ds.root),
            "dataset_name": ds.name,
            "layout": ds.layout,
            "synthetic": ds.synthetic,
            "data_command": ds.data_command,
            "command": commands[0],
            "resumed_with": commands[1:],
            "seed": plan.seed,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "epochs": plan.epochs,
            "iterations_per_epoch": plan.iterations,
            "batch": plan.batch,
            "lr": plan.lr,
            "split": {"train": plan.train_cases, "validation": plan.validation_cases},
            "final_loss": history[-1]["loss"] if history else None,
        },
        "evaluation": evaluation,
    }
    save_bundle(out, network, meta)


def froc_at_threshold(froc_result: dict, threshold: float) -> dict:
    """The operating point of a FROC curve at ``threshold`` (its sensitivity and FPs per scan)."""
    points = [p for p in froc_result["curve"] if p["threshold"] >= threshold]
    if not points:
        return {"threshold": threshold, "sensitivity": 0.0, "fps_per_scan": 0.0}
    p = min(points, key=lambda q: q["threshold"])
    return {"threshold": threshold, "sensitivity": p["sensitivity"], "fps_per_scan": p["fps_per_scan"]}


def suggest_threshold(froc_result: dict, fps_per_scan: float = 1.0) -> float:
    """The lowest score threshold whose false positives per scan stay within ``fps_per_scan``."""
    ok = [p["threshold"] for p in froc_result["curve"] if p["fps_per_scan"] <= fps_per_scan]
    return round(float(min(ok)), 4) if ok else 0.5


def train_command(args: argparse.Namespace) -> int:
    """CLI: a tqdm bar per epoch (loss and validation metric) on a terminal, one line per epoch otherwise."""
    _, rank, _ = _dist_info()
    show_bar = rank == 0 and sys.stderr.isatty()
    bar = None
    job = train(args, log=(lambda s: print(s, file=sys.stderr, flush=True)) if rank == 0 else (lambda s: None))
    try:
        while True:
            try:
                p = next(job)
            except StopIteration as stop:
                out = stop.value
                break
            if rank != 0 or not isinstance(p.preview, dict):
                continue
            if "epoch_report" in p.preview:
                r = p.preview["epoch_report"]
                metric = "-" if r["metric"] is None else f"{r['metric']:.4f}"
                text = f"epoch {r['epoch']}: loss {r['loss']:.4f} val {metric}{' (best)' if r['best'] else ''}"
                if bar is not None:
                    bar.set_postfix_str(f"loss {r['loss']:.4f} val {metric}")
                    bar.close()
                    bar = None
                else:
                    print(text, file=sys.stderr, flush=True)
            elif show_bar:
                from tqdm import tqdm

                if bar is None:
                    bar = tqdm(total=p.total, desc=f"epoch {p.preview['epoch']}", dynamic_ncols=True)
                bar.n = p.done
                bar.set_postfix_str(f"loss {p.preview['loss']:.4f}", refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    if rank == 0:
        print(f"bundle written: {out}", file=sys.stderr)
    return 0
