"""Tiny synthetic CT volumes and random-weight bundles for the inference tests (synthetic data only)."""

from __future__ import annotations

import numpy as np

from radlens.imaging.volume import Volume


def sphere_ct(
    centres_zyx=((12, 24, 26),),
    radius_mm: float = 5.0,
    shape_zyx=(24, 48, 48),
    spacing_zyx=(2.0, 2.0, 2.0),
    origin_lps=(-40.0, -30.0, 100.0),
    body_fraction: float = 0.45,
) -> Volume:
    """A synthetic CT: air, a soft-tissue cylinder (the body), air-like lung, bright spheres (nodules)."""
    z, y, x = np.indices(shape_zyx, dtype=np.float32)
    sz, sy, sx = spacing_zyx
    cy, cx = shape_zyx[1] / 2, shape_zyx[2] / 2
    a = np.full(shape_zyx, -1000, dtype=np.int16)
    r_body = body_fraction * min(shape_zyx[1] * sy, shape_zyx[2] * sx)
    a[((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2 < r_body**2] = 30
    a[((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2 < (0.8 * r_body) ** 2] = -850
    for c in centres_zyx:
        d2 = ((z - c[0]) * sz) ** 2 + ((y - c[1]) * sy) ** 2 + ((x - c[2]) * sx) ** 2
        a[d2 < radius_mm**2] = 60
    return Volume(a, spacing_zyx, origin_lps, modality="CT", series_uid="1.2.3.synthetic", source="synthetic")


def ct_input(**changes) -> dict:
    block = {
        "modality": "CT",
        "spacing_zyx": [2.0, 2.0, 2.0],
        "patch_zyx": [16, 32, 32],
        "normalization": {"kind": "ct-clip", "clip": [-1000, 400]},
    }
    block.update(changes)
    return block


def metadata(name: str, task: str, arch: str, arch_kwargs: dict, **changes) -> dict:
    meta = {
        "name": name,
        "version": "0.0.1",
        "task": task,
        "description": "synthetic test bundle",
        "labels": ["nodule"],
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "input": ct_input(),
        "thresholds": {"score" if task == "detection" else "probability": 0.5},
        "training": {"dataset": "synthetic spheres", "command": "pytest", "seed": 0, "synthetic": True},
    }
    meta.update(changes)
    return meta


DETECTOR_KWARGS = {"channels": [4, 8], "features": 4, "num_res_units": 0}
SEGMENTER_KWARGS = {"n_labels": 1, "channels": [4, 8], "num_res_units": 0}


def random_bundles(folder) -> tuple:
    """A random-weight detector and segmenter saved as bundles under ``folder``."""
    import torch

    from radlens.inference.bundle import save_bundle
    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    det = save_bundle(
        folder / "det",
        build_network("centernet3d", **DETECTOR_KWARGS),
        metadata("rand-detector", "detection", "centernet3d", DETECTOR_KWARGS),
    )
    seg = save_bundle(
        folder / "seg",
        build_network("unet3d-seg", **SEGMENTER_KWARGS),
        metadata("rand-segmenter", "segmentation", "unet3d-seg", SEGMENTER_KWARGS),
    )
    return det, seg


def two_stage_bundle(folder, seed: int = 0, **changes):
    """A random-weight two-stage detector (candidates, then a small 3D CNN), gated to the lungs."""
    import torch

    from radlens.inference.bundle import load_bundle, save_bundle
    from radlens.inference.networks import build_network

    kwargs = {"in_channels": 2, "channels": [4, 8], "dropout": 0.0}
    torch.manual_seed(seed)
    inp = {
        "modality": "CT", "spacing_zyx": [1.0, 1.0, 1.0], "patch_zyx": [32, 32, 32],
        "normalization": {"kind": "ct-clip", "clip": [-1000, 400], "scale": "unit"}, "crop": "lungs",
    }  # fmt: skip
    meta = metadata("two-stage", "detection", "nodule-classifier3d", kwargs, input=inp, pipeline="candidates",
                    applicability={"body_part": "chest", "region": "lungs"}, **changes)  # fmt: skip
    return load_bundle(str(save_bundle(folder, build_network("nodule-classifier3d", **kwargs), meta)))
