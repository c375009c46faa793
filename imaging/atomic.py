"""Atomic writes: nothing a user has is ever left half-written (design section 5).

Every file RadLens writes goes to a temporary file in the same folder and is renamed over the
target only once it is complete; on any failure the temporary file is removed.
"""

from __future__ import annotations

import json
import os
import tempfile
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
        os.replace(tmp, path)
    except OSError as err:
        raise ImagingError(path, f"cannot write: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, data, indent: int = 1) -> Path:
    """Write JSON atomically (findings, reviews, metadata, logs)."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path, Path(path).suffix) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)
