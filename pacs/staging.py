"""Where a retrieve writes: a hidden folder beside the destination, renamed into place only when complete.

Instances arrive (from an association's thread, or an HTTP stream) into
``DEST/.radlens-retrieve-XXXX/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; when
everything asked for has arrived each series folder is renamed to ``DEST/<study>/<series>/``
(replacing an earlier copy). A failed or cancelled retrieve removes the hidden folder, so no
half-written study is ever left where a reader would open it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from pydicom.dataset import Dataset

from radlens.pacs.errors import PacsError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(value, what: str) -> str:
    """A UID safe to name a folder with (digits and dots): a PACS's answer never picks our paths."""
    text = str(value or "").strip()
    if len(text) > 64 or not _UID.match(text):
        raise PacsError(what, f"{text!r} is not a valid DICOM UID")
    return text


class Staging:
    """The hidden folder one retrieve writes into; use as a context manager (removed unless committed)."""

    def __init__(self, dest: str | os.PathLike, study_uid: str):
        self.dest = Path(dest)
        self.study_uid = check_uid(study_uid, "StudyInstanceUID")
        try:
            self.dest.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix=".radlens-retrieve-", dir=self.dest))
        except OSError as err:
            raise PacsError(self.dest, f"cannot write: {err.strerror or err}") from None
        self.count = 0
        self.last: Path | None = None  # the newest instance (for a preview of what arrives)
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._committed = False

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            shutil.rmtree(self.root, ignore_errors=True)

    def add(self, ds: Dataset, encoded: bytes | None = None) -> Path | None:
        """Write one received instance (``encoded``: its whole file, when the sender gave it).

        Thread-safe. An instance of another study is refused (None, and ``refused`` says why).
        """
        study = str(ds.get("StudyInstanceUID", ""))
        sop = str(ds.get("SOPInstanceUID", ""))
        if study != self.study_uid:
            self.refuse(f"instance {sop or '?'} belongs to study {study or '?'}, not {self.study_uid}")
            return None
        series = check_uid(ds.get("SeriesInstanceUID"), f"instance {sop}: SeriesInstanceUID")
        path = self.root / study / series / f"{check_uid(sop, 'SOPInstanceUID')}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        if encoded is not None:
            path.write_bytes(encoded)
        else:
            ds.save_as(path, enforce_file_format=True)
        with self._lock:
            self.count += 1
            self.last = path
        return path

    def refuse(self, reason: str) -> None:
        """Note an instance that was not kept (thread-safe); the retrieve's error names the first."""
        with self._lock:
            self.refused.append(reason)

    def commit(self) -> list[Path]:
        """Rename every received series folder into ``DEST/<study>/<series>``; return those folders."""
        placed = []
        try:
            for study in sorted(p for p in self.root.iterdir() if p.is_dir()):
                for series in sorted(p for p in study.iterdir() if p.is_dir()):
                    target = self.dest / study.name / series.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    old = None
                    if target.exists():  # an earlier retrieve of the same series: replaced whole
                        old = Path(tempfile.mkdtemp(prefix=".radlens-old-", dir=self.dest))
                        os.replace(target, old / series.name)
                    os.replace(series, target)
                    if old is not None:
                        shutil.rmtree(old, ignore_errors=True)
                    placed.append(target)
        except OSError as err:
            raise PacsError(self.dest, f"cannot place the retrieved series: {err.strerror or err}") from None
        self._committed = True
        shutil.rmtree(self.root, ignore_errors=True)
        return placed
