"""Atomic writes: nothing a user has is ever left half-written (docs/architecture.md, "Errors").

Every file RadLens writes goes to a temporary file in the same folder and is renamed over the
target only once it is complete; on any failure the temporary file is removed. The result has the
permissions a plain ``open(path, "w")`` would give: an existing target's own, else 0666 less the
umask (``mkstemp`` alone makes every file 0600).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from radlens.imaging.errors import ImagingError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    ``suffix`` keeps the extension of the target where a writer picks its format by name
    (``.nii.gz``, ``.png``). An OSError becomes an ImagingError naming the target.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as err:
        raise ImagingError(path, f"cannot write: {err.strerror or err}") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except OSError as err:
        raise ImagingError(path, f"cannot write: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mode_for(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: kept when the file exists, else 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere os.umask must set it to read it, so it
    is set back at once, under a lock against the other threads that write here."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data, indent: int = 1) -> Path:
    """Write JSON atomically (findings, reviews, metadata, logs)."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path, Path(path).suffix) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)
