"""Nodule candidates of a chest CT from shape alone: the first stage of a two-stage detector.

Why a stage without learning: a network trained on synthetic chests learns their textures too, and
then misses the ground-glass or the juxta-vascular nodule a real scan or another generator draws
differently. What every nodule shares is geometry: a compact opacity, brighter than the lung around
it, whatever its density, edge or neighbours. A scale-normalised Laplacian of Gaussian finds such
blobs at every size from 3 mm to a 5 cm mass (σ ≈ d / 2√3), and the Hessian's eigenvalues tell a
blob (three strong curvatures) from a vessel (two) or a fissure or the pleura (one). The LUNA16
leaders work this way: a sensitive candidate stage, then a classifier that rejects the false
positives (:mod:`radlens.inference.patches` and the ``nodule-classifier3d`` network).

Input: the normalised image on the detector's isotropic grid (``Prepared.image``, 0..1 over a fixed
HU window). Large scales run on block-averaged copies (2 and 4 voxels), so the whole search costs a
few seconds on a chest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from radlens.imaging.regions import cut_bridges

# (downsampling factor, σ in voxels of the isotropic input grid): blob diameters ≈ 3.5σ mm at 1 mm.
SCALES = ((1, (0.9, 1.3)), (2, (1.9, 2.7, 3.8)), (4, (5.4, 7.6, 10.8, 15.0)))
MIN_RESPONSE = 0.015  # normalised LoG, in units of the HU window (0.015 × 1400 HU ≈ 21 HU)
MAX_CANDIDATES = 800
SHAPE_FULL = 0.5  # a first-stage score (normalised LoG × blobness) at which a blob is as nodule-like as any
AIR_BELOW = 0.35  # normalised value under which a voxel counts as aerated lung (≈ -510 HU for -1000..400)


@dataclass(frozen=True)
class Candidates:
    """Blob candidates on the model grid: centres (N, 3) in voxels, diameters in voxels, scores."""

    centers_zyx: np.ndarray
    diameters: np.ndarray
    response: np.ndarray
    blobness: np.ndarray

    def __len__(self) -> int:
        return len(self.response)

    @property
    def score(self) -> np.ndarray:
        """Ranking of the candidate stage: blob strength, discounted for tube- and plate-like shapes.

        Shape counts twice (squared) because strength favours density: ground glass (-700..-400 HU) has a
        third of a solid nodule's LoG response, so a linear discount ranked it behind a thousand vessel
        junctions and the candidate limit dropped it."""
        return self.response * (0.1 + self.blobness) ** 2

    def subset(self, keep) -> Candidates:
        return Candidates(self.centers_zyx[keep], self.diameters[keep], self.response[keep], self.blobness[keep])


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    pad = [(0, (-n) % factor) for n in image.shape]
    a = np.pad(image, pad, mode="edge")
    z, y, x = (n // factor for n in a.shape)
    return a.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def _laplacian(g: np.ndarray) -> np.ndarray:
    """The 7-point Laplacian by slicing (0 on the border; scipy's generic filter is ~20× slower)."""
    out = np.zeros_like(g)
    o = out[1:-1, 1:-1, 1:-1]
    np.add(g[2:, 1:-1, 1:-1], g[:-2, 1:-1, 1:-1], out=o)
    o += g[1:-1, 2:, 1:-1]
    o += g[1:-1, :-2, 1:-1]
    o += g[1:-1, 1:-1, 2:]
    o += g[1:-1, 1:-1, :-2]
    o -= 6 * g[1:-1, 1:-1, 1:-1]
    return out


def _peaks(response: np.ndarray, floor: float) -> np.ndarray:
    """(N, 3) inner voxels above ``floor`` that are the maximum of their 3×3×3 neighbourhood
    (a separable maximum by slicing: a fraction of scipy's maximum filter)."""
    r = response
    m = np.maximum(np.maximum(r[:-2], r[1:-1]), r[2:])
    m = np.maximum(np.maximum(m[:, :-2], m[:, 1:-1]), m[:, 2:])
    m = np.maximum(np.maximum(m[:, :, :-2], m[:, :, 1:-1]), m[:, :, 2:])
    inner = r[1:-1, 1:-1, 1:-1]
    return np.argwhere((inner > floor) & (inner >= m)) + 1


def _hessian_at(smoothed: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(N, 3, 3) Hessians by central differences of a smoothed image at integer points (clamped to the edge)."""
    shape = np.asarray(smoothed.shape)
    p = np.clip(idx, 1, shape - 2)
    pad = np.pad(smoothed, 1, mode="edge")
    q = p + 1

    def at(dz, dy, dx):
        return pad[q[:, 0] + dz, q[:, 1] + dy, q[:, 2] + dx]

    c = at(0, 0, 0)
    h = np.empty((len(p), 3, 3), dtype=np.float64)
    unit = np.eye(3, dtype=int)
    for a in range(3):
        e = unit[a]
        h[:, a, a] = at(*e) + at(*-e) - 2 * c
        for b in range(a + 1, 3):
            f = unit[b]
            h[:, a, b] = h[:, b, a] = (at(*(e + f)) - at(*(e - f)) - at(*(f - e)) + at(*(-e - f))) / 4
    return h


def find_candidates(
    image: np.ndarray,
    near_lungs=None,
    *,
    min_response: float = MIN_RESPONSE,
    max_candidates: int = MAX_CANDIDATES,
) -> Candidates:
    """Bright blobs of every nodule size in a normalised isotropic image, strongest first.

    ``near_lungs(centers_zyx, diameters) -> bool mask``: keeps a chest detector's candidates near
    aerated lung (the engine's lung mask); None keeps every blob. Peaks of the scale-normalised LoG
    are merged across scales (a weaker peak inside a stronger blob is the same object).
    """
    found = []
    # A nodule sits in or on the lung: some aerated lung lies within a centimetre or two of its centre.
    air_factor = 4
    air = ndimage.gaussian_filter((_downsample(image, air_factor) < AIR_BELOW).astype(np.float32), 2.0, truncate=3)
    air_limit = np.asarray(air.shape) - 1
    for factor, sigmas in SCALES:
        img = _downsample(image, factor)
        if min(img.shape) < 3:
            continue
        for s in sigmas:
            sv = s / factor
            g = ndimage.gaussian_filter(img, sv, truncate=3, mode="nearest")
            r = _laplacian(g)
            r *= -(sv * sv)  # σ²·LoG: the same height for a blob of any size
            idx = _peaks(r, min_response)
            coarse = np.clip((idx * factor) // air_factor, 0, air_limit)
            idx = idx[air[tuple(coarse.T)] > 0.02] if len(idx) else idx
            if not len(idx):
                continue
            eig = np.linalg.eigvalsh(_hessian_at(g, idx))  # ascending: most negative first
            strong = np.maximum(-eig[:, 0], 1e-9)
            # Blob: all three curvatures negative and alike; a tube has one near 0, a plate two.
            blob = np.clip(-eig[:, 2], 0, None) / strong
            centres = idx * factor + (factor - 1) / 2.0
            found.append((centres, np.full(len(idx), s * 2 * np.sqrt(3)), r[tuple(idx.T)], blob))
    if not found:
        empty = np.zeros((0,), np.float64)
        return Candidates(np.zeros((0, 3)), empty, empty, empty)
    cand = Candidates(*(np.concatenate(parts) for parts in zip(*found, strict=True)))
    if near_lungs is not None and len(cand):
        cand = cand.subset(np.asarray(near_lungs(cand.centers_zyx, cand.diameters), dtype=bool))
    return merge_across_scales(cand, max_candidates)


def near_lungs(prepared, lungs):
    """The ``near_lungs`` test of :func:`find_candidates` for a prepared CT and its lungs (None: no gate)."""
    if lungs is None:
        return None
    return lambda centres, diameters: lungs.touches(prepared.grid.index_to_lps(centres), diameters)


def merge_across_scales(cand: Candidates, max_candidates: int = MAX_CANDIDATES) -> Candidates:
    """Greedy non-maximum suppression: a weaker candidate whose own core (0.8 × its radius) holds a
    stronger one's centre is the same object; a small nodule beside a large vessel is not."""
    if not len(cand):
        return cand
    order = np.argsort(-cand.score, kind="stable")
    c = cand.subset(order)
    tree = cKDTree(c.centers_zyx)
    alive = np.ones(len(c), dtype=bool)
    kept = []
    radius = c.diameters / 2
    for i in range(len(c)):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) >= max_candidates:
            break
        near = np.asarray(tree.query_ball_point(c.centers_zyx[i], 0.8 * radius.max()), dtype=int)
        dist = np.linalg.norm(c.centers_zyx[near] - c.centers_zyx[i], axis=1)
        alive[near[dist < 0.8 * radius[near]]] = False
    return c.subset(np.asarray(kept, dtype=int))


OBJECT_LEVEL = 0.5  # an object's edge: half-way from the lung around it to its own peak
OBJECT_MIN_STEP = 0.07  # a peak less than this above the lung (≈ 100 HU) traces nothing
OBJECT_MARGIN = 20  # voxels around a detection's radius within which its object is traced (1 mm grid)
OBJECT_CUT = 1  # opening radius (voxels) that cuts an object from the vessels and wall it touches
OBJECTS_TRACED = 40  # the strongest detections whose objects are traced; weaker ones stay as they are


def one_per_object(
    image: np.ndarray, centers_zyx: np.ndarray, diameters: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the candidates to report, strongest first; their diameters): a weaker candidate whose
    centre lies in the object of a stronger reported one is that object again, seen from its rim or at
    another scale. The object is the connected opacity around the stronger one's centre, its edge
    half-way from the lung to its peak (so ground glass is traced at its own level), cut from thin
    vessels by an opening and, where it narrows, from what it touches (``cut_bridges``, so a nodule that
    a vessel joins to it stays its own). A reported candidate's diameter grows to its object's mean extent when the
    object lies whole in the traced box (a nodule on its own, not the wall or a vessel tree it touches).

    Why: the blob stage fires all around a large or lobulated nodule, and the classifier rightly calls
    each of those a nodule, so a 25 mm nodule drew a dozen boxes and a scan's second lesion fell out of
    the reader's top three.
    """
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(scores), dtype=bool)
    kept: list[int] = []
    sizes = np.asarray(diameters, dtype=np.float64).copy()
    cross = ndimage.generate_binary_structure(3, 1)
    for i in order:
        if not alive[i]:
            continue
        kept.append(int(i))
        if len(kept) > OBJECTS_TRACED:
            continue
        c = np.rint(centers_zyx[i]).astype(int)
        h = int(np.ceil(diameters[i] / 2)) + OBJECT_MARGIN
        lo = np.maximum(c - h, 0)
        hi = np.minimum(c + h + 1, image.shape)
        crop = ndimage.gaussian_filter(image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], 1.0)
        r = max(1, int(diameters[i] // 4))
        core = tuple(slice(max(0, v - r), v + r + 1) for v in c - lo)
        lung, peak = float(np.percentile(crop, 20)), float(crop[core].max())
        if peak - lung < OBJECT_MIN_STEP:
            continue
        above = ndimage.binary_opening(crop > lung + OBJECT_LEVEL * (peak - lung), cross, iterations=OBJECT_CUT)
        labels, _ = ndimage.label(above)
        ids = np.unique(labels[core][labels[core] > 0])
        if not ids.size:
            continue
        obj = cut_bridges(np.isin(labels, ids), (1.0, 1.0, 1.0), np.clip(c - lo, 0, np.asarray(crop.shape) - 1))
        idx = np.flatnonzero(np.all((centers_zyx >= lo) & (centers_zyx < hi - 0.5), axis=1) & alive)
        local = np.clip(np.rint(centers_zyx[idx] - lo).astype(int), 0, np.asarray(crop.shape) - 1)
        alive[idx[obj[local[:, 0], local[:, 1], local[:, 2]]]] = False
        (box,) = ndimage.find_objects(obj.astype(np.uint8)) or (None,)
        if box and all(b.start > 0 and b.stop < n for b, n in zip(box, obj.shape, strict=True)):  # whole in the box
            sizes[i] = max(sizes[i], float(np.mean([b.stop - b.start for b in box])))
    kept_at = np.asarray(kept, dtype=int)
    return kept_at, sizes[kept_at]


PATCH = 32  # voxels per side of each of the classifier's two views
COARSE = 2  # the context view's voxels are this many of the fine grid's (32 mm and 64 mm across at 1 mm)


class CandidateViews:
    """Each candidate's two views, cut batch by batch from the image padded once (``views[a:b]``): the
    fine grid, and a coarse one (blocks of ``COARSE`` voxels) that holds a mass and its surroundings;
    outside the image, its minimum. Cut on demand, the classifier's input never holds every candidate at
    once (800 candidates × 2 views × 32³ floats = 210 MB, more than the CT itself)."""

    def __init__(self, image: np.ndarray, centers_zyx: np.ndarray):
        half = PATCH // 2
        fill = float(image.min()) if image.size else 0.0
        self._fine = np.pad(image, half, mode="constant", constant_values=fill)
        self._coarse = np.pad(_downsample(image, COARSE), half, mode="constant", constant_values=fill)
        self._last_fine = np.asarray(image.shape) - 1
        self._last_coarse = np.asarray(self._coarse.shape) - 2 * half - 1  # the unpadded coarse grid's last voxel
        self.centers_zyx = np.asarray(centers_zyx, dtype=np.float64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.centers_zyx)

    def __getitem__(self, which: slice) -> np.ndarray:
        """(n, 2, PATCH, PATCH, PATCH) float32 views of the candidates ``which`` selects."""
        centres = self.centers_zyx[which]
        out = np.empty((len(centres), 2, PATCH, PATCH, PATCH), dtype=np.float32)
        for i, c in enumerate(centres):
            f = np.clip(np.rint(c).astype(int), 0, self._last_fine)
            k = np.clip(np.rint((c - (COARSE - 1) / 2) / COARSE).astype(int), 0, self._last_coarse)
            out[i, 0] = self._fine[f[0] : f[0] + PATCH, f[1] : f[1] + PATCH, f[2] : f[2] + PATCH]
            out[i, 1] = self._coarse[k[0] : k[0] + PATCH, k[1] : k[1] + PATCH, k[2] : k[2] + PATCH]
        return out


def patches(image: np.ndarray, centers_zyx: np.ndarray) -> np.ndarray:
    """Every candidate's two views at once, (N, 2, PATCH, PATCH, PATCH) float32 (see CandidateViews)."""
    return CandidateViews(image, centers_zyx)[:]


def final_scores(scoring: str, probabilities: np.ndarray, shape_scores: np.ndarray) -> np.ndarray:
    """A two-stage detector's score per candidate (``scoring`` from metadata.SCORINGS).

    ``classifier``: the classifier's probability. ``classifier×shape``: that probability discounted by
    how weak a blob the first stage saw (``Candidates.score`` / SHAPE_FULL, at most 1). Why: the first
    stage knows nothing of one generator's textures, so on scans unlike the training data its ranking
    holds up where a classifier's confidence may not; training picks the rule on its validation cases.
    """
    if scoring == "classifier":
        return probabilities
    return probabilities * np.minimum(1.0, np.asarray(shape_scores, dtype=np.float32) / SHAPE_FULL)


CPU_BATCH = 8  # candidates per forward pass on a CPU: as fast as 128 there (measured), at a fifth of the memory
GPU_BATCH = 128


def classify(
    network,
    views,
    *,
    device: str = "cpu",
    batch: int | None = None,
    cancel=None,
    what: str = "model",
    mirror_axes: Sequence[int] = (),
):
    """Probability that each candidate is a nodule (a generator yielding Progress; returns an (N,) array).
    ``views``: an (N, 2, PATCH, PATCH, PATCH) array or a CandidateViews, read ``batch`` at a time.
    ``mirror_axes`` (0 = z): test-time mirroring as the bundle's ``input.mirror_axes`` declares it, the
    logits averaged over every combination of flips of those axes, as sliding windows average theirs."""
    import torch

    from radlens.imaging.progress import Progress, check_cancel
    from radlens.inference.engine import flip_combinations

    batch = batch or (GPU_BATCH if str(device).startswith("cuda") else CPU_BATCH)
    flips = flip_combinations([a + 2 for a in mirror_axes])  # candidate and view come first
    network.eval().to(device)
    out = np.zeros(len(views), dtype=np.float32)
    for start in range(0, len(views), batch):
        check_cancel(cancel, what)
        x = torch.from_numpy(views[start : start + batch]).to(device)
        with torch.inference_mode():
            logits = sum(network(x.flip(dims) if dims else x).float()[:, 0] for dims in flips) / len(flips)
            out[start : start + len(x)] = torch.sigmoid(logits).cpu().numpy()
        yield Progress(min(len(views), start + batch), len(views), "")
    return out
