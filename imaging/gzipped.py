"""Gzip-wrapped DICOM files (``IM0001.dcm.gz``, pydicom's ``zipMR.gz``), read as if they were plain.

Why a copy rather than a stream: every reader downstream (the header walker, pydicom, the pixel
reader) opens files by path and seeks in them. The copy lives in the user cache, is named by the
file's path, size and time (made once, made again when the file changes) and is written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

from radlens.imaging.atomic import atomic_path
from radlens.imaging.dicom_native import SNIFF_BYTES, sniff
from radlens.imaging.errors import ImagingError

GZIP_MAGIC = b"\x1f\x8b"


def inflated(path: str) -> str:
    """``path`` itself, or for a gzip-wrapped DICOM file the path of its inflated copy in the cache."""
    try:
        with open(path, "rb") as fp:
            if fp.read(2) != GZIP_MAGIC:
                return path
        with gzip.open(path, "rb") as fp:
            if sniff(fp.read(SNIFF_BYTES)) is None:
                return path  # a gzip of something else (an archive): never inflated
        st = os.stat(path)
    except (OSError, EOFError):
        return path  # the reader gives the reason
    import platformdirs

    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    target = Path(platformdirs.user_cache_dir("radlens")) / "inflated" / f"{key}.dcm"
    if not target.is_file():
        try:
            with gzip.open(path, "rb") as src, atomic_path(target) as tmp, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise ImagingError(path, f"gzip-wrapped file cannot be inflated: {err}") from None
    return str(target)
