"""A model's own label colours, when its folder ships a colour table (3D Slicer's format, or JSON).

Why: readers who know TotalSegmentator or a Slicer segmentation expect its organs in their usual
colours. A Slicer colour table (``*.ctbl``, ``*ColorTable*.txt``, ``colors.txt``) holds lines
``VALUE NAME R G B A`` (``#`` comments); a ``colors.json`` / ``colours.json`` maps a label name or
value to ``[R, G, B]``. Matched to the model's labels by name, else by value; anything unreadable is
ignored (the viewer's palette is used instead), since colours never change a result. Names win:
values are used only when no label is found by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PATTERNS = (
    "*.ctbl",
    "*ColorTable*.txt",
    "*colortable*.txt",
    "colors.txt",
    "colours.txt",
    "colors.json",
    "colours.json",
)


def _entries(path: Path) -> dict[str, tuple[int, int, int]]:
    """Label name or value (as text) → colour, from one file."""
    out = {}
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        for key, rgb in doc.items() if isinstance(doc, dict) else ():
            if isinstance(rgb, list) and len(rgb) >= 3:
                out[str(key)] = tuple(int(c) for c in rgb[:3])
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0].startswith("#"):
            continue
        value, name, rgb = parts[0], parts[1], parts[2:5]
        if value.isdigit() and all(c.isdigit() for c in rgb):
            out[value] = out[name] = tuple(int(c) for c in rgb)
    return out


def read_colour_table(folder: str | os.PathLike, labels: list[str]) -> dict[str, list[int]]:
    """Colours for ``labels`` (label value i+1 is ``labels[i]``) from a colour file in ``folder`` or its configs/."""
    folder = Path(folder)
    for directory in (folder, folder / "configs"):
        for pattern in PATTERNS:
            for path in sorted(directory.glob(pattern)):
                try:
                    table = _entries(path)
                except (OSError, UnicodeDecodeError, ValueError):
                    continue
                lowered = {k.lower(): v for k, v in table.items()}
                by_name = {n: lowered.get(n.lower()) for n in labels}
                if not any(by_name.values()):  # a table of another model's names: its values may still fit
                    by_name = {n: lowered.get(str(v)) for v, n in enumerate(labels, start=1)}
                found = {n: list(rgb) for n, rgb in by_name.items() if rgb and all(0 <= c <= 255 for c in rgb)}
                if found:
                    return found
    return {}
