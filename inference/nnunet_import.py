"""An nnU-Net v2 results folder → a RadLens bundle, once: after this, only safetensors and JSON are read.

A results folder (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_final.pth``) is what
``nnUNetv2_train`` leaves and what TotalSegmentator and most challenge winners ship. Its checkpoints
are pickles; they are opened here only, with ``torch.load(weights_only=True)`` (which refuses
anything but tensors and plain containers, plus numpy's scalar types that nnU-Net's training log
holds), and the weights are re-saved as safetensors. Plans and dataset.json are data: the network
is one of the allow-listed dynamic_network_architectures U-Nets (``networks.build_nnunet``), the
preprocessing is :mod:`radlens.inference.nnunet`, and nothing in either file is ever evaluated.
Several folds become one ensemble whose logits are averaged, as nnU-Net averages its folds.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from radlens.inference.bundle import folder_name_for, read_document, save_bundle, user_models_dir
from radlens.inference.colours import read_colour_table
from radlens.inference.errors import BundleError
from radlens.inference.nnunet import CONFIGURATIONS, RESAMPLING_FUNCTION, NnunetPlan
from radlens.inference.pickled import load_weights_only

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
SOURCE = "nnU-Net v2 results folder"


def is_nnunet_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an nnU-Net v2 trained-model folder."""
    p = Path(path)
    return (p / "dataset.json").is_file() and (p / "plans.json").is_file() and any(p.glob("fold_*"))


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(path, f"not readable as JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    return doc


def read_checkpoint(path: str | os.PathLike) -> dict:
    """An nnU-Net checkpoint, opened weights-only (:mod:`radlens.inference.pickled`)."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise BundleError(path, "not an nnU-Net checkpoint (no network_weights)")
    return checkpoint


def _configuration(plans: dict, name: str, where: Path) -> dict:
    """A configuration of plans.json with what it ``inherits_from`` filled in."""
    configs = plans.get("configurations") or {}
    if name not in configs:
        raise BundleError(where, f"plans.json has no configuration {name!r} (it has: {', '.join(configs)})")
    block, seen = dict(configs[name]), {name}
    while "inherits_from" in block:
        parent = block.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise BundleError(where, f"configuration {name!r} inherits from {parent!r}, which is missing or circular")
        seen.add(parent)
        block = {**configs[parent], **block}
    return block


def _labels(dataset: dict, where: Path) -> list[str]:
    """Foreground label names in output-channel order (background 0 and nnU-Net's ignore label left out)."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise BundleError(where, "dataset.json has no labels")
    if any(isinstance(v, list | tuple) for v in labels.values()):
        raise BundleError(where, "region-based nnU-Net models (labels given as lists) are not supported yet")
    values = {k: v for k, v in labels.items() if k != "ignore"}
    ordered = sorted(values, key=lambda k: values[k])
    if [values[k] for k in ordered] != list(range(len(ordered))):
        raise BundleError(where, f"labels must be numbered 0..N without gaps, not {values}")
    return ordered[1:]


def _folds(folder: Path, folds, checkpoint: str | None) -> list[Path]:
    names = [f"fold_{f}" for f in folds] if folds else sorted(p.name for p in folder.glob("fold_*"))
    found = []
    for name in names:
        fold = folder / name
        candidates = [checkpoint] if checkpoint else CHECKPOINTS
        path = next((fold / c for c in candidates if (fold / c).is_file()), None)
        if path is None:
            raise BundleError(fold, f"no {' or '.join(candidates)}")
        found.append(path)
    if not found:
        raise BundleError(folder, "no fold_* folder with a checkpoint")
    return found


def _strip_prefixes(state: dict) -> dict:
    """Weights of a compiled or DDP-wrapped network under the plain module's names."""
    return {re.sub(r"^(_orig_mod\.|module\.)+", "", k): v for k, v in state.items()}


def _plan(plans: dict, config: dict, name: str, mirror, where: Path) -> NnunetPlan:
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key) != RESAMPLING_FUNCTION:
            raise BundleError(where, f"{key} {config.get(key)!r} is not supported (only {RESAMPLING_FUNCTION})")
    props = (plans.get("foreground_intensity_properties_per_channel") or {}).get("0", {})
    block = {
        "configuration": name,
        "transpose_forward": plans.get("transpose_forward", [0, 1, 2]),
        "spacing": config.get("spacing"),
        "patch_size": config.get("patch_size"),
        "normalization": (config.get("normalization_schemes") or [None])[0],
        "use_mask_for_norm": bool((config.get("use_mask_for_norm") or [False])[0]),
        "intensity": {k: props[k] for k in ("mean", "std", "percentile_00_5", "percentile_99_5") if k in props},
        "data_resampling": config.get("resampling_fn_data_kwargs"),
        "probability_resampling": config.get("resampling_fn_probabilities_kwargs"),
        "mirror_axes": list(mirror or ()),
    }
    return NnunetPlan.from_json(block, where / "plans.json")


def _validation_summaries(checkpoints: list[Path]) -> dict:
    """nnU-Net's own validation Dice per fold, when the folder keeps it (its split, not RadLens' measurement)."""
    out = {}
    for ck in checkpoints:
        summary = ck.parent / "validation" / "summary.json"
        try:
            mean = json.loads(summary.read_text())["foreground_mean"]["Dice"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out[ck.parent.name] = round(float(mean), 4)
    return out


def import_nnunet(
    folder: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    folds=None,
    checkpoint: str | None = None,
    name: str | None = None,
) -> Path:
    """Write a bundle from an nnU-Net v2 results folder; returns the bundle folder (default: the user's models)."""
    from radlens.inference.networks import build_network

    folder = Path(folder)
    dataset = _read_json(folder / "dataset.json")
    plans = _read_json(folder / "plans.json")
    labels = _labels(dataset, folder / "dataset.json")
    channels = dataset.get("channel_names") or dataset.get("modality") or {"0": "CT"}
    if len(channels) != 1:
        shown = ", ".join(str(v) for v in channels.values())
        raise BundleError(
            folder, f"needs {len(channels)} input channels ({shown}); multi-channel models are not supported yet"
        )
    paths = _folds(folder, folds, checkpoint)
    checkpoints = [read_checkpoint(p) for p in paths]
    first = checkpoints[0]
    configuration = str((first.get("init_args") or {}).get("configuration", ""))
    if any(str((c.get("init_args") or {}).get("configuration", "")) != configuration for c in checkpoints):
        raise BundleError(folder, "the folds were trained with different configurations")
    if configuration not in CONFIGURATIONS:
        raise BundleError(
            folder, f"configuration {configuration!r} is not supported yet (supported: {', '.join(CONFIGURATIONS)})"
        )
    config = _configuration(plans, configuration, folder / "plans.json")
    if config.get("previous_stage"):
        raise BundleError(folder, f"configuration {configuration!r} is a cascade stage: not supported yet")
    arch = config.get("architecture")
    if not isinstance(arch, dict) or "network_class_name" not in arch:
        raise BundleError(
            folder / "plans.json", "no architecture block (plans from nnU-Net before 2.4 are not supported)"
        )
    plan = _plan(plans, config, configuration, first.get("inference_allowed_mirroring_axes"), folder)

    member = {
        "network_class": arch["network_class_name"],
        "arch_kwargs": arch.get("arch_kwargs") or {},
        "block_names": list(arch.get("_kw_requires_import") or ()),
        "input_channels": 1,
        "num_classes": len(labels) + 1,
    }
    arch_name, arch_kwargs = "nnunet", member
    if len(checkpoints) > 1:
        arch_name, arch_kwargs = (
            "ensemble",
            {"member_arch": "nnunet", "member_arch_kwargs": member, "members": len(checkpoints)},
        )
    network = build_network(arch_name, **arch_kwargs)
    members = network.members if len(checkpoints) > 1 else [network]
    for path, ck, net in zip(paths, checkpoints, members, strict=True):
        target = net.network if hasattr(net, "network") else net  # a 2D network inside its SliceNetwork
        try:
            target.load_state_dict(_strip_prefixes(ck["network_weights"]), strict=True)
        except RuntimeError as err:
            raise BundleError(
                path, f"weights do not fit the plans' network: {str(err).splitlines()[0][:300]}"
            ) from None

    modality = "CT" if plan.normalization == "CTNormalization" or str(channels.get("0", "")).upper() == "CT" else "MR"
    trainer = str(first.get("trainer_name", "nnUNetTrainer"))
    plans_name = str(plans.get("plans_name", "nnUNetPlans"))
    dataset_name = str(plans.get("dataset_name") or folder.parent.name)
    bundle_name = name or f"{dataset_name}-{configuration}"
    spacing = list(plan.spacing)
    if plan.is_2d:  # the through-plane spacing a 2D model keeps: the training set's median
        spacing = [float((plans.get("original_median_spacing_after_transp") or [1.0])[0]), *spacing]
    validation = _validation_summaries(paths)
    metadata = {
        "name": bundle_name,
        "version": f"{trainer}__{plans_name}__{configuration}",
        "task": "segmentation",
        "description": str(dataset.get("description") or dataset.get("name") or f"nnU-Net model for {dataset_name}"),
        "pipeline": "nnunet",
        "arch": arch_name,
        "arch_kwargs": arch_kwargs,
        "labels": labels,
        "nnunet": plan.to_json(),
        "input": {
            "modality": modality,
            "spacing_zyx": spacing,
            "patch_zyx": [1, *plan.patch_size] if plan.is_2d else list(plan.patch_size),
            "crop": None,
            "mirror_axes": [],
        },
        "applicability": {"modality": modality, "body_part": "any", "sequence": "any"},
        "training": {
            "source": SOURCE,
            "folder": str(folder.resolve()),
            "trainer": trainer,
            "plans": plans_name,
            "configuration": configuration,
            "folds": [p.parent.name.removeprefix("fold_") for p in paths],
            "checkpoint": paths[0].name,
            "epochs": first.get("current_epoch"),
            "channel": str(channels.get("0", "")),
            "command": f"radlens import {folder}",
        },
        "evaluation": {"nnunet_validation_dice": validation} if validation else {},
        "colours": read_colour_table(folder, labels),
    }
    target = Path(out) if out is not None else user_models_dir() / folder_name_for(bundle_name)
    return save_bundle(target, network, metadata)


def imported_bundle(folder: str | os.PathLike) -> Path:
    """The bundle for an nnU-Net results folder or a MONAI bundle given to ``--model``: imported into the
    user's models on first use (with a one-line notice), the earlier import reused afterwards."""
    folder = Path(folder).resolve()
    models = user_models_dir()
    if models.is_dir():
        for bundle in sorted(models.iterdir()):
            try:
                if (read_document(bundle).get("training") or {}).get("folder") == str(folder):
                    return bundle
            except BundleError:
                continue
    from radlens.inference.monai_bundle import import_monai_bundle, is_monai_bundle

    kind = "MONAI bundle" if is_monai_bundle(folder) else "nnU-Net model"
    print(f"radlens: importing the {kind} {folder} into {models} (once)", file=sys.stderr)
    return import_monai_bundle(folder) if is_monai_bundle(folder) else import_nnunet(folder)
