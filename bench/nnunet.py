"""An imported nnU-Net v2 model in RadLens against nnU-Net's own ``nnUNetPredictor``, same model, same input.

The model is a real nnU-Net v2 results folder that nnU-Net plans and trains here
(tests/inference/nnunet_tiny_model.py with nnU-Net's default 32 base features and a few iterations:
speed does not depend on how well it learned), on SYNTHETIC CT-like cases. The input is a SYNTHETIC
case on another grid (``--shape``, 4 mm slices of 0.7 mm pixels), so both sides resample.

- ``nnunet_s``: ``nnUNetPredictor.predict_single_npy_array`` on the image in memory (tile step 0.5,
  Gaussian, mirroring over the checkpoint's axes: its defaults), CPU, float32 as nnU-Net runs there.
- ``radlens_s``: ``iter_infer`` with the imported bundle on the Volume in memory (the viewer's path),
  in RadLens' CPU precision: float32, or bf16 autocast where the CPU has native bf16 (then
  ``radlens_fp32_s`` is the same in float32 too).
- Times: in this one process, the sides alternating, best of ``--repeats`` wall-clock seconds, with
  ``--threads`` torch threads; ``*_cpu_s`` the process's CPU seconds of that best run (a shared
  machine's load stretches wall time, which alternating only partly cancels).
- ``*_peak_mb``: growth of the resident set during the first prediction after setting up (model
  loaded, image in memory), each side in a fresh process of its own (so neither reuses memory the
  other freed), sampled every 5 ms; the median of ``--peak-runs`` such processes per side, taken in
  turn (one process's peak varies by about ±15 MB with the allocator; ``peak_mb_runs`` lists them).
- ``dice``: per label, RadLens' label map against nnU-Net's from the same run.

Prints one JSON object. Run: ``.venv/bin/python bench/nnunet.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from infer import PeakRss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "inference"))
from nnunet_tiny_model import DATASET, LABELS, predict_with_nnunet, sphere_case, write_nifti  # noqa: E402

GOALS = {"radlens_over_nnunet": 1.0, "peak_over_nnunet": 1.0}


def radlens_run(volume, bundle, threads: int, amp: bool):
    """The viewer's path: ``iter_infer`` driven to its end; returns the findings."""
    from radlens.inference.engine import iter_infer

    job = iter_infer(volume, [bundle], device="cpu", threads=threads, amp=amp)
    try:
        while True:
            next(job)
    except StopIteration as done:
        return done.value


def peak_of(side: str, folder: Path, case: Path, bundle_dir: Path, threads: int) -> float:
    """One prediction of ``side`` in this (fresh) process: the resident set's growth in MB."""
    import torch

    from radlens.imaging.loading import load
    from radlens.inference.bundle import load_bundle

    torch.set_num_threads(threads)
    if side == "nnunet":
        _, (predictor, data, props) = predict_with_nnunet(folder, case, run=False)
        run = lambda: predictor.predict_single_npy_array(data, props)  # noqa: E731
    else:
        bundle, volume = load_bundle(bundle_dir), load(str(case))
        run = lambda: radlens_run(volume, bundle, threads, True)  # noqa: E731
    with PeakRss() as peak:
        run()
    return peak.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=(24, 128, 128), metavar=("Z", "Y", "X"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak-runs", type=int, default=3, help="fresh processes per side for the peak")
    parser.add_argument("--peak-of", nargs=4, metavar=("SIDE", "FOLDER", "CASE", "BUNDLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        side, folder, case, bundle_dir = args.peak_of
        print(json.dumps({"peak_mb": peak_of(side, Path(folder), Path(case), Path(bundle_dir), args.threads)}))
        return

    import torch

    from radlens.imaging.loading import load
    from radlens.inference.bundle import load_bundle
    from radlens.inference.engine import autocast_dtype
    from radlens.inference.nnunet_import import import_nnunet

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(ROOT / "tests/inference/nnunet_tiny_model.py"), tmp, "32", "3"],
            check=True,
            capture_output=True,
        )
        folder = Path(tmp) / "res" / DATASET / "nnUNetTrainerTiny__nnUNetPlans__3d_fullres"
        image, _ = sphere_case(np.random.default_rng(5), shape=tuple(args.shape), spacing_xyz=(0.7, 0.7, 4.0))
        case = Path(tmp) / "case_0000.nii.gz"
        write_nifti(image, str(case), (0.7, 0.7, 4.0))
        bundle_dir = import_nnunet(folder, Path(tmp) / "bundle")

        samples = {"nnunet": [], "radlens": []}
        for _ in range(args.peak_runs):
            for side, got in samples.items():
                done = subprocess.run(
                    [sys.executable, __file__, "--threads", str(args.threads), "--peak-of", side, str(folder),
                     str(case), str(bundle_dir)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                got.append(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
        peaks = {side: float(np.median(got)) for side, got in samples.items()}

        _, (predictor, data, props) = predict_with_nnunet(folder, case)
        bundle = load_bundle(bundle_dir)
        volume = load(str(case))
        low = autocast_dtype("cpu")
        runs = {
            "nnunet": lambda: predictor.predict_single_npy_array(data, props),
            "radlens": lambda: radlens_run(volume, bundle, args.threads, True),
        }
        if low is not None:  # otherwise the same run as "radlens"
            runs["radlens_fp32"] = lambda: radlens_run(volume, bundle, args.threads, False)
        times, cpu, outputs = {}, {}, {}
        for _ in range(args.repeats):
            for name, run in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                outputs[name] = run()
                elapsed = time.perf_counter() - t0
                if elapsed < times.get(name, float("inf")):
                    times[name], cpu[name] = elapsed, time.process_time() - c0
        reference = outputs["nnunet"]
        dice = {}
        for key in runs.keys() - {"nnunet"}:
            masks = {s.label: s.mask for s in outputs[key].segmentations}
            dice[key] = {
                label: round(
                    2
                    * np.count_nonzero(masks[label] & (reference == v))
                    / max(1, np.count_nonzero(masks[label]) + np.count_nonzero(reference == v)),
                    4,
                )
                for label, v in LABELS.items()
                if v
            }
    result = {
        "input_shape_zyx": list(args.shape),
        "patch": list(bundle.metadata.nnunet.patch_size),
        "threads": args.threads,
        "radlens_cpu_precision": str(low or torch.float32).removeprefix("torch."),
        "nnunet_s": round(times["nnunet"], 2),
        "radlens_s": round(times["radlens"], 2),
        "nnunet_cpu_s": round(cpu["nnunet"], 2),
        "radlens_cpu_s": round(cpu["radlens"], 2),
        "radlens_over_nnunet": round(times["radlens"] / times["nnunet"], 3),
        "nnunet_peak_mb": round(peaks["nnunet"], 1),
        "radlens_peak_mb": round(peaks["radlens"], 1),
        "peak_over_nnunet": round(peaks["radlens"] / max(peaks["nnunet"], 1e-6), 3),
        "peak_mb_runs": {side: [round(v, 1) for v in got] for side, got in samples.items()},
        "dice": dice,
        "goals": GOALS,
    }
    if "radlens_fp32" in times:
        result["radlens_fp32_s"] = round(times["radlens_fp32"], 2)
        result["radlens_fp32_over_nnunet"] = round(times["radlens_fp32"] / times["nnunet"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
