"""The reader's review of a study, kept in a small JSON beside it (written atomically).

Decisions are keyed by where a lesion is and how big (LPS mm), matched with a tolerance, so a decision
stays on its lesion when models run again, when ids are renumbered and after a restart. The first
form of the file (``radlens.review/1``) keyed decisions by finding ids (``det:MODEL:ID``); it is still
read, its decisions found through the ids of the findings shown, and rewritten by position.

The file sits next to the study so that the review travels with it; when that folder is read-only
the user data folder holds it instead, keyed by the study's path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from radlens.imaging.atomic import write_json
from radlens.imaging.volume import Volume
from radlens.viewer.layers import FindingRow

SCHEMA = "radlens.review/2"
OLD_SCHEMA = "radlens.review/1"
DECISIONS = ("accepted", "rejected")
TOLERANCE_MM = 3.0  # centres this close (or a quarter of the size, if more) are one lesion
SIZE_RATIO = 2.0  # sizes within this factor of each other


@dataclass(frozen=True)
class Decision:
    label: str
    center_lps: tuple[float, float, float]
    size_mm: float
    decision: str

    def matches(self, center_lps, size_mm: float) -> float | None:
        """The distance to a lesion at ``center_lps`` of ``size_mm`` when it is this one, else None."""
        dist = float(np.linalg.norm(np.subtract(center_lps, self.center_lps)))
        small, big = sorted((max(size_mm, 0.1), max(self.size_mm, 0.1)))
        if dist <= max(TOLERANCE_MM, 0.25 * big) and big <= SIZE_RATIO * small:
            return dist
        return None

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "center_lps": [round(v, 2) for v in self.center_lps],
            "size_mm": round(self.size_mm, 2),
            "decision": self.decision,
        }


@dataclass
class Review:
    """What the reader decided, per lesion (by position) and per classification (by model and label)."""

    lesions: list[Decision] = field(default_factory=list)
    studies: dict[str, str] = field(default_factory=dict)  # "cls:MODEL:LABEL" → decision
    legacy: dict[str, str] = field(default_factory=dict)  # radlens.review/1 keys not matched yet
    extra: dict = field(default_factory=dict)  # the file's other sections (measurements), kept as read

    def _match(self, row: FindingRow) -> int | None:
        lesion = row.lesion
        best, best_d = None, None
        for i, d in enumerate(self.lesions):
            dist = d.matches(lesion.center_lps, lesion.size_mm)
            if dist is not None and (best_d is None or dist < best_d):
                best, best_d = i, dist
        return best

    def decision_for(self, row: FindingRow) -> str:
        if row.lesion is None:
            return self.studies.get(str(row.key), "")
        i = self._match(row)
        if i is not None:
            return self.lesions[i].decision
        return next((self.legacy[k] for k in row.legacy_keys if k in self.legacy), "")

    def decide(self, row: FindingRow, decision: str) -> None:
        """Set (or with "" clear) the decision on a row; an older decision on the same lesion goes."""
        if decision and decision not in DECISIONS:
            raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
        if row.lesion is None:
            self.studies.pop(str(row.key), None)
            if decision:
                self.studies[str(row.key)] = decision
            return
        for k in row.legacy_keys:
            self.legacy.pop(k, None)
        while (i := self._match(row)) is not None:
            del self.lesions[i]
        if decision:
            lesion = row.lesion
            self.lesions.append(Decision(row.label, lesion.center_lps, lesion.size_mm, decision))

    def adopt_legacy(self, rows: list[FindingRow]) -> bool:
        """Decisions of the first file form found through the rows' ids become decisions by position."""
        changed = False
        for row in rows:
            if row.lesion is None:
                continue
            old = next((self.legacy[k] for k in row.legacy_keys if k in self.legacy), "")
            if old and self._match(row) is None:
                self.decide(row, old)
                changed = True
        return changed

    def decisions_state(self) -> dict:
        """The decisions as they are now (an undo snapshot)."""
        return {"lesions": list(self.lesions), "studies": dict(self.studies), "legacy": dict(self.legacy)}

    def restore_decisions(self, state: dict) -> None:
        self.lesions, self.studies, self.legacy = list(state["lesions"]), dict(state["studies"]), dict(state["legacy"])

    def by_finding_id(self, rows: list[FindingRow]) -> dict[str, str]:
        """The decisions in the first form (``det:MODEL:ID`` of each lesion's findings), for the formats
        that carry a finding's id (DICOM SR)."""
        out = {}
        for row in rows:
            decision = self.decision_for(row)
            if decision:
                out.update({k: decision for k in row.legacy_keys})
        return out

    def to_json(self) -> dict:
        return {
            "decisions": [d.to_json() for d in self.lesions],
            "classifications": dict(self.studies),
            **({"unmatched_v1": dict(self.legacy)} if self.legacy else {}),
        }


def review_path(volume: Volume, kind: str = "review", suffix: str = ".json") -> Path:
    """Where the study's review (or, with ``kind``, another file of the reader's: edits) is kept: beside
    the study, unless its folder is read-only or part of an installed package (pydicom's test files)."""
    src = Path(volume.source) if volume.source else Path.cwd() / "unsaved"
    folder = src if src.is_dir() else src.parent
    tag = _safe(volume.series_uid or src.name.split(".")[0] or "series")
    path = folder / f"radlens-{kind}-{tag}{suffix}"
    if os.access(folder, os.W_OK) and not _installed(folder):
        return path
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    return Path(platformdirs.user_data_dir("radlens")) / "reviews" / f"{digest}-{kind}{suffix}"


def _installed(folder: Path) -> bool:
    """Whether ``folder`` lies in a folder Python installs packages into."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | {site.getusersitepackages()}
    here = folder.resolve()
    return any(here.is_relative_to(Path(r).resolve()) for r in roots if r)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:80]


def _decision(v) -> str | None:
    return v if v in DECISIONS else None


def load_review(volume: Volume) -> Review:
    """The study's review file, in either form; a missing or unreadable file is an empty review."""
    try:
        doc = json.loads(review_path(volume).read_text())
    except (OSError, ValueError):
        return Review()
    if not isinstance(doc, dict):
        return Review()
    review = Review()
    if doc.get("schema") == OLD_SCHEMA:
        for k, v in (doc.get("decisions") or {}).items():
            if _decision(v):
                (review.studies if str(k).startswith("cls:") else review.legacy)[str(k)] = v
        return review
    if doc.get("schema") != SCHEMA:
        return Review()
    for d in doc.get("decisions") or []:
        try:
            if _decision(d["decision"]):
                centre = tuple(float(v) for v in d["center_lps"])
                assert len(centre) == 3
                review.lesions.append(Decision(str(d.get("label", "")), centre, float(d["size_mm"]), d["decision"]))
        except (KeyError, TypeError, ValueError, AssertionError):
            continue
    review.studies = {str(k): v for k, v in (doc.get("classifications") or {}).items() if _decision(v)}
    review.legacy = {str(k): v for k, v in (doc.get("unmatched_v1") or {}).items() if _decision(v)}
    known = {"schema", "series_uid", "source", "decisions", "classifications", "unmatched_v1"}
    review.extra = {k: v for k, v in doc.items() if k not in known}
    return review


def save_review(volume: Volume, review: Review) -> Path:
    doc = {"schema": SCHEMA, "series_uid": volume.series_uid, "source": volume.source, **review.to_json()}
    doc.update(review.extra)
    return write_json(review_path(volume), doc)
