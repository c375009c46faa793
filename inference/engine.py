"""The inference engine: bundles run on a Volume in memory, as a generator.

(docs/architecture.md, "Long work and threads")

``iter_infer`` yields :class:`~radlens.imaging.progress.Progress` between window batches (and checks the
cancel event there, so a cancel lands within one batch of windows), yields each model's findings
as a ``preview`` as soon as that model is done (the viewer streams them into its overlays), and
returns the merged :class:`~radlens.inference.findings.Findings`. No Qt; torch is imported on first use.

Sliding windows are our own rather than ``monai.inferers.sliding_window_inference``: the same
window grid and the same blends (constant, or MONAI's and nnU-Net's Gaussian with σ = patch/8,
which trusts a window's centre over its edges), but the blend weights are the outer product of
three 1D sums (no full-size weight volume), the image moves to the device once, and we get a
place between batches to check the cancel event and to recover from a CUDA out-of-memory.
"""

from __future__ import annotations

import itertools
import os
import platform
import threading
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from radlens.imaging.progress import Progress, check_cancel, relay
from radlens.imaging.volume import Volume
from radlens.inference import applicability, confirm
from radlens.inference.bundle import BundleInfo, LoadedBundle, load_bundle
from radlens.inference.errors import BundleError
from radlens.inference.findings import Findings, ModelRun, input_block
from radlens.inference.lungs import NOT_FOUND as LUNGS_NOT_FOUND
from radlens.inference.lungs import find_lungs
from radlens.inference.metadata import DEFAULT_BLEND, DEFAULT_OVERLAP
from radlens.inference.preprocess import Prepared, Preprocess

DEVICES = ("auto", "cpu", "cuda", "mps")
GAUSSIAN_SIGMA_SCALE = 0.125  # σ as a fraction of the patch edge: MONAI's and nnU-Net's default
# Progress units per model (models differ in window count; each gets an equal share of the bar).
UNITS = 1000


def cpu_threads() -> int:
    """Threads for torch on the CPU: every core but one, which stays with the GUI."""
    return max(1, (os.cpu_count() or 1) - 1)


def select_device(device: str = "auto") -> tuple[str, str]:
    """(device, note): ``auto`` picks CUDA, then MPS, then the CPU; an unavailable choice falls back to the CPU."""
    import torch

    kind, _, index = str(device).partition(":")
    if kind not in DEVICES or (index and not (kind == "cuda" and index.isdigit())):
        raise BundleError(f"device {device!r}", f"unknown device (known: {', '.join(DEVICES)}, cuda:N)")
    cuda = torch.cuda.is_available() and (not index or int(index) < torch.cuda.device_count())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if device == "auto":
        return ("cuda" if cuda else "mps" if mps else "cpu"), ""
    if kind == "cuda" and not cuda:
        what = "CUDA" if device == "cuda" else f"CUDA device {index}"
        return "cpu", f"{what} is not available here; running on the CPU"
    if device == "mps" and not mps:
        return "cpu", "MPS is not available here; running on the CPU"
    return device, ""


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window origins along one axis: MONAI's grid (step = patch × (1 − overlap)), last window flush with the end."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def window_profile(patch: int, blend: str = DEFAULT_BLEND) -> np.ndarray:
    """One window's blend weights along one axis: ones, or a Gaussian peaking at the window's centre."""
    if blend == "constant":
        return np.ones(patch, dtype=np.float32)
    offset = np.arange(patch, dtype=np.float64) - (patch - 1) / 2.0
    return np.exp(-0.5 * (offset / (GAUSSIAN_SIGMA_SCALE * patch)) ** 2).astype(np.float32)


@dataclass(frozen=True)
class WindowGrid:
    """The windows that tile a (padded) model-grid image, and their blend weights per axis.

    A window's weight is the outer product of ``profiles``; ``sums`` are, per axis, the profiles
    added up over the windows' starts, so the weight a voxel receives in total is their outer
    product (the windows form a Cartesian grid).
    """

    shape_zyx: tuple[int, int, int]
    patch_zyx: tuple[int, int, int]
    starts: tuple[tuple[int, int, int], ...]
    profiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    sums: tuple[np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def tile(cls, shape_zyx, patch_zyx, overlap: float = DEFAULT_OVERLAP, blend: str = DEFAULT_BLEND) -> WindowGrid:
        shape = tuple(max(int(s), int(p)) for s, p in zip(shape_zyx, patch_zyx, strict=True))
        patch = tuple(int(p) for p in patch_zyx)
        per_axis = [window_starts(s, p, overlap) for s, p in zip(shape, patch, strict=True)]
        return cls.from_starts(shape, patch, per_axis, [window_profile(p, blend) for p in patch])

    @classmethod
    def from_starts(cls, shape_zyx, patch_zyx, per_axis, profiles) -> WindowGrid:
        """A grid from given window origins per axis and blend profiles (nnU-Net's own steps and Gaussian)."""
        shape = tuple(int(s) for s in shape_zyx)
        patch = tuple(int(p) for p in patch_zyx)
        profiles = tuple(np.asarray(w, dtype=np.float32) for w in profiles)
        sums = []
        for s, p, st, w in zip(shape, patch, per_axis, profiles, strict=True):
            c = np.zeros(s, dtype=np.float32)
            for a in st:
                c[a : a + p] += w
            sums.append(c)
        return cls(shape, patch, tuple(itertools.product(*per_axis)), profiles, tuple(sums))

    def __len__(self) -> int:
        return len(self.starts)


def _is_oom(err: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    text = str(err).lower()
    return (oom is not None and isinstance(err, oom)) or "out of memory" in text or "can't allocate memory" in text


def sliding_windows(
    network,
    image: np.ndarray,
    patch_zyx,
    *,
    device: str = "cpu",
    overlap: float = DEFAULT_OVERLAP,
    batch: int | None = None,
    cancel: threading.Event | None = None,
    what: str = "model",
    amp: bool = True,
    mirror_axes: Sequence[int] = (),
    blend: str = DEFAULT_BLEND,
    grid: WindowGrid | None = None,
    half_sums: bool = False,
) -> Generator[Progress, None, tuple[object, str]]:
    """Run ``network`` over windows of a (Z, Y, X) float32 image; return ((C, Z, Y, X) CPU tensor, device used).

    ``amp``: autocast to the device's fast reduced precision (:func:`autocast_dtype`); the
    stitched output is float32 either way (float16 with ``half_sums``). ``mirror_axes`` (image axes, 0 = z): test-time
    mirroring as nnU-Net does it, each window's output averaged over every combination of flips
    of those axes (2ⁿ passes); the bundle's ``input.mirror_axes`` says which. ``blend``: how
    overlapping windows are averaged (``inference.metadata.BLENDS``; the bundle's ``input.blend``). Yields
    Progress(done windows, total windows) after each batch and checks ``cancel`` before each. An
    out-of-memory halves the batch and retries; at batch 1 a GPU run moves to the CPU (the message
    says so); at batch 1 on the CPU it is raised. ``grid``: windows chosen by the caller (no padding then).
    ``half_sums``: the windows are summed in float16, as nnU-Net's predictor sums them: half the memory
    of the largest array (classes × voxels), so an imported nnU-Net model needs no more than in nnU-Net.
    """
    import torch

    grid = grid or WindowGrid.tile(image.shape, patch_zyx, overlap, blend)
    pz, py, px = grid.patch_zyx
    dev = torch.device(device)
    batch = batch or (4 if dev.type == "cuda" else 1)
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    pad = [g - s for g, s in zip(grid.shape_zyx, image.shape, strict=True)]
    if any(pad):
        fill = float(image.min()) if image.size else 0.0
        src = torch.nn.functional.pad(src, (0, pad[2], 0, pad[1], 0, pad[0]), value=fill)
    if dev.type == "cuda":
        src = src.pin_memory()
    img = src.to(dev, non_blocking=True)
    network.to(dev)
    wz, wy, wx = (torch.from_numpy(w).to(dev) for w in grid.profiles)
    weight = None if blend == "constant" else wz[:, None, None] * wy[None, :, None] * wx[None, None, :]
    acc = None
    done = 0
    note = ""
    total = len(grid)
    while done < total:
        check_cancel(cancel, what)
        chunk = grid.starts[done : done + batch]
        try:
            out = _forward(network, img, chunk, (pz, py, px), dev, amp, mirror_axes)
        except Exception as err:
            if not _is_oom(err) or (batch == 1 and dev.type == "cpu"):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            where = "CUDA" if dev.type == "cuda" else dev.type.upper()
            if batch > 1:
                batch //= 2
                note = f"{where} out of memory: retrying with {batch} window(s) per batch"
            else:
                dev = torch.device("cpu")
                network.to(dev)
                img = img.to(dev)
                acc = acc.to(dev) if acc is not None else None
                note = f"{where} out of memory: continuing on the CPU"
            yield Progress(done, total, note)
            continue
        if acc is None:
            acc = torch.zeros(
                (out.shape[1], *grid.shape_zyx), dtype=torch.float16 if half_sums else torch.float32, device=dev
            )
        if weight is not None:
            out = out.float().mul_(weight.to(out.device))
        for k, (z, y, x) in enumerate(chunk):
            acc[:, z : z + pz, y : y + py, x : x + px] += out[k]
        done += len(chunk)
        yield Progress(done, total, note)
    cz, cy, cx = (torch.from_numpy(c).to(acc.device) for c in grid.sums)
    acc /= cz[:, None, None] * cy[None, :, None] * cx[None, None, :]
    z, y, x = image.shape
    return acc[:, :z, :y, :x].cpu(), dev.type


def autocast_dtype(device: str):
    """The reduced precision a device runs well: fp16 on CUDA, bf16 on a CPU with native bf16, else None."""
    import torch

    if device.startswith("cuda"):
        return torch.float16
    if device == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # On x86 oneDNN also "supports" bf16 on plain AVX-512 by converting, about 3× slower than fp32
        # (measured here, bench/nnunet.py): native means AVX512_BF16 or AMX.
        if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
            return torch.bfloat16
        native = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if any(check() for check in native if check is not None):
            return torch.bfloat16
    return None


def autocast(device: str, enabled: bool = True):
    """``torch.autocast`` to the device's reduced precision (:func:`autocast_dtype`); a no-op where it
    has none or when not ``enabled``. ``device`` may name an index (``cuda:1``)."""
    import contextlib

    import torch

    kind = torch.device(device).type
    dtype = autocast_dtype(kind) if enabled else None
    return torch.autocast(kind, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _forward(network, img, chunk, patch, dev, amp: bool, mirror_axes: Sequence[int] = ()):
    import torch

    pz, py, px = patch
    x = torch.stack([img[z : z + pz, y : y + py, x : x + px] for z, y, x in chunk])[:, None]
    # no_grad, not inference_mode: the caller weights the output in place. Reduced precision: one pass
    # is added into the float32 sum without a copy.
    with torch.no_grad(), autocast(dev.type, amp):
        if not mirror_axes:
            return network(x)
        flips = flip_combinations([a + 2 for a in mirror_axes])  # batch and channel come first
        out = network(x).float()
        for dims in flips[1:]:
            out += network(x.flip(dims)).float().flip(dims)
        return out.div_(len(flips))


def flip_combinations(dims: Sequence[int]) -> list[list[int]]:
    """Every subset of ``dims`` (the empty one first): the 2ⁿ flips of test-time mirroring."""
    return [list(c) for k in range(len(dims) + 1) for c in itertools.combinations(dims, k)]


def _as_loaded(bundle) -> LoadedBundle:
    if isinstance(bundle, LoadedBundle):
        return bundle
    if isinstance(bundle, BundleInfo):
        return load_bundle(bundle)
    return load_bundle(str(bundle))


def _name_of(bundle) -> str:
    if isinstance(bundle, LoadedBundle | BundleInfo):
        return bundle.name
    return os.path.basename(str(bundle).rstrip("/\\")) or str(bundle)


def run_bundle(
    volume: Volume,
    bundle: LoadedBundle,
    *,
    device: str = "cpu",
    cancel: threading.Event | None = None,
    prepared: Prepared | None = None,
    batch: int | None = None,
    amp: bool = True,
) -> Generator[Progress, None, Findings]:
    """One bundle on one volume: preprocess, windows, postprocess; the findings hold only this model."""
    from radlens.inference import postprocess

    t0 = time.perf_counter()
    inp = bundle.input
    verdict = applicability.check(volume, bundle.metadata)
    region = bundle.metadata.applicability.region
    lungs = find_lungs(volume) if region == "lungs" and verdict.runs else None
    if region == "lungs" and verdict.runs and lungs is None:
        verdict = applicability.Verdict("refuse", (f"{applicability.REFUSED}: {bundle.name}: {LUNGS_NOT_FOUND}",))
    if not verdict.runs:
        return Findings(input_block(volume), device, (_model_run(bundle, t0, verdict.reasons),), (), ())
    if bundle.metadata.pipeline in ("nnunet", "monai"):
        segs, used = yield from _run_imported(volume, bundle, device, cancel, batch, amp, lungs)
        return Findings(input_block(volume), used, (_model_run(bundle, t0, verdict.reasons),), (), segs)
    known = confirm.known_detections(volume, bundle) if bundle.metadata.task == "detection" else None
    if known is not None:  # a segmenter it confirms ran it on this volume already
        return Findings(input_block(volume), device, (_model_run(bundle, t0, verdict.reasons),), known, ())
    confirming, notes = None, ()
    if bundle.metadata.confirmed_by:
        confirming, notes = yield from confirm.confirming_boxes(volume, bundle, device, cancel, amp)
    if prepared is None:
        prepared = Preprocess(inp)(volume)
    check_cancel(cancel, bundle.name)
    if bundle.metadata.pipeline == "candidates":
        dets = yield from _run_two_stage(prepared, bundle, device, cancel, lungs)
        confirm.remember_detections(volume, bundle, dets)
        return Findings(input_block(volume), device, (_model_run(bundle, t0, verdict.reasons),), dets, ())
    if bundle.metadata.task == "classification":
        from radlens.inference.classify import classify

        label = (bundle.labels or ["abnormal"])[0]
        found = yield from classify(
            bundle.network,
            prepared,
            inp.patch_zyx[1:],
            bundle.name,
            label,
            device=device,
            cancel=cancel,
            mirror_axes=inp.mirror_axes,
        )
        run = _model_run(bundle, t0, verdict.reasons)
        return Findings(input_block(volume), device, (run,), (), (), (found,))
    output, used = yield from sliding_windows(
        bundle.network,
        prepared.image,
        inp.patch_zyx,
        device=device,
        overlap=inp.overlap,
        batch=batch,
        cancel=cancel,
        what=bundle.name,
        amp=amp,
        mirror_axes=inp.mirror_axes,
        blend=inp.blend,
    )
    check_cancel(cancel, bundle.name)
    labels = bundle.labels or ["lesion"]
    dets, segs = (), ()
    if bundle.metadata.task == "detection":
        dets = postprocess.decode_detections(output, prepared, bundle.name, labels[0])
        dets = lungs.keep_detections(dets) if lungs is not None else dets
        confirm.remember_detections(volume, bundle, dets)
    else:
        segs = postprocess.segment(
            output,
            prepared,
            bundle.name,
            labels,
            threshold=bundle.info.threshold,
            min_component_ml=bundle.info.min_component_ml,
            lungs=lungs,
            confirming_boxes=confirming,
        )
    return Findings(input_block(volume), used, (_model_run(bundle, t0, (*verdict.reasons, *notes)),), dets, segs)


def _run_two_stage(prepared: Prepared, bundle: LoadedBundle, device, cancel, lungs):
    """Blob candidates (inference.candidates), then the bundle's classifier on two views of each."""
    from radlens.inference import candidates, postprocess

    yield Progress(0, 1, "finding candidates")
    found = candidates.find_candidates(prepared.image, candidates.near_lungs(prepared, lungs))
    check_cancel(cancel, bundle.name)
    views = candidates.CandidateViews(prepared.image, found.centers_zyx)
    probabilities = yield from candidates.classify(
        bundle.network, views, device=device, cancel=cancel, what=bundle.name, mirror_axes=bundle.input.mirror_axes
    )
    scores = candidates.final_scores(bundle.metadata.scoring, probabilities, found.score)
    keep = np.flatnonzero(scores >= postprocess.SCORE_FLOOR)
    reported, diameters = candidates.one_per_object(
        prepared.image, found.centers_zyx[keep], found.diameters[keep], scores[keep]
    )
    keep = keep[reported]
    half = np.repeat(diameters[:, None] / 2, 3, axis=1)
    label = (bundle.labels or ["nodule"])[0]
    centres = found.centers_zyx[keep]
    return postprocess.detections_on_input_grid(centres, half, scores[keep], prepared, bundle.name, label)


def _run_imported(volume: Volume, bundle: LoadedBundle, device, cancel, batch, amp, lungs):
    """A model imported from nnU-Net or MONAI: that tool's own steps around our windows, then our findings."""
    from radlens.inference import monai_bundle, nnunet, postprocess

    labels = list(bundle.labels)
    meta = bundle.metadata
    if meta.pipeline == "nnunet":
        job = nnunet.run(
            bundle.network,
            volume,
            meta.nnunet,
            len(labels) + 1,
            device=device,
            cancel=cancel,
            what=bundle.name,
            amp=amp,
            batch=batch,
        )
    else:
        job = monai_bundle.run(
            bundle.network, volume, meta.monai, device=device, cancel=cancel, what=bundle.name, amp=amp, batch=batch
        )
    label_map, confidence, used = yield from job
    check_cancel(cancel, bundle.name)
    whole = tuple(slice(0, n) for n in volume.shape_zyx)
    segs = postprocess.label_segmentations(
        label_map,
        confidence,
        whole,
        volume,
        bundle.name,
        labels,
        min_component_ml=bundle.info.min_component_ml,
        lungs=lungs,
        colours=meta.document.get("colours"),
    )
    return segs, used


def _model_run(bundle: LoadedBundle, t0: float, warnings: Sequence[str]) -> ModelRun:
    return ModelRun(
        bundle.name,
        bundle.info.version,
        bundle.metadata.task,
        bundle.sha256,
        time.perf_counter() - t0,
        bundle.info.threshold,
        tuple(warnings),
    )


def iter_infer(
    volume: Volume,
    bundles: Iterable,
    device: str = "auto",
    cancel: threading.Event | None = None,
    *,
    threads: int | None = None,
    amp: bool = True,
) -> Generator[Progress, None, Findings]:
    """Run every bundle on ``volume``; yield progress and, per finished model, a preview of its findings.

    ``bundles``: BundleInfo, LoadedBundle, names or folders. ``threads``: torch CPU threads (default:
    every core but one, so a GUI stays responsive; the command line passes all cores). ``amp``: run
    the networks in the device's fast reduced precision (CUDA fp16; bf16 on CPUs that have it, about
    3× faster there); outputs are stitched and post-processed in float32.
    """
    import torch

    items = list(bundles)
    dev, note = select_device(device)
    low = autocast_dtype(dev) if amp else None
    shown = f"{dev} ({str(low).removeprefix('torch.')})" if low is not None else dev
    torch.set_num_threads(max(1, int(threads or cpu_threads())))
    total = UNITS * len(items)
    findings = Findings.empty_for(volume, dev)
    cache: dict[tuple, Prepared] = {}
    for i, item in enumerate(items):
        base = UNITS * i
        name = _name_of(item)
        check_cancel(cancel, name)
        yield Progress(base, total, f"{name}: loading" + (f" ({note})" if note else ""))
        bundle = _as_loaded(item)
        key = bundle.input.preprocessing
        if bundle.metadata.pipeline in ("radlens", "candidates") and key not in cache:  # nnU-Net's prepare their own
            yield Progress(base + UNITS // 20, total, f"{name}: preparing the volume")
            cache = {key: Preprocess(bundle.input)(volume)}  # keep one: a volume-sized array each

        def overall(p: Progress, name=name, base=base) -> Progress:
            """A window of this model as a step of the whole job. The device's note stays; a step's own
            (an out-of-memory fallback, which sliding_windows repeats, or "finding candidates") shows
            while that step runs."""
            notes = "; ".join(n for n in (note, p.message) if n)
            message = f"{name} on {shown}: window {p.done}/{p.total}" + (f" ({notes})" if notes else "")
            return Progress(base + UNITS // 10 + (UNITS * 8 // 10) * p.done // max(1, p.total), total, message)

        job = run_bundle(volume, bundle, device=dev, cancel=cancel, prepared=cache.get(key), amp=amp)
        partial = yield from relay(job, overall)
        findings = findings.merged(partial)
        n = len(partial.detections) + len(partial.segmentations) + len(partial.classifications)
        yield Progress(base + UNITS, total, f"{name}: done in {partial.models[0].seconds:.1f} s ({n} results)", partial)
    return findings
