"""Patches for one epoch: drawn from the cache by a seeded sampler (foreground oversampled), with
their CenterNet targets for a detector, built ahead of the loop by a background thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from radlens.training.cache import CachedCase, CaseCache
from radlens.training.plan import Plan

DETECTION_MIN_SIGMA = 1.0  # voxels; the centre heatmap's narrowest Gaussian


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


def epoch_batches(
    cache: CaseCache, plan: Plan, case_order: list[str], rng: np.random.Generator, generator, count: int
) -> Prefetcher:
    """``count`` augmented batches, patches drawn from ``rng`` and augmentation from the torch
    ``generator``, built ahead of the loop (close it when done)."""
    import torch

    from radlens.training.augment import augment

    patches = PatchSampler(cache, plan, case_order, rng)

    def make():
        img, tgt = patches.next_batch()
        return augment(torch.from_numpy(img), torch.from_numpy(tgt), plan.task, generator)

    return Prefetcher(make, count)
