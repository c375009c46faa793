"""``radlens train detect DATASET --two-stage``: the classifier of the two-stage nodule detector.

The first stage (:mod:`radlens.inference.candidates`) is fixed geometry; only the second is
learned: every case is prepared exactly as the engine prepares it (same crop, grid and window),
its candidates are found, and each becomes a labelled pair of views (a hit by the LUNA16 rule, or
a false positive of the first stage: a vessel junction, a pleural bump, a fissure). The true
nodules' own centres, shifted a little, are added as positives, so the classifier learns nodules
the first stage ranks low as well. Augmentation randomises what a nodule must not be known by:
orientation, the scanner's HU offset and gain, noise and blur. The threshold is chosen on the
validation cases' FROC (at most ``FPS_AT_THRESHOLD`` false positives per scan), never on a test set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import zlib
from pathlib import Path

import numpy as np

from radlens.imaging.progress import Progress, run_to_end
from radlens.training.bundle_writer import data_sources, provenance
from radlens.training.datasets import Case, load_image, load_label, nodules_from_instances, read_dataset

FPS_AT_THRESHOLD = 0.5
JITTERS = 6  # shifted copies of each true nodule centre
CLIP_HU = (-1000.0, 400.0)


def input_block(spacing_zyx=(1.0, 1.0, 1.0)) -> dict:
    """The detector's input: an isotropic grid (1 mm: a 3 mm nodule is three voxels), a fixed window
    that keeps ground glass, the lungs' box."""
    return {
        "modality": "CT",
        "spacing_zyx": [float(s) for s in spacing_zyx],
        "patch_zyx": [32, 32, 32],
        "normalization": {"kind": "ct-clip", "clip": list(CLIP_HU), "scale": "unit"},
        "crop": "lungs",
    }


def _nodules(case: Case):
    if case.nodules is not None:
        return case.nodules
    return nodules_from_instances(load_label(case.label))


def case_samples(case: Case, seed: int, spec, cache_dir: Path) -> dict:
    """One case's candidates as the classifier sees them, kept in ``cache_dir`` until the bundle is
    written (the slow part of a run: a run killed before then reads them back when restarted).

    ``views`` of every candidate, their LPS centres and labels (1 hit by LUNA16's rule, 0 a false
    positive of the first stage, -1 ambiguous: near a nodule's edge); ``jittered`` views of the true
    nodules' own centres, shifted a little; the nodules themselves."""
    from radlens.imaging.atomic import atomic_path
    from radlens.inference import candidates
    from radlens.inference.lungs import find_lungs
    from radlens.inference.preprocess import Preprocess

    cached = cache_dir / f"{case.case_id}.npz"
    if cached.is_file():
        with np.load(cached) as f:
            if "shape_scores" in f:  # else written before the shape scores were kept: search again
                return dict(f)
    volume = load_image(case.image)
    prep = Preprocess(spec)(volume)
    found = candidates.find_candidates(prep.image, candidates.near_lungs(prep, find_lungs(volume)))
    nodules = _nodules(case)
    centres_lps = prep.grid.index_to_lps(found.centers_zyx) if len(found) else np.zeros((0, 3))
    label = np.zeros(len(found), dtype=np.int8)
    for n in nodules:
        d = np.linalg.norm(centres_lps - np.asarray(n.center_lps), axis=1)
        label[(d <= n.diameter_mm / 2 + 3.0) & (label == 0)] = -1
        label[d <= n.diameter_mm / 2] = 1
    nodule_lps = np.asarray([n.center_lps for n in nodules], dtype=np.float64).reshape(-1, 3)
    nodule_mm = np.asarray([n.diameter_mm for n in nodules], dtype=np.float64)
    shifted = np.repeat(prep.grid.lps_to_index(nodule_lps), JITTERS, axis=0) if len(nodules) else np.zeros((0, 3))
    r = np.repeat(nodule_mm / 2, JITTERS)[:, None]
    rng = np.random.default_rng([seed, zlib.crc32(case.case_id.encode())])  # the same shifts after a restart
    shifted = shifted + rng.normal(0, 1, shifted.shape) * np.minimum(0.3 * r, 2.0)
    sample = {
        "views": candidates.patches(prep.image, found.centers_zyx).astype(np.float16),
        "centres_lps": centres_lps,
        "shape_scores": found.score.astype(np.float32),
        "labels": label,
        "jittered": candidates.patches(prep.image, shifted).astype(np.float16),
        "nodule_lps": nodule_lps,
        "nodule_mm": nodule_mm,
    }
    with atomic_path(cached, ".npz") as tmp:
        np.savez(tmp, **sample)
    return sample


def _augment(x, rng: np.random.Generator):
    import torch

    flips = [d for d in (2, 3, 4) if rng.random() < 0.5]
    if flips:
        x = x.flip(flips)
    if rng.random() < 0.5:
        x = x.transpose(3, 4)
    n = x.shape[0]
    # The gain scales densities about air (0 is -1000 HU): at 0.6 a solid nodule reads as ground glass
    # (+30 HU becomes -380), so the classifier learns a nodule by its shape, whatever its density.
    wide = rng.random((n, 1, 1, 1, 1)) < 0.5
    gain = np.where(wide, rng.uniform(0.6, 1.15, wide.shape), rng.uniform(0.9, 1.1, wide.shape))
    gain = torch.from_numpy(gain.astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.03, 0.03, (n, 1, 1, 1, 1)).astype(np.float32))
    x = x * gain + shift
    sigma = torch.from_numpy(rng.uniform(0, 0.03, (n, 1, 1, 1, 1)).astype(np.float32))
    x = x + torch.randn_like(x) * sigma
    if rng.random() < 0.3:  # a smoother kernel or thicker slices: blur along z
        x = (x + x.roll(1, 2) + x.roll(-1, 2)) / 3
    if rng.random() < 0.2:  # a smoother kernel in plane too
        x = (x + x.roll(1, 3) + x.roll(-1, 3) + x.roll(1, 4) + x.roll(-1, 4)) / 5
    return x


def _init_bundle(init):
    """--init: a two-stage detector bundle whose classifier training continues (its input block too)."""
    from radlens.inference.bundle import find_bundle, load_bundle
    from radlens.training.errors import TrainingError

    bundle = load_bundle(find_bundle(init))
    if bundle.metadata.task != "detection" or bundle.metadata.arch != "nodule-classifier3d":
        meta = bundle.metadata
        raise TrainingError(f"--init {init}: not a two-stage detector (task {meta.task}, {meta.arch})")
    return bundle


def validation_froc(network, samples: list[dict], device: str) -> tuple[str, dict]:
    """The scoring rule (metadata.SCORINGS) with the best CPM on the validation cases' candidates
    (LUNA16's rule), and each rule's FROC."""
    from radlens.inference import candidates
    from radlens.inference.metadata import SCORINGS
    from radlens.training.metrics import Candidate, Nodule, froc

    probabilities = [
        run_to_end(candidates.classify(network, s["views"].astype(np.float32), device=device)) for s in samples
    ]
    results = {}
    for scoring in SCORINGS:
        scans = []
        for s, p in zip(samples, probabilities, strict=True):
            scores = candidates.final_scores(scoring, p, s["shape_scores"])
            cands = [Candidate(tuple(map(float, c)), float(v)) for c, v in zip(s["centres_lps"], scores, strict=True)]
            nods = [
                Nodule(tuple(map(float, c)), float(d)) for c, d in zip(s["nodule_lps"], s["nodule_mm"], strict=True)
            ]
            scans.append((cands, nods))
        results[scoring] = froc(scans)
    best = max(SCORINGS, key=lambda k: results[k]["cpm"])  # ties: the plain classifier, listed first
    return best, results


def train(args: argparse.Namespace, command: str):
    """A generator (Progress) that trains the classifier and writes the bundle; returns its metadata."""
    import torch

    from radlens.inference.bundle import save_bundle
    from radlens.inference.networks import build_network
    from radlens.training.froc import froc_at_threshold, suggest_threshold

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    ds = read_dataset(args.dataset, "detection")
    cases = ds.train_cases
    order = rng.permutation(len(cases))
    n_val = max(1, round(len(cases) * (args.val_fraction or 0.2)))
    val = [cases[i] for i in order[:n_val]]
    train_cases = [cases[i] for i in order[n_val:]]
    from radlens.inference.metadata import InputSpec

    init = _init_bundle(args.init) if getattr(args, "init", None) else None
    block = dict(init.metadata.document["input"]) if init is not None else input_block(args.spacing or (1.0, 1.0, 1.0))
    spec = InputSpec.from_json(block)
    cache_dir = Path(args.out) / "candidates" / "x".join(f"{v:g}" for v in spec.spacing_zyx)
    views, labels, val_samples = [], [], []
    for i, case in enumerate(train_cases + val):
        yield Progress(i, len(cases), f"candidates of {case.case_id}")
        sample = case_samples(case, args.seed, spec, cache_dir)
        if case in val:
            val_samples.append(sample)
        else:
            keep = sample["labels"] >= 0
            views += [sample["views"][keep], sample["jittered"]]
            labels += [sample["labels"][keep].astype(np.float32), np.ones(len(sample["jittered"]), np.float32)]
    x_all = torch.from_numpy(np.concatenate(views))
    y_all = np.concatenate(labels)
    pos, neg = np.flatnonzero(y_all == 1), np.flatnonzero(y_all == 0)
    if init is not None:  # fine-tuning: the bundle's network and verified weights
        network, arch_kwargs = init.network, dict(init.metadata.arch_kwargs)
    else:
        arch_kwargs = {"in_channels": 2, "channels": list(args.channels or (8, 16, 32, 64)), "dropout": 0.2}
        network = build_network("nodule-classifier3d", **arch_kwargs)
    steps = (args.epochs or 40) * (args.iterations or 100)
    batch = args.batch or 32
    opt = torch.optim.AdamW(network.parameters(), lr=args.lr or 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr or 2e-3, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    network.train()
    t0 = time.time()
    for step in range(steps):
        # Balanced batches: the first stage gives ~100 false positives per nodule.
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch - batch // 2)])
        x = _augment(x_all[idx].float(), rng)
        y = torch.from_numpy(y_all[idx])[:, None]
        loss = loss_fn(network(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            yield Progress(step + 1, steps, f"step {step + 1}/{steps}: loss {np.mean(history[-50:]):.4f}")
    network.eval()
    scoring, by_scoring = validation_froc(network, val_samples, "cpu")
    details = by_scoring[scoring]
    cpm = details["cpm"]
    threshold = suggest_threshold(details, FPS_AT_THRESHOLD)
    meta = {
        "name": Path(args.out).resolve().name,
        "version": "2.0.0",
        "task": "detection",
        "pipeline": "candidates",
        "scoring": scoring,
        "description": "two-stage nodule detector: blob candidates of every size (scale-normalised LoG and Hessian "
        "shape, in and on the lungs), then a 3D CNN on two views of each; trained by radlens train on "
        + ("SYNTHETIC phantoms" if ds.synthetic else f"the dataset {ds.name}"),
        "labels": ["nodule"],
        "arch": "nodule-classifier3d",
        "arch_kwargs": arch_kwargs,
        "input": block,
        "thresholds": {"score": threshold},
        "applicability": {
            "body_part": "chest",
            "region": "lungs",
            "sequence": "any",
            "lesion_diameter_mm": [3, 50],
            "slice_thickness_mm": [0.5, 5.0],
        },
        "training": {
            **provenance(ds, command, args.seed),
            "steps": steps,
            "batch": batch,
            "lr": args.lr or 2e-3,
            "seconds": round(time.time() - t0, 1),
            "samples": {"positive": len(pos), "negative": len(neg)},
            "split": {"train": [c.case_id for c in train_cases], "validation": [c.case_id for c in val]},
            "final_loss": float(np.mean(history[-50:])),
            **({"init": {"name": init.name, "sha256": init.sha256}} if init is not None else {}),
        },
        "data_sources": data_sources(ds),
        "evaluation": {
            "validation": {
                "cases": len(val),
                "scoring": scoring,
                "cpm_by_scoring": {k: r["cpm"] for k, r in by_scoring.items()},
                "cpm": cpm,
                "froc": details,
                **froc_at_threshold(details, threshold),
            }
        },
    }
    save_bundle(Path(args.out), network, meta)
    shutil.rmtree(Path(args.out) / "candidates", ignore_errors=True)  # the bundle is complete: not shipped
    return meta


def train_command(args: argparse.Namespace, command: str) -> int:
    from radlens.imaging.progress import run_showing
    from radlens.training.console import print_messages

    meta = run_showing(train(args, command), print_messages)
    print(json.dumps({"bundle": str(args.out), "validation_cpm": meta["evaluation"]["validation"]["cpm"]}))
    return 0
