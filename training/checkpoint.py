"""What a run keeps on disk as it goes: checkpoints (single safetensors files: weights, optimiser
tensors and a JSON state in the header, no pickle, written to a temporary file and renamed) and the
training log, so an interrupted run can resume exactly."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from radlens.imaging.atomic import atomic_path, write_text
from radlens.training.errors import TrainingError

CHECKPOINTS = "checkpoints"
LOG_CSV = "training_log.csv"
LOG_JSON = "training_log.json"


def read_state(path: Path) -> dict:
    """A checkpoint's JSON state (plan, history, epoch) without its tensors: what a resumed run starts from."""
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["state"])


def save_checkpoint(path: Path, network, optimizer, scaler, state: dict) -> None:
    """Weights, optimiser tensors and a JSON state in one safetensors file, atomically (no pickle)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    meta = {
        "state": json.dumps(state),
        "optim_groups": json.dumps(opt["param_groups"]),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}),
    }
    data = save(tensors, metadata=meta)
    with atomic_path(path, ".safetensors") as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # a checkpoint must survive a kill right after the rename


def load_checkpoint(path: Path, network, optimizer=None, scaler=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the JSON state."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if optimizer is not None:
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        device = next(network.parameters()).device
        for st in state.values():
            for key, value in st.items():
                st[key] = value if key == "step" else value.to(device)
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
    if scaler is not None and scaler.is_enabled():
        saved = json.loads(meta.get("scaler", "{}"))
        if saved:
            scaler.load_state_dict(saved)
    return json.loads(meta["state"])


def write_logs(out: Path, history: list[dict]) -> None:
    """The epochs so far, as JSON and as CSV (for a spreadsheet), each replaced whole."""
    text = json.dumps(history, indent=1)
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    for name, content in ((LOG_JSON, text), (LOG_CSV, buf.getvalue())):
        write_text(out / name, content)
