"""The case cache: each volume read and preprocessed once, by inference's own
:class:`~radlens.inference.preprocess.Preprocess`, so what is trained is what runs."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.inference.metadata import InputSpec
from radlens.training.datasets import Case, Dataset, load_image, load_label, nodules_from_instances

if TYPE_CHECKING:
    from radlens.training.plan import Plan


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

    from radlens.inference.postprocess import label_components

    comp, n = label_components(mask)
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
