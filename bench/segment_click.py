"""Click-to-segment against labelled lesions: Dice of the region grown from a click at each lesion's centre.

The click is the viewer's "segment at a click" (G): ``imaging.regions.grow_from_seed`` on the whole
volume, no model. Each lesion of a phantom folder (``radlens phantom``: ``labelsTr/CASE.json`` lists
its nodules or lesions with centre, diameter and type) is clicked once at its centre; the truth is the
labelled component there. Dice is given for all and by lesion type.

``--segmenter BUNDLE`` also runs that segmentation bundle on each whole volume (the engine's path, as
the viewer runs it) and reports, per lesion, the segmenter's own component at the click and the grown
region intersected with it and joined to it: whether a model that fits could refine the click.
On SYNTHETIC phantoms; without a DATASET, two of the independent generator's chest CTs (seed 6001) are
written to a temporary folder first.

    .venv/bin/python bench/segment_click.py [DATASET] [--segmenter BUNDLE] [--cases N]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from radlens.imaging.loading import load
from radlens.imaging.progress import run_to_end
from radlens.imaging.regions import grow_from_seed, keep_seed_piece


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def segmenter_mask(volume, bundle) -> np.ndarray:
    """Every segmentation the bundle finds on the volume, as one mask on its grid."""
    from radlens.inference.engine import run_bundle

    found = run_to_end(run_bundle(volume, bundle))
    mask = np.zeros(volume.shape_zyx, dtype=bool)
    for seg in found.segmentations:
        mask |= seg.mask
    return mask


def lesions_of(dataset: Path, cases: int):
    """(case, volume, instance map, lesion list) for the first ``cases`` cases of a phantom folder."""
    for image in sorted((dataset / "imagesTr").glob("*_0000.nii.gz"))[:cases]:
        case = image.name.removesuffix("_0000.nii.gz")
        label = load(str(dataset / "labelsTr" / f"{case}.nii.gz")).array
        meta = json.loads((dataset / "labelsTr" / f"{case}.json").read_text())
        instances, _ = ndimage.label(label > 0, structure=np.ones((3, 3, 3), bool))
        yield case, load(str(image)), instances, meta.get("nodules", meta.get("lesions", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, nargs="?", help="a phantom folder (default: two written now)")
    parser.add_argument("--segmenter", help="a segmentation bundle (folder or installed name) to compare")
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    bundle = None
    if args.segmenter:
        from radlens.inference.bundle import load_bundle

        bundle = load_bundle(args.segmenter)
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            from radlens.imaging.phantom import iter_write_phantoms

            job = iter_write_phantoms(Path(tmp), kind="chest-ct-independent", cases=2, seed=6001)
            args.dataset = run_to_end(job)
        rows = measure(args.dataset, args.cases, bundle)
    print(json.dumps(report(rows, args), indent=None))


def measure(dataset: Path, cases: int, bundle) -> list[dict]:
    """One row per labelled lesion: Dice of the grown region (and of the segmenter's piece) at its centre."""
    rows = []
    for case, volume, instances, lesions in lesions_of(dataset, cases):
        model = segmenter_mask(volume, bundle) if bundle is not None else None
        for lesion in lesions:
            at = np.rint(volume.lps_to_index(np.asarray(lesion["center_lps"]))).astype(int)
            seed = tuple(int(v) for v in np.clip(at, 0, np.asarray(volume.shape_zyx) - 1))
            if instances[seed] == 0:
                continue  # a lesion too faint or small to be labelled at its centre
            truth = instances == instances[seed]
            grown = grow_from_seed(volume, seed)
            row = {"case": case, "type": lesion.get("kind", "lesion"), "diameter_mm": lesion["diameter_mm"]}
            row["grown"] = dice(grown, truth)
            if model is not None:
                piece = keep_seed_piece(model, seed) if model[seed] else np.zeros_like(model)
                row["model_at_click"] = bool(model[seed])
                row["model"] = dice(piece, truth)
                row["grown_and_model"] = dice(grown & piece, truth) if model[seed] else row["grown"]
                row["grown_or_model"] = dice(grown | piece, truth)
            rows.append(row)
    return rows


def report(rows: list[dict], args) -> dict:
    scores = [k for k in ("grown", "model", "grown_and_model", "grown_or_model") if rows and k in rows[0]]
    by_type = collections.defaultdict(list)
    for row in rows:
        by_type[row["type"]].append(row)

    def summary(group):
        out = {"lesions": len(group), **{f"dice_{k}": round(float(np.mean([r[k] for r in group])), 3) for k in scores}}
        if group and "model_at_click" in group[0]:
            out["model_at_click"] = sum(r["model_at_click"] for r in group)
        return out

    return {
        "dataset": str(args.dataset),
        "cases": len({r["case"] for r in rows}),
        "segmenter": args.segmenter,
        "all": summary(rows),
        "by_type": {t: summary(g) for t, g in sorted(by_type.items())},
    }


if __name__ == "__main__":
    main()
