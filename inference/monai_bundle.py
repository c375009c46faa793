"""MONAI bundles (``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt``) run in RadLens.

A MONAI bundle's config is a small program: ``_target_`` names a class to build, ``$`` strings are
Python that MONAI's parser evaluates, ``@`` strings refer to other entries, ``%`` ones to other files.
Here it is data. Only the four sections inference needs are read (``network_def``, ``preprocessing``,
``inferer``, ``postprocessing``; the rest of the file, where ``$`` expressions usually live, is never
looked at); in them every ``_target_`` must be on an allow-list, ``@`` references are resolved as
plain lookups, and a ``$`` expression or a ``%`` macro is refused with the file and the entry
(MONAI advisory GHSA-873f-pvrv-4x83). The weights are read once, at import, weights-only, and
re-saved as safetensors. At run time the allow-listed MONAI transforms themselves prepare the image
(MONAI's axis order and RAS affine, as its LoadImage gives them), RadLens' sliding windows run the
network on MONAI's window grid, and MONAI's own ``Invertd`` brings the result back to the input grid,
so a bundle segments in RadLens as it does in MONAI.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np

from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume
from radlens.inference.errors import BundleError

MONAI_NETWORKS = ("UNet", "BasicUNet", "SegResNet", "SwinUNETR", "DynUNet", "AttentionUnet", "UNETR")
PREPROCESSING = (
    "LoadImaged", "EnsureChannelFirstd", "EnsureTyped", "CastToTyped", "Orientationd", "Spacingd",
    "ScaleIntensityRanged", "ScaleIntensityRangePercentilesd", "NormalizeIntensityd", "ScaleIntensityd",
    "CropForegroundd",
)  # fmt: skip
POSTPROCESSING = (
    "Activationsd",
    "AsDiscreted",
    "Invertd",
    "SaveImaged",
    "EnsureTyped",
    "KeepLargestConnectedComponentd",
)
INFERERS = ("SlidingWindowInferer", "SimpleInferer")
# The inferer's arguments that shape the result, and those that only say where and how it runs (RadLens
# decides that itself; a bundle often gives them as ``$torch.device(...)``, so they are dropped unread).
INFERER_ARGS = ("roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale", "padding_mode", "cval")
INFERER_RUNTIME = (
    "device", "sw_device", "progress", "cache_roi_weight_map", "cpu_thresh", "buffer_steps", "buffer_dim",
    "_requires_", "_disabled_", "_desc_",
)  # fmt: skip
PADDING = {"constant": "constant", "replicate": "edge", "reflect": "reflect", "circular": "wrap"}
# Arguments MONAI once took and later dropped, which model-zoo configs still carry: left out, as MONAI ignored them.
DROPPED_ARGS = {"SwinUNETR": ("img_size",)}
# Steps RadLens does itself: reading (the Volume is already in memory) and writing (findings are its output).
SKIPPED = ("LoadImaged", "EnsureChannelFirstd", "SaveImaged")
PREFIXES = ("monai.networks.nets.", "monai.transforms.", "monai.inferers.")


def is_monai_bundle(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "configs" / "metadata.json").is_file() and any((p / "configs").glob("inference.*"))


def _target_name(value, allowed, where: str, path: Path) -> str:
    name = str(value)
    for prefix in PREFIXES:
        name = name.removeprefix(prefix)
    if name not in allowed:
        raise BundleError(path, f"{where}: _target_ {value!r} is not one RadLens builds ({', '.join(allowed)})")
    return name


def _resolve(value, config: dict, where: str, path: Path, seen=()):
    """A config value as plain data: ``@`` references looked up, ``$`` and ``%`` refused."""
    if isinstance(value, str):
        if value.startswith(("$", "%")):
            kind = "expression" if value.startswith("$") else "macro"
            raise BundleError(path, f"{where}: {kind} {value[:60]!r} is never evaluated; RadLens reads configs as data")
        if value.startswith("@"):
            ref = value[1:]
            if ref in seen:
                raise BundleError(path, f"{where}: circular reference {value!r}")
            if ref == "preprocessing":
                return {"_ref_": "preprocessing"}  # Invertd's transform: the preprocessing RadLens built
            node = config
            for part in ref.replace("::", "#").split("#"):  # MONAI's id separator; "::" in older bundles
                node = node.get(part) if isinstance(node, dict) else (node[int(part)] if part.isdigit() else None)
                if node is None:
                    raise BundleError(path, f"{where}: reference {value!r} names nothing in the config")
            return _resolve(node, config, where, path, (*seen, ref))
        return value
    if isinstance(value, list):
        return [_resolve(v, config, f"{where}[{i}]", path, seen) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _resolve(v, config, f"{where}.{k}", path, seen) for k, v in value.items() if k not in ("_desc_",)}
    return value


def _transforms(section, allowed, where: str, config: dict, path: Path) -> list[dict]:
    """A Compose (or a list) of allow-listed transforms, each as {"_target_": name, **literal kwargs}.

    The steps RadLens does itself (``SKIPPED``: reading, writing) keep only their name: their
    arguments (output folders, often ``$`` expressions) are never looked at.
    """
    section = _resolve(section, config, where, path) if isinstance(section, str) else section
    items = section.get("transforms") if isinstance(section, dict) else section
    if (
        isinstance(section, dict)
        and str(section.get("_target_", "Compose")).removeprefix("monai.transforms.") != "Compose"
    ):
        items = [section]
    items = _resolve(items, config, where, path) if isinstance(items, str) else items
    if not isinstance(items, list):
        raise BundleError(path, f"{where} must be a Compose of transforms or a list of them")
    out = []
    for i, t in enumerate(items):
        here = f"{where}[{i}]"
        t = _resolve(t, config, here, path) if isinstance(t, str) else t
        if not isinstance(t, dict) or "_target_" not in t:
            raise BundleError(path, f"{here} is not a transform with a _target_")
        if t.get("_disabled_") is True:
            continue
        name = _target_name(t["_target_"], allowed, here, path)
        if name in SKIPPED:
            out.append({"_target_": name})
            continue
        kwargs = {k: v for k, v in t.items() if k not in ("_target_", "_disabled_", "_requires_", "_mode_", "_desc_")}
        out.append({"_target_": name, **_resolve(kwargs, config, here, path)})
    return out


def _inferer(config: dict, path: Path) -> dict:
    """The inferer's result-shaping arguments as literal data; where it runs is RadLens' choice."""
    block = config.get("inferer")
    block = _resolve(block, config, "inferer", path) if isinstance(block, str) else block
    if block is None:
        return {"_target_": "SimpleInferer"}
    if not isinstance(block, dict):
        raise BundleError(path, "inferer must be an object with a _target_")
    target = _target_name(block.get("_target_"), INFERERS, "inferer", path)
    unknown = sorted(set(block) - {"_target_", *INFERER_ARGS, *INFERER_RUNTIME})
    if unknown:
        raise BundleError(
            path, f"inferer: {', '.join(unknown)} not supported (RadLens honours {', '.join(INFERER_ARGS)})"
        )
    out = {
        "_target_": target,
        **_resolve({k: v for k, v in block.items() if k in INFERER_ARGS}, config, "inferer", path),
    }
    if str(out.get("padding_mode", "constant")) not in PADDING:
        raise BundleError(path, f"inferer.padding_mode {out['padding_mode']!r} is not one of {', '.join(PADDING)}")
    return out


def read_inference_config(bundle: str | os.PathLike) -> dict:
    """The four sections of configs/inference.json as allow-listed literal data."""
    path = Path(bundle) / "configs" / "inference.json"
    if not path.is_file():
        found = sorted(p.name for p in (Path(bundle) / "configs").glob("inference.*"))
        raise BundleError(
            Path(bundle) / "configs", f"needs inference.json (found {', '.join(found)}; YAML not supported)"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(path, f"not readable as JSON: {err}") from None
    missing = [s for s in ("network_def", "preprocessing") if s not in config]
    if missing:
        raise BundleError(path, f"missing {', '.join(missing)}")
    net = _resolve(config["network_def"], config, "network_def", path)
    if not isinstance(net, dict) or "_target_" not in net:
        raise BundleError(path, "network_def needs a _target_")
    target = _target_name(net["_target_"], MONAI_NETWORKS, "network_def", path)
    dropped = DROPPED_ARGS.get(target, ())
    network = {"target": target, "kwargs": {k: v for k, v in net.items() if not k.startswith("_") and k not in dropped}}
    return {
        "network": network,
        "preprocessing": _transforms(config["preprocessing"], PREPROCESSING, "preprocessing", config, path),
        "inferer": _inferer(config, path),
        "postprocessing": _transforms(config.get("postprocessing", []), POSTPROCESSING, "postprocessing", config, path),
    }


def _read_weights(bundle: Path) -> dict:
    import torch

    from radlens.inference.pickled import load_weights_only

    models = bundle / "models"
    path = models / "model.pt"
    if not path.is_file():
        found = sorted(p.name for p in models.glob("*")) if models.is_dir() else []
        why = "TorchScript is code and is not run" if (models / "model.ts").exists() else "missing"
        raise BundleError(path, f"{why} (found: {', '.join(found) or 'nothing'}); RadLens imports a state dict")
    state = load_weights_only(path)
    if not isinstance(state, dict):
        raise BundleError(path, "not a state dict")
    for key in ("model", "state_dict", "network"):
        if isinstance(state.get(key), dict):
            state = state[key]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(path, "not a state dict of tensors")
    return state


def import_monai_bundle(
    bundle: str | os.PathLike, out: str | os.PathLike | None = None, name: str | None = None
) -> Path:
    """Write a RadLens bundle from a MONAI bundle folder (default: into the user's models)."""
    from radlens.inference.bundle import folder_name_for, save_bundle, user_models_dir
    from radlens.inference.colours import read_colour_table
    from radlens.inference.networks import build_network

    bundle = Path(bundle)
    meta_path = bundle / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(meta_path, f"not readable as JSON: {err}") from None
    settings = read_inference_config(bundle)
    network = build_network("monai", **settings["network"])
    try:
        network.load_state_dict(_read_weights(bundle), strict=True)
    except RuntimeError as err:
        raise BundleError(bundle / "models" / "model.pt", f"weights do not fit network_def: {str(err)[:300]}") from None
    fmt = meta.get("network_data_format") or {}
    image = (fmt.get("inputs") or {}).get("image") or {}
    pred = (fmt.get("outputs") or {}).get("pred") or {}
    channels = pred.get("channel_def") or {}
    n_out = int(pred.get("num_channels") or settings["network"]["kwargs"].get("out_channels") or 2)
    labels = [str(channels.get(str(c), f"label {c}")) for c in range(1, n_out)]
    modality = "CT" if str(image.get("modality", "")).upper() == "CT" else "MR"
    bundle_name = name or str(meta.get("name") or bundle.name)
    metadata = {
        "name": bundle_name,
        "version": str(meta.get("version", "0")),
        "task": "segmentation",
        "description": str(meta.get("description", "")),
        "pipeline": "monai",
        "arch": "monai",
        "arch_kwargs": settings["network"],
        "labels": labels,
        "monai": {k: settings[k] for k in ("preprocessing", "inferer", "postprocessing")},
        "input": {
            "modality": modality,
            "spacing_zyx": _spacing_zyx(settings["preprocessing"]),
            "patch_zyx": roi_size(settings["inferer"], (96, 96, 96))[::-1],
            "crop": None,
        },
        "applicability": {"modality": modality, "body_part": "any", "sequence": "any"},
        "training": {
            "source": "MONAI bundle",
            "folder": str(bundle.resolve()),
            "monai_version": meta.get("monai_version"),
            "authors": meta.get("authors"),
            "license": meta.get("copyright") or meta.get("license"),
            "data_source": meta.get("data_source"),
            "command": f"radlens import {bundle}",
        },
        "evaluation": {"reported_by_the_bundle": meta["performance"]} if meta.get("performance") else {},
        "colours": read_colour_table(bundle, labels),
    }
    target = Path(out) if out is not None else user_models_dir() / folder_name_for(bundle_name)
    return save_bundle(target, network, metadata)


def _spacing_zyx(preprocessing: list[dict]) -> list[float]:
    """The grid the network sees, for display: Spacingd's pixdim (x, y, z) reversed, else 1 mm."""
    for t in preprocessing:
        if t["_target_"] == "Spacingd":
            pixdim = t.get("pixdim")
            pixdim = [pixdim] * 3 if isinstance(pixdim, int | float) else list(pixdim)
            return [float(v) for v in pixdim[:3]][::-1]
    return [1.0, 1.0, 1.0]


def _build(items: list[dict], preprocessing=None):
    import monai.transforms as mt

    built = []
    for t in items:
        if t["_target_"] in SKIPPED:
            continue
        kwargs = {k: (preprocessing if v == {"_ref_": "preprocessing"} else v) for k, v in t.items() if k != "_target_"}
        built.append(getattr(mt, t["_target_"])(**kwargs))
    return mt.Compose(built)


def run(
    network,
    volume: Volume,
    settings: dict,
    *,
    device: str = "cpu",
    cancel: threading.Event | None = None,
    what: str = "model",
    amp: bool = True,
    batch: int | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, str]]:
    """The bundle on one volume: yields window progress, returns (label map, confidence × 255, device)."""
    import monai.transforms as mt
    import torch
    from monai.data import MetaTensor

    from radlens.inference.engine import sliding_windows

    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine_lps  # MONAI's LoadImage: (x, y, z) index → RAS
    array = np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0)), dtype=np.float32)
    image = MetaTensor(torch.from_numpy(array)[None], affine=torch.as_tensor(ras))
    pre = _build(settings["preprocessing"])
    data = pre({"image": image})
    x = data["image"]
    inferer = settings["inferer"]
    image_shape = tuple(x.shape[1:])
    roi = roi_size(inferer, image_shape)
    padded, unpad = _pad_like_monai(x[0].numpy(), roi, inferer)
    output, used = yield from sliding_windows(
        network,
        padded,
        roi,
        device=device,
        cancel=cancel,
        what=what,
        amp=amp,
        batch=batch or int(inferer.get("sw_batch_size", 1)),
        blend="gaussian" if inferer.get("mode") == "gaussian" else "constant",
        grid=_grid(padded.shape, roi, inferer),
    )
    logits = output[(slice(None), *unpad)]
    # As MetaTensors, like the inferer's output, so Invertd takes the image's transforms for them.
    data["pred"] = MetaTensor(logits)
    data["confidence"] = MetaTensor(torch.softmax(logits.float(), dim=0).max(dim=0, keepdim=True).values)
    post = settings["postprocessing"]
    if not any(t["_target_"] == "Invertd" for t in post):
        post = [
            *post,
            {"_target_": "Invertd", "keys": "pred", "transform": {"_ref_": "preprocessing"}, "orig_keys": "image"},
        ]
    data = _build(post, pre)(data)
    data = mt.Invertd("confidence", transform=pre, orig_keys="image", nearest_interp=False)(data)
    pred = torch.as_tensor(data["pred"]).float()
    labels = pred.argmax(dim=0) if pred.shape[0] > 1 else pred[0].round()
    confidence = torch.as_tensor(data["confidence"])[0].clamp(0, 1)
    label_map = np.transpose(labels.numpy().astype(np.uint8 if pred.shape[0] <= 256 else np.uint16), (2, 1, 0))
    confidence = np.transpose(np.round(confidence.numpy() * 255).astype(np.uint8), (2, 1, 0))
    return label_map, confidence, used


def _per_axis(value, n: int) -> list:
    return list(value) if isinstance(value, list | tuple) else [value] * n


def roi_size(inferer: dict, image_shape) -> list[int]:
    """The window, as MONAI's ``fall_back_tuple`` reads ``roi_size``: one number for every axis, and a
    non-positive entry (or a SimpleInferer) meaning the image's own size along that axis."""
    roi = _per_axis(inferer.get("roi_size") or 0, len(image_shape))
    return [int(r) if int(r) > 0 else int(s) for r, s in zip(roi, image_shape, strict=True)]


def _pad_like_monai(image: np.ndarray, roi, inferer: dict) -> tuple[np.ndarray, tuple[slice, ...]]:
    """SlidingWindowInferer's padding of an image smaller than the window: split evenly, odd extra after,
    with its ``padding_mode`` (``cval`` where constant)."""
    pads = [(max(0, r - s) // 2, max(0, r - s) - max(0, r - s) // 2) for s, r in zip(image.shape, roi, strict=True)]
    if not any(a or b for a, b in pads):
        return image, tuple(slice(None) for _ in image.shape)
    mode = PADDING[str(inferer.get("padding_mode", "constant"))]
    extra = {"constant_values": float(inferer.get("cval", 0.0))} if mode == "constant" else {}
    unpad = tuple(slice(a, a + s) for (a, _), s in zip(pads, image.shape, strict=True))
    return np.pad(image, pads, mode=mode, **extra), unpad


def _grid(shape, roi, inferer: dict):
    """SlidingWindowInferer's windows (its scan interval per axis) and its blend (MONAI's Gaussian with the
    bundle's ``sigma_scale``, centred on the window)."""
    from radlens.inference.engine import WindowGrid, window_profile, window_starts

    overlap = _per_axis(inferer.get("overlap", 0.25), len(shape))
    starts = [window_starts(s, r, float(o)) for s, r, o in zip(shape, roi, overlap, strict=True)]
    if inferer.get("mode") != "gaussian":
        return WindowGrid.from_starts(shape, roi, starts, [window_profile(r, "constant") for r in roi])
    sigma = _per_axis(inferer.get("sigma_scale", 0.125), len(shape))
    profiles = [
        np.exp(-0.5 * ((np.arange(r) - (r - 1) / 2.0) / (float(s) * r)) ** 2).astype(np.float32)
        for r, s in zip(roi, sigma, strict=True)
    ]
    return WindowGrid.from_starts(shape, roi, starts, profiles)
