"""The plan: everything that decides a run, from the config and the data (nnU-Net's rules).

Made once (or read back from the checkpoint on resume), printed before training and recorded in
the bundle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from radlens.inference.metadata import DEFAULT_BLEND, DEFAULT_OVERLAP
from radlens.training.cache import CaseCache
from radlens.training.config import TASKS, VAL_FRACTION, TrainConfig
from radlens.training.datasets import Case, Dataset, load_image
from radlens.training.errors import TrainingError

# Voxels of one patch the default plan aims at (nnU-Net sizes patches from GPU memory the same way).
PATCH_BUDGET = {"cpu": 48 * 64 * 64, "cuda": 128 * 128 * 128}
FOREGROUND_FRACTION = 0.5  # nodules are small: half of the patches are centred near one
EPOCH_VALIDATION_OVERLAP = 0.25  # at most, for comparing epochs (the final validation uses the plan's)
PLAN_CASES = 20


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
    init: dict | None = None  # the bundle fine-tuned: {"path", "name", "sha256"}

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


def make_plan(ds: Dataset, config: TrainConfig, device: str) -> Plan:
    """A new run's plan; what the data still has to decide is filled by :func:`complete_plan`."""
    notes = []
    spacing = [float(s) for s in config.spacing] if config.spacing else _median_spacing(ds.train_cases)
    if not config.spacing:
        notes.append(f"spacing: median of the training images ({spacing} mm)")
    if config.task == "detect":
        labels, values = ["nodule"], [1]
    else:
        values = sorted(ds.labels)
        labels = [ds.labels[v] for v in values]
    if config.task == "detect":
        channels = config.channels or (16, 32, 64)
        arch, arch_kwargs = "centernet3d", {"channels": list(channels), "features": int(channels[0])}
    else:
        channels = config.channels or (16, 32, 64, 128)
        arch, arch_kwargs = "unet3d-seg", {"n_labels": len(labels), "channels": list(channels)}
    arch_kwargs["num_res_units"] = int(config.res_units)
    divisor = 2 ** (len(channels) - 1)
    train_ids, val_ids = split_cases([c.case_id for c in ds.train_cases], config.seed, config.val_fraction)
    plan = Plan(
        task=config.task,
        modality=ds.modality,
        labels=labels,
        label_values=values,
        spacing_zyx=spacing,
        patch_zyx=list(config.patch) if config.patch else [],
        normalization=fixed_window(config.clip) if config.clip else {},
        arch=arch,
        arch_kwargs=arch_kwargs,
        batch=int(config.batch or (2 if device == "cpu" else 4)),
        epochs=int(config.epochs or (20 if device == "cpu" else 200)),
        iterations=int(config.iterations or (50 if device == "cpu" else 250)),
        lr=float(config.lr),
        weight_decay=3e-5,
        seed=int(config.seed),
        foreground_fraction=FOREGROUND_FRACTION,
        train_cases=train_ids,
        validation_cases=val_ids,
        val_every=int(config.val_every),
        crop=_crop(config.crop, ds.modality),
        mirror_axes=sorted(set(config.mirror_axes)),
        overlap=float(config.overlap),
        blend=str(config.blend),
        notes=[*notes, f"patch divisor {divisor} (the network downsamples {len(channels) - 1} times)"],
    )
    return from_bundle(plan, config.init) if config.init is not None else plan


def from_bundle(plan: Plan, init) -> Plan:
    """Fine-tuning: the bundle's network and input (spacing, patch, normalisation, crop, windows) replace
    what the data would have decided; its labels must be the dataset's. The weights load in ``train``."""
    from radlens.inference.bundle import find_bundle, read_metadata

    folder = find_bundle(init)
    meta = read_metadata(folder)
    where = f"--init {init}"
    if meta.task != TASKS[plan.task]:
        raise TrainingError(f"{where}: a {meta.task} bundle cannot start a {TASKS[plan.task]} training")
    if meta.pipeline != "radlens":
        raise TrainingError(f"{where}: a bundle of the {meta.pipeline} pipeline; only the one-network bundles "
                            "radlens train writes can be fine-tuned")  # fmt: skip
    if plan.task == "segment" and list(meta.labels) != plan.labels:
        raise TrainingError(f"{where}: the bundle segments {list(meta.labels)}, the dataset labels {plan.labels}")
    if meta.input.modality != plan.modality:
        raise TrainingError(f"{where}: a {meta.input.modality} bundle, a {plan.modality} dataset")
    block = meta.document["input"]
    plan.arch, plan.arch_kwargs = meta.arch, dict(meta.arch_kwargs)
    plan.spacing_zyx = [float(v) for v in block["spacing_zyx"]]
    plan.patch_zyx = [int(v) for v in block["patch_zyx"]]
    plan.normalization = dict(block.get("normalization") or {})
    plan.crop = meta.input.crop
    plan.mirror_axes = list(meta.input.mirror_axes)
    plan.overlap, plan.blend = meta.input.overlap, meta.input.blend
    plan.init = {"path": str(folder), "name": meta.name, "sha256": meta.sha256}
    plan.notes = [f"fine-tuning {meta.name} ({folder}): its network, input and weights"]
    return plan


def _crop(asked: str | None, modality: str) -> str | None:
    if asked == "none" or modality != "CT":
        return None
    return asked or "body"


def fixed_window(clip) -> dict:
    """A CT window chosen by the user (``--clip``), scaled to [0, 1]: the same for every scan."""
    return {"kind": "ct-clip", "clip": [float(clip[0]), float(clip[1])], "scale": "unit"}


def resumed_plan(saved: dict, config: TrainConfig) -> Plan:
    """The checkpoint's plan; only the number of epochs may change on resume."""
    plan = Plan(**saved)
    if config.epochs and config.epochs != plan.epochs:
        plan.epochs = int(config.epochs)
        plan.notes.append(f"epochs changed to {plan.epochs} on resume")
    return plan


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
        return fixed_window((-1000.0, 400.0))
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
