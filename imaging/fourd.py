"""4D sets: 3D stacks at the same positions, told apart by a time point, a b-value or an echo.

A dynamic, diffusion or multi-echo acquisition repeats every slice position once per value of some
parameter. Stacked along the normal as one volume, its frames would interleave; split by that
parameter, each value is one 3D stack and the viewer offers a slider over them. The same rule
serves files (one slice each, :func:`split_repeats` over their headers) and the frames of one
enhanced multi-frame object (their functional groups, :func:`frame_parameters`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# What may tell repeated positions apart, in the order it is tried: (label, unit).
PARAMETERS = (
    ("temporal position", ""),
    ("trigger time", "ms"),
    ("b-value", "s/mm²"),
    ("echo", ""),
    ("echo time", "ms"),
    ("acquisition", ""),
    ("stack", ""),
)
REPETITION = "repetition"


def repeats(along: np.ndarray) -> bool:
    """Whether some positions (mm along the normal) occur more than once."""
    return len(np.unique(np.round(along, 3))) < len(along)


def split_repeats(along: np.ndarray, params: dict[str, list], order: list | None = None) -> tuple[str, list] | None:
    """Split items at repeated positions into groups with distinct positions each.

    ``along``: each item's position along the normal; ``params``: label → each item's value (None
    when absent); ``order``: a tie-break for the last resort (InstanceNumber, frame index). Returns
    (label, [(value, [item indices])]) for the first parameter of :data:`PARAMETERS` that splits
    them so, else the k-th occurrence of each position when every position repeats equally often
    ("repetition"), else None.
    """
    rounded = np.round(np.asarray(along, dtype=np.float64), 3)
    for label, _ in PARAMETERS:
        values = params.get(label)
        if values is None or len({v for v in values}) < 2:
            continue
        groups: dict[object, list[int]] = {}
        for i, v in enumerate(values):
            groups.setdefault(v, []).append(i)
        if all(len(set(rounded[g])) == len(g) for g in groups.values()):
            ordered = sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0))
            return label, ordered
    counts = Counter(rounded.tolist())
    k = next(iter(counts.values()))
    if k < 2 or any(c != k for c in counts.values()):
        return None
    tie = list(order) if order is not None else list(range(len(rounded)))
    seen: Counter = Counter()
    groups = {}
    for i in sorted(range(len(rounded)), key=lambda i: (tie[i] if tie[i] is not None else 0, i)):
        groups.setdefault(seen[rounded[i]], []).append(i)
        seen[rounded[i]] += 1
    return REPETITION, [(r + 1, g) for r, g in sorted(groups.items())]


def label_of(parameter: str, value) -> str:
    """What the slider shows for one part: "b-value 1000 s/mm²", "temporal position 3"."""
    unit = dict(PARAMETERS).get(parameter, "")
    text = "?" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"{parameter} {text}" + (f" {unit}" if unit and value is not None else "")


def frame_parameters(ds, n: int) -> dict[str, list]:
    """Each frame's time point, trigger time, b-value, echo time and stack of an enhanced object."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != n:
        return {}
    where = {
        "temporal position": ("FrameContentSequence", "TemporalPositionIndex"),
        "trigger time": ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"),
        "b-value": ("MRDiffusionSequence", "DiffusionBValue"),
        "echo time": ("MREchoSequence", "EffectiveEchoTime"),
        "stack": ("FrameContentSequence", "StackID"),
    }
    out: dict[str, list] = {}
    for label, (sequence, keyword) in where.items():
        values = []
        for item in per_frame:
            inner = item.get(sequence)
            value = inner[0].get(keyword) if inner else None
            values.append(_plain(value))
        if any(v is not None for v in values):
            out[label] = values
    return out


def _plain(value):
    """A DICOM number (DS, IS, FD, US) or code as a hashable, sortable Python value."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(number) if number.is_integer() else number
