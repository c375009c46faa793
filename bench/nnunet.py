"""An imported nnU-Net v2 model in RadLens against nnU-Net's own ``nnUNetPredictor``, same model, same input.

The model is a real nnU-Net v2 results folder that nnU-Net plans and trains here
(tests/inference/nnunet_tiny_model.py with nnU-Net's default 32 base features and a few iterations:
speed does not depend on how well it learned), on SYNTHETIC CT-like cases. The input is a SYNTHETIC
case on another grid (``--shape``, 4 mm slices of 0.7 mm pixels), so both sides resample. In one
process, alternating, best of ``--repeats``, with ``--threads`` torch threads:

- ``nnunet_s``: ``nnUNetPredictor.predict_single_npy_array`` on the image in memory (tile step 0.5,
  Gaussian, mirroring over the checkpoint's axes: its defaults), CPU, float32 as nnU-Net runs there.
- ``radlens_s``: ``iter_infer`` with the imported bundle on the Volume in memory (the viewer's path),
  in RadLens' CPU precision (bf16 autocast where the CPU has native bf16, else float32);
  ``radlens_fp32_s`` the same in float32.
- ``*_peak_mb``: growth of the resident set during each call. ``dice``: per label, RadLens' label
  map against nnU-Net's from the same run.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=(24, 128, 128), metavar=("Z", "Y", "X"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from radlens.imaging.loading import load
    from radlens.inference.bundle import load_bundle
    from radlens.inference.engine import iter_infer
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
        _, (predictor, data, props) = predict_with_nnunet(folder, case)
        bundle = load_bundle(import_nnunet(folder, Path(tmp) / "bundle"))
        volume = load(str(case))

        def radlens(amp: bool):
            job = iter_infer(volume, [bundle], device="cpu", threads=args.threads, amp=amp)
            try:
                while True:
                    next(job)
            except StopIteration as done:
                return done.value

        times, peaks, outputs = {}, {}, {}
        runs = {
            "nnunet": lambda: predictor.predict_single_npy_array(data, props),
            "radlens": lambda: radlens(True),
            "radlens_fp32": lambda: radlens(False),
        }
        for _ in range(args.repeats):
            for name, run in runs.items():
                with PeakRss() as peak:
                    t0 = time.perf_counter()
                    outputs[name] = run()
                    elapsed = time.perf_counter() - t0
                times[name] = min(times.get(name, elapsed), elapsed)
                peaks[name] = max(peaks.get(name, 0.0), peak.peak_mb)
        reference = outputs["nnunet"]
        dice = {}
        for key in ("radlens", "radlens_fp32"):
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
        "nnunet_s": round(times["nnunet"], 2),
        "radlens_s": round(times["radlens"], 2),
        "radlens_fp32_s": round(times["radlens_fp32"], 2),
        "radlens_over_nnunet": round(times["radlens"] / times["nnunet"], 3),
        "radlens_fp32_over_nnunet": round(times["radlens_fp32"] / times["nnunet"], 3),
        "nnunet_peak_mb": round(peaks["nnunet"], 1),
        "radlens_peak_mb": round(peaks["radlens"], 1),
        "peak_over_nnunet": round(peaks["radlens"] / max(peaks["nnunet"], 1e-6), 3),
        "dice": dice,
        "goals": GOALS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
