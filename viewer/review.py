"""Accept/reject decisions per finding, kept in a small JSON beside the study (written atomically).

The file sits next to the study so that the review travels with it; when that folder is read-only
the user data folder holds it instead, keyed by the study's path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import platformdirs

from radlens.imaging.atomic import write_json
from radlens.imaging.volume import Volume

SCHEMA = "radlens.review/1"


def review_path(volume: Volume) -> Path:
    src = Path(volume.source) if volume.source else Path.cwd() / "unsaved"
    folder = src if src.is_dir() else src.parent
    tag = _safe(volume.series_uid or src.name.split(".")[0] or "series")
    path = folder / f"radlens-review-{tag}.json"
    if os.access(folder, os.W_OK):
        return path
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    return Path(platformdirs.user_data_dir("radlens")) / "reviews" / f"{digest}.json"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:80]


def load_decisions(volume: Volume) -> dict[str, str]:
    path = review_path(volume)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return {}
    return {str(k): str(v) for k, v in doc.get("decisions", {}).items() if v in ("accepted", "rejected")}


def save_decisions(volume: Volume, decisions: dict[str, str]) -> Path:
    path = review_path(volume)
    doc = {"schema": SCHEMA, "series_uid": volume.series_uid, "source": volume.source, "decisions": decisions}
    return write_json(path, doc)
