"""``radlens train segment|detect``: a labelled folder → a model bundle that ``radlens infer`` runs.

Reads top to bottom like torchvision's reference script: plan (:mod:`radlens.training.plan`, defaults from
the data, nnU-Net's rules) → cache (:mod:`radlens.training.cache`, volumes preprocessed by inference's own
Preprocess, so what is trained is what runs) → network from inference's registry → optimiser →
resume (:mod:`radlens.training.checkpoint`) → epochs of sampled, augmented patches (:mod:`radlens.training.sampling`)
→ validation (:mod:`radlens.training.validation`) → checkpoints → bundle (:mod:`radlens.training.bundle_writer`).

Reproducibility: every random stream (patch sampler, augmentation) is seeded from
``(seed, epoch, rank)`` at the start of each epoch, and the learning rate is a pure function of the
step, so a run resumed from the checkpoint of epoch *k* replays epochs *k+1…* exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.inference.engine import autocast, select_device
from radlens.training import distributed
from radlens.training.bundle_writer import write_bundle
from radlens.training.cache import CaseCache
from radlens.training.checkpoint import CHECKPOINTS, load_checkpoint, read_state, save_checkpoint, write_logs
from radlens.training.config import TrainConfig, command_line
from radlens.training.datasets import read_dataset
from radlens.training.errors import TrainingError
from radlens.training.losses import make_loss, start_sizes_at_the_mean
from radlens.training.plan import Plan, complete_plan, make_plan, resumed_plan
from radlens.training.sampling import epoch_batches
from radlens.training.validation import validate


@dataclass
class EpochReport:
    epoch: int
    loss: float
    metric: float | None
    lr: float
    seconds: float
    data_wait_fraction: float
    best: bool


def training_device(requested: str) -> str:
    """Inference's choice of device, except that a device asked for and missing is refused rather
    than replaced by the CPU: a run sized for a GPU would not finish on it."""
    device, note = select_device(requested)
    if note:
        raise TrainingError(f"--device {requested}: no {requested.upper()} device is available")
    return device


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero: a pure function of the step (nothing to save)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def optimisation_step(model, optimizer, scaler, loss_fn, img, tgt, device: str) -> float:
    """One forward/backward/update (fp16 AMP on CUDA only: the GradScaler's, and a CPU's bf16 would
    change the CPU results); returns the loss, and skips the update when it is not finite so that
    the weights stay those of the last good step."""
    import torch

    img = img.to(device, non_blocking=True)
    tgt = tgt.to(device, non_blocking=True)
    with autocast(device, enabled=device.startswith("cuda")):
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


def run_epoch(
    epoch: int, plan: Plan, batches: Iterable, step: Callable, optimizer, last: Path, cancel: threading.Event | None
) -> Generator[Progress, None, tuple[list[float], float]]:
    """One epoch of optimisation steps (``step(img, tgt)`` → loss); returns its losses and last learning rate."""
    total_steps = plan.epochs * plan.iterations
    warmup = min(plan.iterations, max(1, total_steps // 20))
    losses: list[float] = []
    for it, (img, tgt) in enumerate(batches):
        lr = lr_at(epoch * plan.iterations + it, total_steps, plan.lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        value = step(img, tgt)
        if not math.isfinite(value):
            where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"epoch {epoch + 1} iteration {it + 1}: loss is {value}; training stopped ({where}; try a lower --lr)"
            )
        losses.append(value)
        check_cancel(cancel, "training")
        yield Progress(it + 1, plan.iterations, f"epoch {epoch + 1}/{plan.epochs} loss {np.mean(losses):.4f}",
                       preview={"epoch": epoch + 1, "loss": float(np.mean(losses))})  # fmt: skip
    return losses, lr


def train(
    config: TrainConfig,
    cancel: threading.Event | None = None,
    log: Callable[[str], None] = print,
) -> Generator[Progress, None, Path]:
    """The whole run as a job: yields Progress per iteration; returns the bundle folder."""
    import torch
    from torch.utils.data import DistributedSampler

    from radlens.inference.bundle import load_bundle
    from radlens.inference.networks import build_network

    world, rank, local_rank = distributed.ranks()
    main = rank == 0
    device = distributed.join(training_device(config.device), world, local_rank)
    out = Path(config.out)
    last, best_path = out / CHECKPOINTS / "last.safetensors", out / CHECKPOINTS / "best.safetensors"
    resume_state = read_state(last) if config.resume else None

    ds = read_dataset(config.dataset, config.task)
    if resume_state is not None:
        plan = resumed_plan(resume_state["plan"], config)
    else:
        plan = make_plan(ds, config, device.split(":")[0])
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
    if plan.init is not None and resume_state is None:  # fine-tuning: the bundle's verified weights, strictly
        network.load_state_dict(load_bundle(plan.init["path"]).network.state_dict(), strict=True)
    elif plan.task == "detect":
        start_sizes_at_the_mean(network, cache, plan)
    network = network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))
    history: list[dict] = []
    commands = [command_line()]  # a resumed run records every command that built it, in order
    best = -math.inf
    start_epoch = 0
    if resume_state is not None:
        load_checkpoint(last, network, optimizer, scaler)
        history = resume_state["history"]
        commands = [*resume_state.get("commands", []), command_line()]
        best = resume_state["best"] if resume_state["best"] is not None else -math.inf
        start_epoch = resume_state["epoch"] + 1
    model = distributed.wrap(network, device, world, local_rank)
    loss_fn = make_loss(plan.task)

    def step(img, tgt) -> float:
        return optimisation_step(model, optimizer, scaler, loss_fn, img, tgt, device)

    sampler = DistributedSampler(range(len(plan.train_cases)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=plan.seed)  # fmt: skip
    for epoch in range(start_epoch, plan.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        rng = np.random.default_rng([plan.seed, epoch, rank])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batches = epoch_batches(cache, plan, [plan.train_cases[i] for i in sampler], rng, gen, plan.iterations)
        try:
            losses, lr = yield from run_epoch(epoch, plan, batches, step, optimizer, last, cancel)
        finally:
            batches.close()
        seconds = time.perf_counter() - t0
        if main:
            metric, is_best = None, False
            if plan.validation_cases and ((epoch + 1) % plan.val_every == 0 or epoch == plan.epochs - 1):
                metric, _ = validate(network, cache, plan, device, final=False)
                is_best = metric > best
            elif not plan.validation_cases:
                is_best = True
            if is_best:
                best = metric if metric is not None else best
            row = asdict(EpochReport(epoch + 1, float(np.mean(losses)), metric, lr, round(seconds, 2),
                                     round(batches.waited / max(seconds, 1e-9), 4), is_best))  # fmt: skip
            history.append(row)
            state = {"epoch": epoch, "best": best if math.isfinite(best) else None, "history": history,
                     "plan": asdict(plan), "commands": commands}  # fmt: skip
            if is_best:
                save_checkpoint(best_path, network, optimizer, scaler, state)
            save_checkpoint(last, network, optimizer, scaler, state)
            write_logs(out, history)
            yield Progress(plan.iterations, plan.iterations, "epoch done", preview={"epoch_report": row})
        distributed.barrier(world)
    if main:
        yield Progress(0, 1, "writing bundle")
        write_bundle(out, ds, plan, network, cache, device, history, commands)
    distributed.leave(world)
    return out
