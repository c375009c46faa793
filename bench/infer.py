"""How fast ``inference.iter_infer`` runs each bundle on a 300×512×512 chest CT, against its floor and MONAI.

On the SYNTHETIC chest CT phantom (``imaging.phantom.make_chest_ct(0, shape_zyx=(300, 512, 512))``),
per CT bundle, in one process, with ``--threads`` torch threads, all three in the engine's
precision (bf16 autocast on CPUs with native bf16, else float32):

- ``engine_s``: ``iter_infer`` on the Volume in memory (what the viewer does): crop, resample,
  normalise, batched windows, post-processing back on the input grid.
- ``floor_s``: the network's own forward time on the same windows, summed by forward hooks inside
  that very run (so the total and its floor see the same load on a shared machine).
- ``monai_s``: the same network through a plain MONAI pipeline: the MetaTensor LoadImage would give
  (built from the same Volume: no MONAI NIfTI backend is installed, and neither side pays for the
  file), Spacing, ScaleIntensityRange, sliding_window_inference (same patch, overlap, blend, batch,
  precision and test-time mirroring), then the output resampled back onto the input grid (SpatialResample).
- ``peak_mb``: growth of the resident set during the engine run, against the volume and the weights.

Plus ``all_models_s``: every bundle in one ``iter_infer`` call (they share the preprocessing when
their input blocks agree). Uses the bundles in resources/models; where there are none for CT, random
weights of the architectures ``radlens train`` uses (said in ``weights``; the segmenter's background
bias raised so that its masks are sparse like a trained one's): the forward time does not depend on
the weights (``--random`` times those even when trained bundles exist). Prints one JSON object.
Run: ``.venv/bin/python bench/infer.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

GOALS = {"engine_over_floor": 1.3, "engine_over_monai": 0.8, "all_models_s": 20.0, "peak_over_volume": 2.5}


class PeakRss:
    """Samples the resident set every 5 ms; ``peak_mb`` is the growth over the start."""

    def __init__(self):
        self._stop = threading.Event()
        self.start = self.peak = self._rss()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def random_bundles(folder: Path) -> list:
    """Random-weight bundles with the defaults ``radlens train`` plans for CT (CPU patch budget)."""
    import torch

    from radlens.inference.bundle import save_bundle
    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    common = {
        "version": "0.0.0",
        "labels": ["nodule"],
        "thresholds": {"score": 0.5},
        "input": {
            "modality": "CT",
            "spacing_zyx": [2.0, 2.0, 2.0],
            "patch_zyx": [48, 64, 64],
            "normalization": {"kind": "ct-clip", "clip": [-1000, 400]},
            "crop": "body",
        },
        "training": {"dataset": "none", "command": "bench/infer.py (random weights)", "synthetic": True},
    }
    det_kw = {"channels": [16, 32, 64], "features": 16}
    seg_kw = {"n_labels": 1, "channels": [16, 32, 64, 128]}
    segmenter = build_network("unet3d-seg", **seg_kw)
    _favour_background(segmenter)
    return [
        save_bundle(
            folder / "det",
            build_network("centernet3d", **det_kw),
            {**common, "name": "random-detector", "task": "detection", "arch": "centernet3d", "arch_kwargs": det_kw},
        ),
        save_bundle(
            folder / "seg",
            segmenter,
            {**common, "name": "random-segmenter", "task": "segmentation", "arch": "unet3d-seg", "arch_kwargs": seg_kw},
        ),
    ]


def _favour_background(network, margin: float = 4.0) -> None:
    """Raise the background logit's bias so random weights give a trained model's sparse masks.

    Random weights otherwise label half the body as foreground, and the post-processing of such a
    mask (millions of voxels in thousands of components) is not what a real segmenter costs.
    """
    import torch

    last = [m for m in network.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)][-1]
    with torch.no_grad():
        last.bias[0] += margin


class ForwardTimer:
    """Sums the wall time of a network's own forward calls (hooks on the top module).

    Measured inside the same run as the total, so both see the same load on a shared machine.
    """

    def __init__(self, network):
        self.seconds = 0.0
        self.calls = 0
        self._t = 0.0
        self._handles = [
            network.register_forward_pre_hook(self._pre),
            network.register_forward_hook(self._post),
        ]

    def _pre(self, module, args):
        self._t = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._t
        self.calls += 1

    def remove(self):
        for h in self._handles:
            h.remove()


def _autocast(dtype):
    """The engine's CPU precision, so that all three measurements run the same arithmetic."""
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def monai_pipeline(bundle, volume) -> float:
    """The plain MONAI route for the same network; seconds from the array to a result on the input grid.

    Starts from what LoadImage returns (a float32 MetaTensor in (x, y, z) order with its affine),
    built from the same Volume: this environment has no MONAI NIfTI backend (nibabel or itk), and
    neither side then pays for reading the file.
    """
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensityRange, Spacing, SpatialResample

    from radlens.inference.engine import autocast_dtype, flip_combinations

    inp = bundle.input
    lo, hi = inp.normalization.clip
    t = time.perf_counter()
    array = torch.from_numpy(volume.array.transpose(2, 1, 0).astype(np.float32))
    image = MetaTensor(array[None], affine=torch.as_tensor(volume.affine_lps))
    original_affine, original_shape = image.affine.clone(), image.shape[1:]
    resampled = Spacing(pixdim=inp.spacing_zyx[::-1], mode="bilinear")(image)
    scaled = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(resampled)
    net = bundle.network.to("cpu")
    # The bundle's test-time mirroring as a MONAI user would add it: a predictor over every flip.
    flips = flip_combinations([4 - a for a in inp.mirror_axes])  # zyx axis → dim of this (x, y, z) tensor

    def predictor(x):
        return sum(net(x.flip(f)).float().flip(f) if f else net(x).float() for f in flips) / len(flips)

    with torch.inference_mode():
        with _autocast(autocast_dtype("cpu")):
            out = sliding_window_inference(
                scaled[None],
                roi_size=inp.patch_zyx[::-1],
                sw_batch_size=1,
                predictor=predictor,
                overlap=inp.overlap,
                mode=inp.blend,  # MONAI's Gaussian has the same σ (patch/8)
            )[0].float()
        if bundle.metadata.task == "segmentation":
            result, mode = out.argmax(0, keepdim=True).to(torch.uint8), "nearest"
        else:
            result, mode = torch.sigmoid(out[:1]), "bilinear"
        result = MetaTensor(result.as_tensor(), affine=scaled.affine)  # the model grid it came from
        SpatialResample(mode=mode)(result, dst_affine=original_affine, spatial_size=original_shape)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--random", action="store_true", help="time random-weight bundles of the default architectures")
    args = parser.parse_args()

    import torch

    from radlens.imaging.phantom import make_chest_ct
    from radlens.imaging.progress import run_to_end
    from radlens.inference.bundle import list_bundles, load_bundle
    from radlens.inference.engine import autocast_dtype, iter_infer

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    volume = make_chest_ct(0, shape_zyx=tuple(args.shape)).volume
    made_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        infos = [] if args.random else list_bundles("CT")
        weights = "trained (resources/models)"
        if args.random:
            infos = random_bundles(tmp / "models")
            weights = "random (--random); the architectures radlens train plans by default (16-128 channels)"
        elif not infos:
            infos = random_bundles(tmp / "models")
            weights = "random (no CT bundle in resources/models yet); same architectures as radlens train's defaults"
        bundles = [load_bundle(b if isinstance(b, Path) else b.path) for b in infos]
        model_mb = {b.name: sum(p.numel() * p.element_size() for p in b.network.parameters()) / 1e6 for b in bundles}

        per_bundle = {}
        for b in bundles:
            run_to_end(iter_infer(volume, [b], device="cpu", threads=args.threads))  # warm-up (allocator, MKL)
            engine_s = floor_s = float("inf")
            for _ in range(args.rounds):  # best of: the machine is shared
                timer = ForwardTimer(b.network)
                with PeakRss() as mem:
                    t = time.perf_counter()
                    # a copy: the engine keeps a detector's boxes per volume (for the segmenter it confirms)
                    fresh = volume.with_array(volume.array)
                    findings = run_to_end(iter_infer(fresh, [b], device="cpu", threads=args.threads))
                    took = time.perf_counter() - t
                timer.remove()
                if took < engine_s:
                    engine_s, floor_s, windows = took, timer.seconds, timer.calls
            row = {
                "task": b.metadata.task,
                "arch": b.metadata.arch,
                "spacing_zyx": b.input.spacing_zyx,
                "patch_zyx": b.input.patch_zyx,
                "windows": windows,
                "engine_s": round(engine_s, 2),
                "floor_s": round(floor_s, 2),
                "engine_over_floor": round(engine_s / floor_s, 3),
                "results": len(findings.detections) + len(findings.segmentations),
                "peak_mb": round(mem.peak_mb, 1),
                "peak_over_volume": round(mem.peak_mb / (volume.nbytes / 1e6), 2),
                "model_mb": round(model_mb[b.name], 2),
            }
            if not args.skip_monai and b.metadata.pipeline == "radlens":  # a two-stage detector has no MONAI twin
                timer = ForwardTimer(b.network)
                monai_s = monai_pipeline(b, volume)
                timer.remove()
                row["monai_s"] = round(monai_s, 2)
                row["monai_forward_s"] = round(timer.seconds, 2)
                row["engine_over_monai"] = round(engine_s / monai_s, 3)
            per_bundle[b.name] = row

        t = time.perf_counter()
        run_to_end(iter_infer(volume.with_array(volume.array), bundles, device="cpu", threads=args.threads))
        all_s = time.perf_counter() - t

    print(
        json.dumps(
            {
                "volume": {
                    "made_by": "radlens.imaging.phantom.make_chest_ct(0) (synthetic)",
                    "shape_zyx": list(volume.shape_zyx),
                    "spacing_zyx": [round(s, 4) for s in volume.spacing_zyx],
                    "mb": round(volume.nbytes / 1e6, 1),
                    "made_s": round(made_s, 2),
                },
                "weights": weights,
                "threads": args.threads,
                "rounds": args.rounds,
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "precision": str(autocast_dtype("cpu") or "float32").removeprefix("torch."),
                "bundles": per_bundle,
                "all_models_s": round(all_s, 2),
                "goals": GOALS,
                "note": "shared 2-core machine: timings are noisy",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
