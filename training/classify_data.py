"""``radlens classification-set``: a folder of label maps as a classification folder (present / absent).

Why: a study-level classifier learns from study labels, and per-slice labels make it learn faster
and say where; a segmentation folder (nnU-Net layout, e.g. ``radlens phantom``'s) already holds
both, exactly. Each case becomes a study labelled ``LABEL`` (any voxel of the label map) or
``no-LABEL``, and each slice 1 (a lesion cross-section of at least ``min_area_mm2``), 0 (none) or
-1 (a sliver: unknown). ``slab_mm`` cuts each case into slabs of that thickness instead, along z,
where the head or body fills most of the slice; a slab holding only slivers is left out. A
generator that makes only diseased studies still gives healthy slabs, so a cross-source test set
has negatives without touching that generator.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import atomic_path, write_json
from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.volume_io import write_volume
from radlens.training.datasets import SLICE_LABELS, SOURCE, load_image, load_label, read_dataset
from radlens.training.errors import TrainingError

MIN_AREA_MM2 = 10.0
# A slab is kept where each of its slices holds at least this share of the fullest slice's tissue.
MIN_COVERAGE = 0.4


def slice_labels(label_map: np.ndarray, spacing_zyx, min_area_mm2: float = MIN_AREA_MM2) -> np.ndarray:
    """Per slice: 1 where the foreground covers at least ``min_area_mm2``, -1 where less (a sliver), else 0."""
    area = (np.asarray(label_map) > 0).sum(axis=(1, 2)) * float(spacing_zyx[1] * spacing_zyx[2])
    out = np.where(area >= min_area_mm2, 1, np.where(area > 0, -1, 0))
    return out.astype(int)


def tissue_per_slice(image: np.ndarray) -> np.ndarray:
    """Voxels above the volume's mean per slice: where the head or body is, whatever the contrast."""
    a = np.asarray(image, dtype=np.float32)
    return (a > a.mean()).sum(axis=(1, 2))


def slabs(image: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Non-overlapping ranges of ``n`` slices where every slice has at least MIN_COVERAGE of the most tissue."""
    tissue = tissue_per_slice(image)
    full = tissue >= MIN_COVERAGE * max(int(tissue.max()), 1)
    out, z = [], 0
    while z + n <= len(full):
        if full[z : z + n].all():
            out.append((z, z + n))
            z += n
        else:
            z += 1
    return out


def iter_classification_set(
    source,
    out,
    *,
    label: str = "lesion",
    slab_mm: float | None = None,
    min_area_mm2: float = MIN_AREA_MM2,
    command: str = "",
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, Path]:
    """Write OUT/studies.csv, OUT/images/*.nii.gz, OUT/slice_labels.json and OUT/source.json; return OUT."""
    from radlens.inference.preprocess import crop_volume

    ds = read_dataset(source, "segment")
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not (root / SOURCE).is_file():
        raise TrainingError(f"{root}: not empty and not a classification set this command wrote")
    (root / "images").mkdir(parents=True, exist_ok=True)
    negative = f"no-{label}"
    rows: list[tuple[str, str]] = []
    per_slice: dict[str, list[int]] = {}
    for i, case in enumerate(ds.cases):
        check_cancel(cancel, "radlens classification-set")
        yield Progress(i, len(ds.cases), f"reading {case.case_id}")
        volume = load_image(case.image)
        mask = np.asarray(load_label(case.label).array) > 0
        labels = slice_labels(mask, volume.spacing_zyx, min_area_mm2)
        if slab_mm:
            n = max(1, round(slab_mm / volume.spacing_zyx[0]))
            pieces = [(f"{case.case_id}_z{z0:03d}", (z0, z1)) for z0, z1 in slabs(volume.array, n)]
        else:
            pieces = [(case.case_id, (0, volume.shape_zyx[0]))]
        for name, (z0, z1) in pieces:
            part = labels[z0:z1]
            if slab_mm and not (part == 1).any() and mask[z0:z1].any():
                continue  # only slivers of a lesion: neither clearly present nor absent
            study = label if mask[z0:z1].any() else negative
            piece = crop_volume(volume, (z0, 0, 0, z1, *volume.shape_zyx[1:]))
            write_volume(piece, root / "images" / f"{name}.nii.gz")
            rows.append((f"images/{name}.nii.gz", study))
            per_slice[name] = [int(v) for v in part]
    if not {s for _, s in rows} >= {label, negative}:
        found = sorted({s for _, s in rows}) or "none"
        raise TrainingError(f"{ds.root}: the studies made are all of one class ({found}); a classifier needs both")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case", "label"])
    writer.writerows(rows)
    with atomic_path(root / "studies.csv", ".csv") as tmp:
        Path(tmp).write_text(text.getvalue(), encoding="utf-8")
    write_json(root / SLICE_LABELS, per_slice)
    write_json(
        root / SOURCE,
        {
            "name": f"{ds.name}: {label} present or absent" + (f" ({slab_mm:g} mm slabs)" if slab_mm else ""),
            "modality": ds.modality,
            "synthetic": ds.synthetic,
            # What makes these studies again: the source's own command (a phantom's), then this one.
            "command": " && ".join(c for c in (ds.data_command, command) if c),
            "studies": {"positive": sum(s == label for _, s in rows), "negative": sum(s == negative for _, s in rows)},
        },
    )
    yield Progress(len(ds.cases), len(ds.cases), f"wrote {len(rows)} studies")
    return root


def classification_set_command(args) -> int:
    import sys

    from radlens.imaging.progress import run_with_progress
    from radlens.training.config import command_line

    job = iter_classification_set(
        args.source, args.out, label=args.label, slab_mm=args.slab_mm, min_area_mm2=args.min_area_mm2,
        command=command_line(),
    )  # fmt: skip
    root = run_with_progress(job, desc="classification-set")
    print(f"wrote a classification set to {root}", file=sys.stderr)
    return 0
