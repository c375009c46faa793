"""``radlens train classify DATASET --out BUNDLE``: a study-level classifier (label present or absent).

Two phases, as the RSNA intracranial haemorrhage winners trained theirs. First the 2D CNN learns
slices: each slice's label where the folder gives it (``slice_labels.json``), else its study's
(a healthy study's slices are all healthy; a diseased study's slices are then weak positives);
batches are balanced by sampling (half positive slices). Then the CNN is frozen, every slice is
embedded once, and the bidirectional GRU learns from those cached embeddings (seconds per epoch):
the study label with its positive class weighted by the negative/positive ratio, plus the
per-slice labels where known; random runs of slices stand in for partial coverage. The threshold is
Youden's on the validation studies; every figure is on them (a held-out split of the folder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from radlens.imaging.progress import Progress, check_cancel
from radlens.training import metrics
from radlens.training.bundle_writer import data_sources, provenance
from radlens.training.datasets import Case, Dataset, load_image, read_dataset
from radlens.training.errors import TrainingError
from radlens.training.plan import split_cases

SPACING_ZYX = (4.0, 2.5, 2.5)
PATCH_YX = (80, 80)
CHANNELS = (16, 32, 64, 128)
HIDDEN = 64
NEGATIVE_NAMES = ("normal", "negative", "healthy", "absent", "none", "no", "0", "false")
MIN_RUN = 6  # the shortest run of slices the sequence phase trains on


def positive_label(ds: Dataset, asked: str | None) -> tuple[str, str]:
    """(positive, negative) class names: the one asked for, or the one of two not named like a negative."""
    names = list(ds.class_names)
    if len(names) != 2:
        raise TrainingError(f"{ds.root}: classify trains one label, present or absent; found the labels {names}")
    if asked is not None:
        if asked not in names:
            raise TrainingError(f"--positive {asked}: not a label of {ds.root} ({', '.join(names)})")
        return asked, next(n for n in names if n != asked)

    def negative(name: str) -> bool:
        low = name.lower()
        return low in NEGATIVE_NAMES or low.startswith(("no-", "no_", "non-", "not-"))

    neg = [n for n in names if negative(n)]
    if len(neg) != 1:
        raise TrainingError(f"{ds.root}: which of {names} is the finding? say it with --positive LABEL")
    return next(n for n in names if n != neg[0]), neg[0]


def input_block(modality: str, spacing_zyx=SPACING_ZYX, patch_yx=PATCH_YX) -> dict:
    """The classifier's input: slices of ``patch_yx`` on a coarse grid; MR z-scored, CT a soft-tissue window."""
    norm = {"kind": "ct-clip", "clip": [-100.0, 200.0], "scale": "unit"} if modality == "CT" else {"kind": "zscore"}
    return {
        "modality": modality,
        "spacing_zyx": [float(s) for s in spacing_zyx],
        "patch_zyx": [1, *(int(p) for p in patch_yx)],
        "normalization": norm,
        "crop": None,
    }


def labels_on_model_slices(labels: list[int], prepared) -> np.ndarray:
    """Per-slice labels of the input grid for each model slice: 1 if a slice it covers is positive, else
    -1 if one is unknown, else 0."""
    src = np.asarray(labels, dtype=int)
    grid, source = prepared.grid, prepared.source
    nz = grid.shape_zyx[0]
    cy, cx = (n / 2 for n in grid.shape_zyx[1:])
    half = 0.5 * grid.spacing_zyx[0] / source.spacing_zyx[0]
    at = np.stack([np.arange(nz, dtype=float), np.full(nz, cy), np.full(nz, cx)], axis=1)
    centre = source.lps_to_index(grid.index_to_lps(at))[:, 0]
    out = np.zeros(nz, dtype=np.int8)
    for k, c in enumerate(centre):
        lo, hi = int(np.floor(c - half + 0.5)), int(np.floor(c + half + 0.5))
        part = src[max(0, lo) : max(max(0, lo) + 1, min(len(src), hi))]
        out[k] = 1 if (part == 1).any() else (-1 if (part == -1).any() or not len(part) else 0)
    return out


def prepare_case(case: Case, spec, patch_yx, positive: str) -> dict:
    """One study as the network sees it: float16 slices, per-slice labels on the model grid, study label."""
    from radlens.inference.classify import slices_of
    from radlens.inference.preprocess import Preprocess

    prepared = Preprocess(spec)(load_image(case.image))
    slices, _ = slices_of(prepared.image, patch_yx)
    study = int(case.class_label == positive)
    if case.slice_labels is not None:
        per_slice = labels_on_model_slices(case.slice_labels, prepared)
    else:
        per_slice = np.full(len(slices), -1, dtype=np.int8)
    return {"id": case.case_id, "slices": slices.astype(np.float16), "slice_labels": per_slice, "study": study,
            "known_slices": case.slice_labels is not None}  # fmt: skip


def slice_targets(s: dict) -> np.ndarray:
    """The CNN's target per slice: the known label; unknown slices of a healthy study are healthy; with no
    slice labels at all, a diseased study's slices are weak positives; else -1 (not trained on)."""
    t = s["slice_labels"].astype(np.int8).copy()
    if s["study"] == 0:
        t[t == -1] = 0
    elif not s["known_slices"]:
        t[:] = 1
    return t


def _augment(x, rng: np.random.Generator):
    """Slices (N, 1, Y, X): left-right flips, a shift of a few pixels, intensity gain/offset, noise."""
    import torch

    n = x.shape[0]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
    x = x.roll((dy, dx), (2, 3))
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.2, 0.2, (n, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.uniform(0.0, 0.1, (n, 1, 1, 1)).astype(np.float32))
    return x * gain + shift + torch.randn_like(x) * noise


def _with_context(network, s: dict, ks) -> np.ndarray:
    """Slices ``ks`` of a study with the neighbours the network sees, (N, C, Y, X) float32."""
    import torch

    from radlens.inference.networks import context_indices

    n = len(s["slices"])
    idx = context_indices(torch.as_tensor(ks), torch.full((len(ks),), n), network.context).numpy()
    return s["slices"][idx].astype(np.float32)


def train_cnn(network, samples: list[dict], steps: int, batch: int, lr: float, rng, cancel=None):
    """Phase 1: the CNN and its slice head on balanced batches of slices. Yields Progress; returns the losses."""
    import torch

    index = [(i, k, t) for i, s in enumerate(samples) for k, t in enumerate(slice_targets(s)) if t >= 0]
    pos = [(i, k) for i, k, t in index if t == 1]
    neg = [(i, k) for i, k, t in index if t == 0]
    if not pos or not neg:
        raise TrainingError("the training studies give slices of one class only; the CNN needs both")
    opt = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    network.train()
    losses = []
    for step in range(steps):
        check_cancel(cancel, "training")
        picks = [pos[j] for j in rng.integers(0, len(pos), batch // 2)] + [
            neg[j] for j in rng.integers(0, len(neg), batch - batch // 2)
        ]
        x = torch.from_numpy(np.concatenate([_with_context(network, samples[i], [k]) for i, k in picks]))
        y = torch.tensor([1.0] * (batch // 2) + [0.0] * (batch - batch // 2))
        loss = loss_fn(network.slice_head(network.embed(_augment(x, rng)))[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 20 == 0 or step + 1 == steps:
            yield Progress(step + 1, steps, f"CNN step {step + 1}/{steps}: loss {np.mean(losses[-20:]):.4f}")
    return losses


def embed_all(network, samples: list[dict], batch: int = 64):
    """Every study's slice embeddings with the CNN frozen (eval mode), as (Z, E) float32 arrays."""
    import torch

    network.eval()
    out = []
    with torch.inference_mode():
        for s in samples:
            x = torch.from_numpy(_with_context(network, s, range(len(s["slices"]))))
            out.append(torch.cat([network.embed(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy())
    return out


def _run(s: dict, emb: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, int] | None:
    """A random run of a study's slices with its labels (half the time the whole study); None when the run's
    study label is unknown (a diseased study's run that holds only unknown slices)."""
    n = len(emb)
    labels = s["slice_labels"].astype(np.int8)
    if rng.random() < 0.5 or n <= MIN_RUN:
        return emb, labels, s["study"]
    length = int(rng.integers(MIN_RUN, n + 1))
    z0 = int(rng.integers(0, n - length + 1))
    part = labels[z0 : z0 + length]
    if s["study"] == 0:
        study = 0
    elif not s["known_slices"]:
        return emb, labels, 1  # where the finding is is unknown: only the whole study is labelled
    elif (part == 1).any():
        study = 1
    elif (part == -1).any():
        return None
    else:
        study = 0
    return emb[z0 : z0 + length], part, study


def train_sequence(network, samples, embeddings, steps: int, batch: int, lr: float, rng, cancel=None):
    """Phase 2: the GRU and its heads on cached embeddings; the positive studies weighted by the class ratio.
    Yields Progress; returns (losses, positive weight)."""
    import torch

    n_pos = sum(s["study"] for s in samples)
    n_neg = len(samples) - n_pos
    if not n_pos or not n_neg:
        raise TrainingError("the training studies are all of one class; a classifier needs both")
    pos_weight = torch.tensor(n_neg / n_pos)
    params = [p for name, p in network.named_parameters() if name.split(".")[0] in ("gru", "slice_out", "study_out")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    network.eval()
    network.dropout.train()
    losses = []
    for step in range(steps):
        check_cancel(cancel, "training")
        runs = []
        while len(runs) < batch:
            i = int(rng.integers(0, len(samples)))
            r = _run(samples[i], embeddings[i], rng)
            if r is not None:
                runs.append(r)
        t = max(len(e) for e, _, _ in runs)
        emb = torch.zeros((batch, t, embeddings[0].shape[1]))
        lab = torch.full((batch, t), -1.0)
        for b, (e, lb, _) in enumerate(runs):
            emb[b, : len(e)] = torch.from_numpy(e)
            lab[b, : len(lb)] = torch.from_numpy(lb.astype(np.float32))
        lengths = torch.tensor([len(e) for e, _, _ in runs])
        study_y = torch.tensor([float(s) for _, _, s in runs])
        study, per_slice = network.sequence(emb, lengths)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(study, study_y, pos_weight=pos_weight)
        known = lab >= 0
        if known.any():
            loss = loss + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(per_slice[known], lab[known])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            yield Progress(step + 1, steps, f"GRU step {step + 1}/{steps}: loss {np.mean(losses[-50:]):.4f}")
    network.eval()
    return losses, float(pos_weight)


def score(network, samples: list[dict], embeddings) -> tuple[np.ndarray, list[np.ndarray]]:
    """Study probabilities and per-slice probabilities of studies from their cached embeddings."""
    import torch

    network.eval()
    studies, slices = [], []
    with torch.inference_mode():
        for e in embeddings:
            study, per_slice = network.sequence(torch.from_numpy(e)[None])
            studies.append(float(torch.sigmoid(study)[0]))
            slices.append(torch.sigmoid(per_slice)[0].numpy())
    return np.asarray(studies), slices


def summarize(study_p, study_y, slice_p, slice_y, threshold: float, seed: int = 0) -> dict:
    """Study- and slice-level figures (slices: only those with a known label)."""
    p = np.concatenate(slice_p) if slice_p else np.zeros(0)
    y = np.concatenate(slice_y) if slice_y else np.zeros(0, dtype=int)
    known = y >= 0
    return {
        "study": metrics.classification_summary(study_p, study_y, threshold, seed),
        "slice": metrics.classification_summary(p[known], y[known], threshold, seed) if known.any() else None,
    }


def plot(figures: dict, title: str, path: Path) -> Path:
    """ROC (studies and slices) and the studies' reliability diagram as one PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from radlens.imaging.atomic import atomic_path

    fig = Figure(figsize=(8, 3.6), dpi=100)
    roc, rel = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for level in ("study", "slice"):
        f = figures.get(level)
        if not f or f["auc"] is None:
            continue
        pts = [(1 - q["specificity"], q["sensitivity"]) for q in f["roc"]]
        fpr, tpr = [0.0, *(a for a, _ in pts), 1.0], [0.0, *(b for _, b in pts), 1.0]
        lo, hi = f["auc_ci95"]
        roc.plot(fpr, tpr, label=f"{level}: AUC {f['auc']:.3f} [{lo:.3f}, {hi:.3f}] (n={f['cases']})")
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set_xlabel("1 − specificity")
    roc.set_ylabel("sensitivity")
    if roc.get_legend_handles_labels()[0]:
        roc.legend(fontsize=7, loc="lower right")
    roc.set_title("ROC", fontsize=9)
    bins = figures["study"]["reliability"]["bins"]
    rel.plot([0, 1], [0, 1], ":", color="grey")
    rel.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "o-")
    for b in bins:
        rel.annotate(str(b["count"]), (b["predicted"], b["observed"]), fontsize=6, xytext=(3, -8),
                     textcoords="offset points")  # fmt: skip
    rel.set_xlabel("predicted probability (studies)")
    rel.set_ylabel("observed rate")
    rel.set_title(f"reliability, ECE {figures['study']['reliability']['ece']:.3f}", fontsize=9)
    for ax in (roc, rel):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _init_bundle(init, modality: str):
    """--init: the bundle's network, input and verified weights (a classification bundle of the same modality)."""
    from radlens.inference.bundle import find_bundle, load_bundle

    folder = find_bundle(init)
    bundle = load_bundle(folder)
    where = f"--init {init}"
    if bundle.metadata.task != "classification" or bundle.metadata.arch != "slice-gru-classifier":
        raise TrainingError(f"{where}: a {bundle.metadata.task} bundle cannot start a classifier's training")
    if bundle.input.modality != modality:
        raise TrainingError(f"{where}: a {bundle.input.modality} bundle, a {modality} dataset")
    return bundle, {"path": str(folder), "name": bundle.name, "sha256": bundle.sha256}


def train(args: argparse.Namespace, command: str, cancel=None):
    """A generator (Progress) that trains the classifier and writes the bundle; returns its metadata."""
    import torch

    from radlens.inference.bundle import save_bundle
    from radlens.inference.engine import cpu_threads
    from radlens.inference.metadata import InputSpec
    from radlens.inference.networks import build_network

    # Every core but one: the small kernels here (a GRU step, a batch of 80 px slices) slow down tenfold
    # and more when torch's threads compete with another process for the cores.
    torch.set_num_threads(cpu_threads())
    if args.resume:
        raise TrainingError("--resume: a classifier trains in minutes and keeps no checkpoint; start it again")
    if args.patch and args.patch[0] != 1:
        raise TrainingError(f"--patch {' '.join(map(str, args.patch))}: a slice classifier's patch is 1 Y X")
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    ds = read_dataset(args.dataset, "classify")
    positive, negative = positive_label(ds, args.positive)
    if ds.modality not in ("CT", "MR"):
        raise TrainingError(f"{ds.root}: say the modality (CT or MR) in source.json; found {ds.modality}")
    init = None
    if args.init:
        bundle, init = _init_bundle(args.init, ds.modality)
        network, arch_kwargs = bundle.network, dict(bundle.metadata.arch_kwargs)
        block = bundle.metadata.document["input"]
    else:
        arch_kwargs = {"channels": list(args.channels or CHANNELS), "hidden": HIDDEN, "dropout": 0.2}
        if args.context:
            arch_kwargs["context"] = int(args.context)
        block = input_block(ds.modality, args.spacing or SPACING_ZYX, tuple(args.patch[1:]) if args.patch else PATCH_YX)
        network = build_network("slice-gru-classifier", **arch_kwargs)
    spec = InputSpec.from_json(block)
    ids = [c.case_id for c in ds.train_cases]
    train_ids, val_ids = split_cases(ids, args.seed, args.val_fraction or 0.2)
    by_id = {c.case_id: c for c in ds.train_cases}
    samples = []
    for i, case_id in enumerate(train_ids + val_ids):
        check_cancel(cancel, "training")
        yield Progress(i, len(ids), f"preparing {case_id}")
        samples.append(prepare_case(by_id[case_id], spec, spec.patch_zyx[1:], positive))
    train_s, val_s = samples[: len(train_ids)], samples[len(train_ids) :]
    t0 = time.time()
    cnn_steps = (args.epochs or 4) * (args.iterations or 100)
    batch = args.batch or 32
    lr = args.lr or 2e-3
    cnn_losses = yield from train_cnn(network, train_s, cnn_steps, batch, lr, rng, cancel)
    yield Progress(0, 1, "embedding every slice")
    train_e, val_e = embed_all(network, train_s), embed_all(network, val_s)
    gru_steps = max(100, cnn_steps // 2)
    gru_losses, pos_weight = yield from train_sequence(network, train_s, train_e, gru_steps, 16, 2e-3, rng, cancel)
    study_p, slice_p = score(network, val_s, val_e)
    study_y = np.asarray([s["study"] for s in val_s])
    threshold = metrics.youden_threshold(study_p, study_y) if len(set(study_y.tolist())) == 2 else 0.5
    figures = summarize(study_p, study_y, slice_p, [s["slice_labels"] for s in val_s], threshold, args.seed)
    out = Path(args.out)
    meta = {
        "name": out.resolve().name,
        "version": "1.0.0",
        "task": "classification",
        "description": f"study-level classifier: {positive} present or absent ({ds.modality}); a 2D CNN per slice, "
        "a bidirectional GRU across slices, Grad-CAM heat maps; trained by radlens train on "
        + ("SYNTHETIC data" if ds.synthetic else f"the dataset {ds.name}"),
        "labels": [positive],
        "negative_label": negative,
        "arch": "slice-gru-classifier",
        "arch_kwargs": arch_kwargs,
        "input": block,
        "thresholds": {"probability": threshold},
        "training": {
            **provenance(ds, command, args.seed),
            "phases": {
                "cnn": {"steps": cnn_steps, "batch": batch, "lr": lr, "final_loss": float(np.mean(cnn_losses[-20:]))},
                "sequence": {
                    "steps": gru_steps,
                    "batch": 16,
                    "lr": 2e-3,
                    "final_loss": float(np.mean(gru_losses[-50:])),
                },
            },
            "class_balance": {
                "slices": "sampling: every CNN batch half positive, half negative slices",
                "studies": f"weighting: positive studies' loss × {pos_weight:.3f} (negatives/positives)",
                "positive_weight": pos_weight,
            },
            "studies": {"positive": sum(s["study"] for s in samples), "negative": sum(1 - s["study"] for s in samples)},
            "seconds": round(time.time() - t0, 1),
            "split": {"train": train_ids, "validation": val_ids},
            **({"init": init} if init else {}),
        },
        "data_sources": data_sources(ds),
        "evaluation": {"validation": {"source": "in-generator" if ds.synthetic else "held-out split", **figures}},
    }
    save_bundle(out, network, meta)
    plot(figures, f"{meta['name']}: validation split of {ds.name}", out / "evaluation.png")
    return meta


def train_command(args: argparse.Namespace, command: str) -> int:
    from radlens.imaging.progress import run_showing
    from radlens.training.console import print_messages

    meta = run_showing(train(args, command), print_messages)
    study = meta["evaluation"]["validation"]["study"]
    print(json.dumps({"bundle": str(args.out), "validation_auc": study["auc"], "auc_ci95": study["auc_ci95"]}))
    return 0
