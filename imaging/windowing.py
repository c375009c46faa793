"""Display windows: presets from resources/presets.json, the series' own VOI window, percentiles.

Order (docs/architecture.md, "Conventions"): the series' own VOI window, then the range of its VOI LUT Sequence's
table, then the modality preset, then a percentile window of the data. A window is mapped by its
VOILUTFunction (:func:`apply_window`); a VOI LUT's table by :func:`apply_voi_table`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from radlens.imaging.volume import VoiLut, Volume, Window


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
    if volume.voi_luts:
        return table_window(volume.voi_luts[0])
    name = _presets_file()["modality_default"].get(volume.modality.upper())
    if name:
        return preset(name)
    return percentile_window(volume.array)


def table_window(lut: VoiLut) -> Window:
    """The linear window spanning a VOI LUT's input range, for a display that can only window."""
    return Window(float(len(lut.table)), lut.first + len(lut.table) / 2)


def apply_window(image: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
    """Map modality values to display uint8 through a window: linear with DICOM-style clipping, or
    the sigmoid of VOILUTFunction SIGMOID (DICOM C.11.2.1.3)."""
    width = max(window.width, 1e-6)
    x = image.astype(np.float32)
    if window.function == "SIGMOID":
        scaled = 255.0 / (1.0 + np.exp(-4.0 * (x - np.float32(window.level)) / np.float32(width)))
    else:
        scaled = (x - np.float32(window.low)) * np.float32(255.0 / width)
    return _display(scaled, invert)


def apply_voi_table(image: np.ndarray, lut: VoiLut, invert: bool = False) -> np.ndarray:
    """Map modality values to display uint8 through a VOI LUT Sequence's table."""
    index = np.clip(image.astype(np.int64) - lut.first, 0, len(lut.table) - 1)
    return _display(lut.table[index] * (255.0 / max(1, 2**lut.bits - 1)), invert)


SIGMOID_SPAN = 2.0  # a SIGMOID window is drawn over level ± 2 widths: beyond, it is within 0.03 % of its ends


def display_lut(volume: Volume, window: Window, invert: bool) -> tuple[tuple[float, float], np.ndarray | None]:
    """How a display that maps values through levels and a lookup table (pyqtgraph's ImageItem) shows
    ``window``: (levels, uint8 table or None for a straight ramp), the same grey as :func:`apply_window`
    and :func:`apply_voi_table`. The series' VOI LUT table is used while its own window is shown."""
    if volume.voi_luts and window == table_window(volume.voi_luts[0]):
        lut = volume.voi_luts[0]
        levels = (float(lut.first), float(lut.first + len(lut.table)))  # value v → entry v - first
        table = _display(lut.table * (255.0 / max(1, 2**lut.bits - 1)), invert)
        return levels, table
    if window.function == "SIGMOID":
        width = max(window.width, 1e-6)
        lo, hi = window.level - SIGMOID_SPAN * width, window.level + SIGMOID_SPAN * width
        x = lo + (np.arange(1024) + 0.5) * (hi - lo) / 1024  # entry k covers [lo + k·step, lo + (k+1)·step)
        return (float(lo), float(hi)), apply_window(x, window, invert)
    ramp = np.arange(256, dtype=np.uint8)
    return (window.low, window.high), (255 - ramp if invert else None)


def _display(scaled: np.ndarray, invert: bool) -> np.ndarray:
    out = np.clip(scaled, 0, 255).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out
