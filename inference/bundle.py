"""Model bundles: a folder with metadata.json and model.safetensors, nothing executable.

(docs/architecture.md, "Model bundles")

Loading never unpickles and never evaluates text: the network comes from the architecture registry
(:mod:`radlens.inference.networks`), the weights from safetensors only, checked against the sha256 recorded
in metadata.json and loaded strictly. A pickle file (.pt/.pth/.pkl/.ckpt/.pickle) in a bundle is
refused outright — it is never opened. Field names follow MONAI's bundle metadata where one exists
(``version``, ``task``, ``description``, ``monai_version``, ``pytorch_version``, ``network_data_format``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radlens.imaging.atomic import atomic_path, write_json
from radlens.inference.errors import BundleError
from radlens.inference.metadata import BundleMetadata, InputSpec

METADATA = "metadata.json"
WEIGHTS = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle is, read from metadata.json alone (cheap: no torch, no weights)."""

    name: str
    version: str
    task: str
    modality: str
    description: str
    path: Path
    threshold: float | None = None
    min_component_ml: float = 0.0  # segmenters: smaller connected components are dropped

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "modality": self.modality,
            "description": self.description,
            "path": str(self.path),
            "threshold": self.threshold,
            "min_component_ml": self.min_component_ml,
        }


@dataclass(frozen=True, eq=False)
class LoadedBundle:
    """A bundle ready to run: its metadata and the network with verified weights (eval mode, on the CPU)."""

    info: BundleInfo
    metadata: BundleMetadata
    network: Any  # torch.nn.Module

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sha256(self) -> str:
        return self.metadata.sha256

    @property
    def input(self) -> InputSpec:
        return self.metadata.input

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels


# -- folders ------------------------------------------------------------------------------------


def builtin_models_dir() -> Path:
    """The bundles shipped in ``resources/models``."""
    from importlib.resources import files

    return Path(str(files("radlens.resources") / "models"))


def user_models_dir() -> Path:
    """Where a user's own bundles live (``radlens train --out`` may put them here)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("radlens")) / "models"


def folder_name_for(name: str) -> str:
    """A bundle name as a folder name (an imported model's default home under :func:`user_models_dir`)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "imported-model"


def search_dirs(extra: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Folders holding bundles, first match wins: explicit ones, then the user's, then the shipped ones."""
    return [*(Path(d) for d in extra), user_models_dir(), builtin_models_dir()]


# -- metadata -----------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _refuse_pickles(folder: Path) -> None:
    found = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
    if found:
        raise BundleError(
            folder,
            f"contains {', '.join(found)}: pickle files can execute code and are refused "
            f"(a bundle holds {WEIGHTS} and {METADATA} only; save the state dict with safetensors)",
        )


def read_document(folder: str | os.PathLike) -> dict:
    """metadata.json of a bundle folder as JSON, checked (by parsing it) to be a bundle the engine can run."""
    folder = Path(folder)
    if folder.is_file():
        if folder.name.lower().endswith(PICKLE_SUFFIXES):
            raise BundleError(
                folder, "a pickle file (it can execute code) is refused; a bundle is a folder with model.safetensors"
            )
        raise BundleError(folder, f"not a bundle folder (expected a folder holding {METADATA} and {WEIGHTS})")
    if not folder.is_dir():
        raise BundleError(folder, "no such bundle folder")
    _refuse_pickles(folder)
    path = folder / METADATA
    if not path.is_file():
        raise BundleError(folder, f"no {METADATA} (not a model bundle)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(path, f"not valid JSON: {err}") from None
    BundleMetadata.from_json(meta, path)
    return meta


def read_metadata(folder: str | os.PathLike) -> BundleMetadata:
    """A bundle folder's metadata.json, typed and validated."""
    return BundleMetadata.from_json(read_document(folder), Path(folder) / METADATA)


def info_from_metadata(meta: BundleMetadata, folder: Path) -> BundleInfo:
    return BundleInfo(
        name=meta.name,
        version=meta.version,
        task=meta.task,
        modality=meta.input.modality,
        description=meta.description,
        path=folder,
        threshold=meta.threshold,
        min_component_ml=meta.min_component_ml,
    )


def bundle_info(folder: str | os.PathLike) -> BundleInfo:
    folder = Path(folder)
    return info_from_metadata(read_metadata(folder), folder)


def list_bundles(
    modality: str | None = None,
    dirs: tuple[str | os.PathLike, ...] = (),
    errors: list[BundleError] | None = None,
) -> list[BundleInfo]:
    """Every bundle in the search folders (or fitting ``modality``), one per name, first folder wins.

    A folder in ``dirs`` may itself be a bundle. Broken bundles are skipped; pass ``errors`` to
    collect why.
    """
    seen: dict[str, BundleInfo] = {}
    for base in search_dirs(tuple(dirs)):
        if not base.is_dir():
            continue
        candidates = [base] if (base / METADATA).is_file() else sorted(p for p in base.iterdir() if p.is_dir())
        for folder in candidates:
            try:
                info = bundle_info(folder)
            except BundleError as err:
                if errors is not None:
                    errors.append(err)
                continue
            if modality is not None and info.modality != modality.upper():
                continue
            seen.setdefault(info.name, info)
    return list(seen.values())


def find_bundle(name_or_path: str | os.PathLike, dirs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """A bundle folder from a path or a bundle name; an nnU-Net results folder is imported on first use."""
    p = Path(name_or_path)
    if p.exists():
        from radlens.inference.monai_bundle import is_monai_bundle
        from radlens.inference.nnunet_import import imported_bundle, is_nnunet_folder

        return imported_bundle(p) if is_nnunet_folder(p) or is_monai_bundle(p) else p
    for info in list_bundles(dirs=dirs):
        if info.name == str(name_or_path):
            return info.path
    known = ", ".join(sorted(i.name for i in list_bundles(dirs=dirs))) or "none installed"
    raise BundleError(name_or_path, f"no such model bundle (known: {known})")


# -- load / save --------------------------------------------------------------------------------


def load_bundle(
    folder_or_name: str | os.PathLike | BundleInfo, dirs: tuple[str | os.PathLike, ...] = ()
) -> LoadedBundle:
    """Build the network from the registry and load the verified weights strictly (CPU, eval mode)."""
    folder = folder_or_name.path if isinstance(folder_or_name, BundleInfo) else find_bundle(folder_or_name, dirs)
    meta = read_metadata(folder)
    label = f"{meta.name} ({folder})"
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise BundleError(label, f"no {WEIGHTS}")
    expected = meta.sha256
    if not expected:
        raise BundleError(label, "metadata.json records no sha256 of the weights")
    actual = sha256_of(weights)
    if actual != expected:
        raise BundleError(label, f"{WEIGHTS} sha256 {actual[:12]}… does not match metadata {expected[:12]}…")

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from radlens.inference.networks import build_network

    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(label, f"{WEIGHTS} is not a valid safetensors file: {err}") from None
    try:
        network = build_network(meta.arch, **meta.arch_kwargs)
    except BundleError as err:
        raise BundleError(label, err.reason) from None
    _load_strict(network, state, label)
    network.eval()
    return LoadedBundle(info_from_metadata(meta, folder), meta, network)


def _load_strict(network, state: dict, label: str) -> None:
    """load_state_dict(strict=True), but with every missing, unexpected or mis-shaped name in the message."""
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = []
    for what, names in (("missing", missing), ("unexpected", unexpected), ("mismatched", shapes)):
        if names:
            shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
            problems.append(f"{what} weights: {shown}")
    if problems:
        raise BundleError(label, "; ".join(problems))
    network.load_state_dict(state, strict=True)


def _with_monai_fields(meta: dict) -> dict:
    """Add MONAI bundle metadata fields (versions, network_data_format) the caller did not give."""
    import monai
    import torch

    out = dict(meta)
    out.setdefault("monai_version", monai.__version__)
    out.setdefault("pytorch_version", torch.__version__.split("+")[0])
    inp = out.get("input") or {}
    labels = list(out.get("labels") or [])
    out.setdefault(
        "network_data_format",
        {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield" if str(inp.get("modality", "")).upper() == "CT" else "magnitude",
                    "modality": inp.get("modality", ""),
                    "num_channels": 1,
                    "spatial_shape": list(inp.get("patch_zyx", [])),
                    "dtype": "float32",
                    "is_patch_data": True,
                }
            },
            "outputs": {"pred": _output_format(out.get("task"), labels)},
        },
    )
    return out


def _output_format(task: str | None, labels: list) -> dict:
    """MONAI's ``network_data_format.outputs.pred`` for a task: what the network's output is."""
    if task == "classification":
        return {"type": "probabilities", "format": "study+per-slice logits", "num_channels": len(labels),
                "dtype": "float32", "is_patch_data": False}  # fmt: skip
    detection = task == "detection"
    return {
        "type": "image",
        "format": "heatmap+size" if detection else "segmentation",
        "num_channels": 4 if detection else len(labels) + 1,
        "dtype": "float32",
        "is_patch_data": True,
    }


def update_metadata(folder: str | os.PathLike, change: Callable[[dict], None]) -> dict:
    """Apply ``change`` to a bundle's metadata.json in place (atomically; the weights are untouched).

    Why: evaluation results and calibrated thresholds are added to a bundle after it is written.
    """
    folder = Path(folder)
    meta = read_document(folder)
    change(meta)
    BundleMetadata.from_json(meta, folder / METADATA)
    write_json(folder / METADATA, meta)
    return read_metadata(folder)


def save_bundle(folder: str | os.PathLike, network, metadata: dict) -> Path:
    """Write model.safetensors (the state dict only) and metadata.json with its sha256; both atomically.

    The metadata is checked the way :func:`load_bundle` will read it, so a bundle that saves also loads.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in network.state_dict().items()}
    weights = folder / WEIGHTS
    with atomic_path(weights, ".safetensors") as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    meta = _with_monai_fields(metadata)
    meta["sha256"] = sha256_of(weights)
    write_json(folder / METADATA, meta)
    read_metadata(folder)
    return folder
