"""``radlens --demo``: SYNTHETIC chest CT and brain MR studies, written once into the user cache.

The studies are made by ``imaging.phantom`` (the same code as ``radlens phantom``) as DICOM, so the
demo exercises the real reader; a marker file says a folder is complete, so a killed first run is
redone rather than half-reused.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Generator
from pathlib import Path

import platformdirs

from radlens.imaging.progress import Progress

KINDS = ("chest-ct", "brain-mr")
DONE = ".complete"
# The chest CT on a 1 mm grid, as CTs are read (and as the shipped detector was trained); the
# brain at the phantom's own size. Tests make smaller ones.
SHAPES = {"chest-ct": (256, 384, 384), "brain-mr": None}
# The chest is a case the shipped detector reads well (five nodules, all boxed above its threshold), so the
# demo shows the review of findings; on seed 0's chest it boxes none above its threshold (the README gives
# its figures over many cases).
SEEDS = {"chest-ct": 1, "brain-mr": 0}


def demo_root() -> Path:
    """The cache folder, keyed by the phantom code and the sizes: a changed phantom is rewritten, never stale."""
    from radlens import imaging

    digest = hashlib.sha256()
    for source in sorted(Path(imaging.__file__).parent.glob("phantom*.py")):
        digest.update(source.read_bytes())
    digest.update(repr((sorted(SHAPES.items()), sorted(SEEDS.items()))).encode())
    return Path(platformdirs.user_cache_dir("radlens")) / "demo" / digest.hexdigest()[:12]


def iter_demo_paths(cancel: threading.Event | None = None, root: Path | None = None) -> Generator[Progress, None, list]:
    """Write the synthetic studies if missing; return the folders to open (chest CT first)."""
    from radlens.imaging.phantom import iter_write_phantoms

    root = Path(root) if root is not None else demo_root()
    paths = []
    for kind in KINDS:
        folder = root / kind
        if not (folder / DONE).is_file():
            yield Progress(0, 1, f"writing the synthetic {kind} study (first run only)")
            yield from iter_write_phantoms(
                folder, kind=kind, cases=1, seed=SEEDS[kind], fmt="dicom", shape_zyx=SHAPES[kind], cancel=cancel
            )
            (folder / DONE).write_text("synthetic demo study, written by radlens --demo\n")
        paths.append(str(folder / "imagesTr"))
    return paths
