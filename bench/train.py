"""Training throughput: RadLens's data path against a plain MONAI pipeline, same network, same batch.

Writes (once per run, in a temporary folder) a SYNTHETIC phantom set with ``radlens phantom``'s
generator, then, in one process and alternating for ``--rounds`` rounds, times ``--iterations``
optimisation steps of the default detector and segmenter fed by:

- ``radlens``: the cache, foreground patch sampler, torch augmentation and prefetch thread of
  ``training.sampling`` (what ``radlens train`` runs);
- ``monai``: ``CacheDataset`` (LoadImaged, EnsureChannelFirstd, Spacingd, the same intensity
  normalisation) + ``RandCropByPosNegLabeld`` + flips, 90° turns, intensity scale/shift and noise,
  through a ``ThreadDataLoader`` (MONAI's recommended loader for cached data).

Both use the same step (``training.train.optimisation_step``), loss and network. Reported per
pipeline: iterations/s (median over rounds), the fraction of the wall time spent waiting for a batch,
and the cache build time. Prints one JSON object. Numbers from a shared machine are noisy.
Run: ``.venv/bin/python bench/train.py [--iterations 20 --rounds 3 --threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from radlens.cli import build_parser
from radlens.imaging.phantom import iter_write_phantoms
from radlens.imaging.progress import run_to_end
from radlens.training.cache import CaseCache
from radlens.training.cli import train_config
from radlens.training.datasets import read_dataset
from radlens.training.losses import make_loss
from radlens.training.plan import complete_plan, make_plan
from radlens.training.sampling import detection_targets, epoch_batches
from radlens.training.train import optimisation_step


def radlens_pipeline(ds, plan):
    """(batches iterator factory, cache seconds) for radlens train's own data path."""
    import torch

    t0 = time.perf_counter()
    cache = CaseCache(ds, plan)
    run_to_end(cache.load(plan.train_cases))
    seconds = time.perf_counter() - t0

    def batches(n, seed):
        rng = np.random.default_rng(seed)
        return epoch_batches(cache, plan, plan.train_cases, rng, torch.Generator().manual_seed(seed), n)

    return batches, seconds, cache


def _load_meta_tensor(path: str):
    """MONAI's readers need nibabel or itk (not installed): read through SimpleITK, keep (z, y, x) order,
    and give MONAI the affine of that index order so Spacingd resamples in millimetres."""
    from monai.data import MetaTensor

    from radlens.imaging.volume_io import read_volume

    v = read_volume(path)
    return MetaTensor(v.array[None].astype(np.float32), affine=v.affine_lps[:, [2, 1, 0, 3]])


def monai_pipeline(ds, plan):
    """The same patches and augmentations the usual MONAI way; detector targets from the cropped instances."""
    import torch
    from monai import transforms as mt
    from monai.data import CacheDataset, ThreadDataLoader
    from scipy import ndimage

    norm = plan.normalization
    keys = ["image", "label"]
    steps = [
        mt.Lambdad(keys=keys, func=_load_meta_tensor),
        mt.Spacingd(keys=keys, pixdim=plan.spacing_zyx, mode=("bilinear", "nearest")),
    ]
    if norm["kind"] == "ct-clip":
        lo, hi = norm["clip"]
        steps += [
            mt.ThresholdIntensityd(keys="image", threshold=hi, above=False, cval=hi),
            mt.ThresholdIntensityd(keys="image", threshold=lo, above=True, cval=lo),
            mt.NormalizeIntensityd(keys="image", subtrahend=norm.get("mean", 0.0), divisor=norm.get("std", 1.0)),
        ]
    else:
        steps.append(mt.NormalizeIntensityd(keys="image", nonzero=True))
    steps.append(mt.SpatialPadd(keys=keys, spatial_size=plan.patch_zyx))
    random = [
        mt.RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=plan.patch_zyx, pos=1, neg=1, num_samples=plan.batch
        ),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
        mt.RandRotate90d(keys=keys, prob=0.5, spatial_axes=(1, 2)),
        mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        mt.RandGaussianNoised(keys="image", prob=0.3, std=0.05),
    ]
    files = [{"image": str(c.image), "label": str(c.label)} for c in ds.cases if c.case_id in plan.train_cases]
    t0 = time.perf_counter()
    data = CacheDataset(files, mt.Compose([*steps, *random]), cache_rate=1.0, num_workers=0, progress=False)
    seconds = time.perf_counter() - t0

    def to_targets(batch):
        img = batch["image"].as_tensor().float()
        lab = batch["label"].as_tensor()
        if plan.task == "segment":
            return img, (lab > 0).long()
        targets = []
        for b in range(lab.shape[0]):
            inst = lab[b, 0].numpy().astype(np.int32)
            ids = [int(v) for v in np.unique(inst) if v > 0]
            centres = np.asarray(ndimage.center_of_mass(inst > 0, inst, ids)).reshape(-1, 3)
            boxes = [s for s in ndimage.find_objects(inst) if s is not None]
            extents = np.asarray([[s.stop - s.start for s in sl] for sl in boxes], dtype=float).reshape(-1, 3)
            targets.append(detection_targets(centres, extents, np.zeros(3), plan.patch_zyx))
        return img, torch.from_numpy(np.stack(targets))

    def batches(n, seed):
        data.transform.set_random_state(seed)
        return _Timed(ThreadDataLoader(data, batch_size=1, shuffle=True, num_workers=0), n, to_targets)

    return batches, seconds


class _Timed:
    """``n`` batches from a loader (restarting it at the end of an epoch), timing every fetch."""

    def __init__(self, loader, n, convert):
        self.loader, self.n, self.convert = loader, n, convert
        self.waited = 0.0

    def __iter__(self):
        it = iter(self.loader)
        for _ in range(self.n):
            t = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                it = iter(self.loader)
                batch = next(it)
            out = self.convert(batch)
            self.waited += time.perf_counter() - t
            yield out

    def close(self):
        """Nothing runs in the background."""


def run(pipeline_batches, plan, n, seed, device="cpu"):
    import torch

    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    network = build_network(plan.arch, **plan.arch_kwargs)
    optimizer = torch.optim.AdamW(network.parameters(), lr=plan.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss_fn = make_loss(plan.task)
    batches = pipeline_batches(n + 1, seed)
    it = iter(batches)
    img, tgt = next(it)  # warm-up step, not timed
    optimisation_step(network, optimizer, scaler, loss_fn, img, tgt, device)
    batches.waited = 0.0
    t0 = time.perf_counter()
    for img, tgt in it:
        optimisation_step(network, optimizer, scaler, loss_fn, img, tgt, device)
    wall = time.perf_counter() - t0
    batches.close()
    return {"its_per_s": n / wall, "wait_fraction": batches.waited / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 160, 160), help="phantom grid (z y x)")
    opts = ap.parse_args()
    import torch

    torch.set_num_threads(opts.threads)
    result = {"machine": "shared CPU (numbers are noisy)", "torch_threads": opts.threads, "iterations": opts.iterations}
    with tempfile.TemporaryDirectory() as tmp:
        root = run_to_end(
            iter_write_phantoms(Path(tmp) / "chest", kind="chest-ct", cases=opts.cases, seed=7, shape_zyx=opts.shape)
        )
        for task in ("detect", "segment"):
            argv = ["train", task, str(root), "--out", str(Path(tmp) / task), "--patch", "32", "64", "64",
                    "--channels", "8", "16", "32", "64", "--res-units", "0", "--val-fraction", "0.01"]  # fmt: skip
            config = train_config(build_parser().parse_args(argv))
            ds = read_dataset(root, task)
            plan = make_plan(ds, config, "cpu")
            plan.train_cases = [c.case_id for c in ds.cases]
            complete_plan(ds, plan, "cpu")
            ours, ours_cache, _ = radlens_pipeline(ds, plan)
            theirs, theirs_cache = monai_pipeline(ds, plan)
            rounds = {"radlens": [], "monai": []}
            for r in range(opts.rounds):
                rounds["radlens"].append(run(ours, plan, opts.iterations, r))
                rounds["monai"].append(run(theirs, plan, opts.iterations, r))
            summary = {}
            for name, rs in rounds.items():
                summary[name] = {
                    "its_per_s": round(statistics.median(x["its_per_s"] for x in rs), 3),
                    "wait_fraction": round(statistics.median(x["wait_fraction"] for x in rs), 4),
                }
            summary["radlens"]["cache_s"] = round(ours_cache, 2)
            summary["monai"]["cache_s"] = round(theirs_cache, 2)
            summary["speed_ratio_radlens_over_monai"] = round(
                summary["radlens"]["its_per_s"] / summary["monai"]["its_per_s"], 3
            )
            summary["network"] = {"arch": plan.arch, **plan.arch_kwargs}
            summary["batch"], summary["patch_zyx"] = plan.batch, plan.patch_zyx
            result[task] = summary
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
