"""Display windows: presets from resources/presets.json, the series' own VOI window, percentiles.

Order (design section 2): the series' own VOI window, then the modality preset, then a percentile
window of the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from radlens.imaging.volume import Volume, Window


@dataclass(frozen=True)
class Preset:
    name: str
    key: str
    window: Window


@lru_cache(maxsize=1)
def _presets_file() -> dict:
    return json.loads(resources.files("radlens.resources").joinpath("presets.json").read_text())


def presets() -> tuple[Preset, ...]:
    """The CT presets in keyboard order (keys 1–7)."""
    return tuple(
        Preset(p["name"], p["key"], Window(float(p["width"]), float(p["level"]))) for p in _presets_file()["ct"]
    )


def preset(name: str) -> Window:
    for p in presets():
        if p.name == name.lower():
            return p.window
    known = ", ".join(p.name for p in presets())
    raise KeyError(f"unknown preset {name!r} (known: {known})")


def percentile_window(array: np.ndarray, low_high: tuple[float, float] | None = None) -> Window:
    """A window spanning the given percentiles of the data, from a strided sample (fast on big volumes)."""
    lo_p, hi_p = low_high or tuple(_presets_file()["percentile"])
    flat = array.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    sample = flat[::step]
    lo, hi = np.percentile(sample, [lo_p, hi_p])
    if hi <= lo:
        hi = lo + 1.0
    return Window(float(hi - lo), float((hi + lo) / 2))


def default_window(volume: Volume) -> Window:
    if volume.windows:
        return volume.windows[0]
    name = _presets_file()["modality_default"].get(volume.modality.upper())
    if name:
        return preset(name)
    return percentile_window(volume.array)


def apply_window(image: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
    """Map modality values to display uint8 with a linear window (DICOM-style clipping)."""
    lo = window.low
    scale = 255.0 / max(window.width, 1e-6)
    out = np.clip((image.astype(np.float32) - lo) * scale, 0, 255).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out
