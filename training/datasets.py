"""Labelled folders read into one in-memory description, validated before training.

(docs/architecture.md, "Labelled folders")

Layouts: nnU-Net v2 (``dataset.json`` + ``imagesTr``/``labelsTr``, optional ``imagesTs``/``labelsTs``,
images as files or DICOM series folders), the Medical Segmentation Decathlon (``dataset.json`` with a
``training`` list), LUNA16 (``*.mhd`` + ``annotations.csv``) and classification (a folder per label, or
``studies.csv``; optionally ``slice_labels.json``, per case a 0/1 per slice in the image's z order,
-1 where unknown, and ``source.json`` saying what made the data). Every problem found is collected and
raised as one :class:`DatasetError`, so a user fixes a folder in one pass instead of one failed run per
problem.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radlens.imaging.errors import ImagingError, RadlensError
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import is_volume_file, read_volume

LAYOUTS = ("nnunet", "msd", "luna16", "classification")


class DatasetError(RadlensError):
    """A labelled folder that cannot be trained on; the message lists every problem found."""

    def __init__(self, root: object, problems: list[str]):
        self.root = str(root)
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{self.root}: {n} problem{'s' * (n != 1)}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class NoduleRef:
    """A reference nodule: centre in LPS mm and diameter in mm (what the LUNA16 hit rule needs)."""

    center_lps: tuple[float, float, float]
    diameter_mm: float


@dataclass
class Case:
    case_id: str
    image: Path  # a volume file or a DICOM series folder
    label: Path | None = None  # label map (segmentation) or instance map (detection)
    nodules: list[NoduleRef] | None = None  # from a boxes JSON or annotations.csv
    class_label: str | None = None
    slice_labels: list[int] | None = None  # classification: 1/0 per slice (z order), -1 unknown
    test: bool = False  # part of the dataset's own test set (imagesTs / MSD "test" with labels)


@dataclass
class Dataset:
    root: Path
    layout: str
    name: str
    modality: str
    labels: dict[int, str]  # foreground label value → name
    cases: list[Case]
    synthetic: bool = False
    class_names: list[str] = field(default_factory=list)
    instances: bool = False  # label maps number objects 1..N (one class): dataset.json "label_kind"
    data_command: str | None = None  # what made the data (dataset.json "command", written by radlens phantom)

    @property
    def train_cases(self) -> list[Case]:
        return [c for c in self.cases if not c.test]

    @property
    def test_cases(self) -> list[Case]:
        return [c for c in self.cases if c.test]


# -- reading --------------------------------------------------------------------------------------


def load_image(path: Path) -> Volume:
    """A case's image: a volume file, or a DICOM series folder through ``imaging.load``."""
    if path.is_dir():
        from radlens import imaging

        return imaging.load(path)
    return read_volume(path)


def load_label(path: Path) -> Volume:
    return read_volume(path)


def nodules_from_instances(label: Volume) -> list[NoduleRef]:
    """Nodules of an instance map 1..N: centre of mass and the diameter of a sphere of equal volume."""
    arr = np.asarray(label.array)
    ids = [int(v) for v in np.unique(arr) if v > 0]
    if not ids:
        return []
    centres = ndimage.center_of_mass(np.ones_like(arr, dtype=np.uint8), arr, ids)
    counts = ndimage.sum_labels(np.ones_like(arr, dtype=np.uint8), arr, ids)
    voxel = float(np.prod(label.spacing_zyx))
    out = []
    for c, n in zip(centres, counts, strict=True):
        diameter = float((6.0 * n * voxel / np.pi) ** (1.0 / 3.0))
        out.append(NoduleRef(tuple(float(v) for v in label.index_to_lps(c)), diameter))
    return out


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        problems.append(f"{path}: cannot read JSON ({err})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def _nodules_from_boxes_json(path: Path, problems: list[str]) -> list[NoduleRef] | None:
    """Boxes JSON beside a label (phantom output): a list of objects with a centre in LPS mm and a diameter."""
    data = _read_json(path, problems)
    if data is None:
        return None
    items = data.get("nodules", data.get("boxes", data.get("lesions")))
    if not isinstance(items, list):
        problems.append(f"{path}: no 'nodules' or 'boxes' list")
        return None
    out = []
    for i, item in enumerate(items):
        centre = item.get("center_lps")
        diameter = item.get("diameter_mm")
        if centre is None and "box_lps" in item:
            b = item["box_lps"]
            centre = [(b[k] + b[k + 3]) / 2 for k in range(3)]
        if centre is None or diameter is None or len(centre) != 3:
            problems.append(f"{path}: entry {i} lacks center_lps/box_lps or diameter_mm")
            continue
        out.append(NoduleRef(tuple(float(v) for v in centre), float(diameter)))
    return out


def _label_names(raw: dict) -> dict[int, str]:
    """nnU-Net maps name → value, the Decathlon value → name; either way: foreground value → name."""
    out: dict[int, str] = {}
    for k, v in raw.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[int(v)] = str(k)
        elif isinstance(v, list):  # nnU-Net regions: name → [values]; keep the first value's name
            for x in v:
                out.setdefault(int(x), str(k))
        elif str(k).lstrip("-").isdigit():
            out[int(k)] = str(v)
    return {k: v for k, v in sorted(out.items()) if k != 0}


def _is_synthetic(meta: dict) -> bool:
    if bool(meta.get("synthetic", False)):
        return True
    text = " ".join(str(meta.get(k, "")) for k in ("name", "description", "reference", "licence", "license"))
    return "synthetic" in text.lower()


def _modality(meta: dict) -> str:
    for key in ("channel_names", "modality"):
        value = meta.get(key)
        if isinstance(value, dict) and value:
            first = str(next(iter(value.values()))).upper()
            if first in ("CT", "MR", "MRI", "PT"):
                return "MR" if first.startswith("MR") else first
            if first in ("T1", "T2", "FLAIR", "T1W", "T2W", "DWI", "ADC"):
                return "MR"
            return first
    return "OT"


def _image_for(folder: Path, case_id: str, ending: str) -> Path | None:
    for candidate in (folder / f"{case_id}_0000{ending}", folder / f"{case_id}_0000"):
        if candidate.exists():
            return candidate
    return None


def _read_nnunet(root: Path, meta: dict, problems: list[str]) -> Dataset:
    ending = str(meta.get("file_ending", ".nii.gz"))
    cases: list[Case] = []
    for images, labels, test in (("imagesTr", "labelsTr", False), ("imagesTs", "labelsTs", True)):
        img_dir, lab_dir = root / images, root / labels
        if not img_dir.is_dir():
            if not test:
                problems.append(f"{img_dir}: missing folder")
            continue
        ids = set()
        for p in sorted(img_dir.iterdir()):
            name = p.name
            if p.is_dir() and name.endswith("_0000"):
                ids.add(name[: -len("_0000")])
            elif name.endswith(f"_0000{ending}"):
                ids.add(name[: -len(f"_0000{ending}")])
            elif name.endswith(ending) and not name.startswith("."):
                problems.append(f"{p}: image name lacks the channel suffix _0000")
        if test and not lab_dir.is_dir():
            continue  # unlabelled test images: nothing to evaluate against
        for case_id in sorted(ids):
            label = lab_dir / f"{case_id}{ending}"
            boxes = lab_dir / f"{case_id}.json"
            case = Case(case_id, _image_for(img_dir, case_id, ending), test=test)  # type: ignore[arg-type]
            if label.is_file():
                case.label = label
            if boxes.is_file():
                case.nodules = _nodules_from_boxes_json(boxes, problems)
            if case.label is None and case.nodules is None:
                problems.append(f"{label}: missing label for case {case_id}")
            cases.append(case)
        if lab_dir.is_dir():
            for p in sorted(lab_dir.iterdir()):
                stem = p.name[: -len(ending)] if p.name.endswith(ending) else None
                if stem is not None and stem not in ids:
                    problems.append(f"{p}: label without an image")
    if not cases and (root / "imagesTr").is_dir():
        problems.append(f"{root / 'imagesTr'}: no images")
    return Dataset(
        root, "nnunet", str(meta.get("name", root.name)), _modality(meta),
        _label_names(meta.get("labels", {})), cases, _is_synthetic(meta),
        instances=meta.get("label_kind") == "instances",
        data_command=meta["command"] if isinstance(meta.get("command"), str) else None,
    )  # fmt: skip


def _read_msd(root: Path, meta: dict, problems: list[str]) -> Dataset:
    cases: list[Case] = []
    for i, entry in enumerate(meta.get("training", [])):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            problems.append(f"{root / 'dataset.json'}: training entry {i} lacks image or label")
            continue
        image = (root / entry["image"]).resolve()
        label = (root / entry["label"]).resolve()
        case_id = image.name.split(".")[0]
        if not image.exists():
            problems.append(f"{image}: missing image for case {case_id}")
            continue
        if not label.is_file():
            problems.append(f"{label}: missing label for case {case_id}")
            continue
        cases.append(Case(case_id, image, label))
    if not cases and not problems:
        problems.append(f"{root / 'dataset.json'}: empty training list")
    return Dataset(
        root, "msd", str(meta.get("name", root.name)), _modality(meta),
        _label_names(meta.get("labels", {})), cases, _is_synthetic(meta),
    )  # fmt: skip


def _read_luna16(root: Path, problems: list[str]) -> Dataset:
    volumes = {p.stem: p for p in sorted(root.rglob("*.mhd"))}
    annotations: dict[str, list[NoduleRef]] = {uid: [] for uid in volumes}
    path = next(iter(sorted(root.rglob("annotations.csv"))))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"}
        if not needed <= set(reader.fieldnames or ()):
            problems.append(f"{path}: needs columns {', '.join(sorted(needed))}")
            rows: Iterable[dict] = ()
        else:
            rows = reader
        for n, row in enumerate(rows, start=2):
            uid = row["seriesuid"]
            if uid not in volumes:
                problems.append(f"{path}: line {n}: no {uid}.mhd in the folder")
                continue
            try:
                # LUNA16 world coordinates are the .mhd's physical space, which ITK reads as LPS.
                centre = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
                annotations[uid].append(NoduleRef(centre, float(row["diameter_mm"])))
            except ValueError:
                problems.append(f"{path}: line {n}: coordinates or diameter are not numbers")
    cases = [Case(uid, p, nodules=annotations[uid]) for uid, p in volumes.items()]
    return Dataset(root, "luna16", root.name, "CT", {1: "nodule"}, cases)


SLICE_LABELS = "slice_labels.json"
SOURCE = "source.json"


def _read_slice_labels(root: Path, cases: list[Case], problems: list[str]) -> None:
    """``slice_labels.json`` ({case: [1, 0, -1, ...]}) onto the cases; its lengths are checked later."""
    path = root / SLICE_LABELS
    if not path.is_file():
        return
    data = _read_json(path, problems)
    if data is None:
        return
    by_id = {c.case_id: c for c in cases}
    for case_id, values in data.items():
        if case_id not in by_id:
            problems.append(f"{path}: case {case_id} is not in the dataset")
        elif not isinstance(values, list) or not all(v in (-1, 0, 1) and not isinstance(v, bool) for v in values):
            problems.append(f"{path}: case {case_id}: slice labels must be a list of 1, 0 or -1 (unknown)")
        else:
            by_id[case_id].slice_labels = [int(v) for v in values]


def _read_classification(root: Path, problems: list[str]) -> Dataset:
    cases: list[Case] = []
    table = root / "studies.csv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"case", "label"} <= set(reader.fieldnames or ()):
                problems.append(f"{table}: needs columns case, label")
            else:
                for n, row in enumerate(reader, start=2):
                    image = root / row["case"]
                    if not image.exists():
                        problems.append(f"{image}: missing image (studies.csv line {n})")
                        continue
                    cases.append(Case(Path(row["case"]).name.split(".")[0], image, class_label=row["label"]))
    else:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for item in sorted(folder.iterdir()):
                if item.is_dir() or is_volume_file(item):
                    cases.append(Case(item.name.split(".")[0], item, class_label=folder.name))
    names = sorted({c.class_label for c in cases if c.class_label is not None})
    if len(names) < 2 and not problems:
        problems.append(f"{root}: classification needs at least two labels, found {names or 'none'}")
    _read_slice_labels(root, cases, problems)
    about = _read_json(root / SOURCE, problems) if (root / SOURCE).is_file() else {}
    about = about or {}
    return Dataset(
        root, "classification", str(about.get("name", root.name)), str(about.get("modality", "OT")).upper(),
        {}, cases, bool(about.get("synthetic", False)), class_names=names,
        data_command=about["command"] if isinstance(about.get("command"), str) else None,
    )  # fmt: skip


def detect_layout(root: Path) -> str:
    if (root / "dataset.json").is_file():
        try:
            meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        except ValueError:
            return "nnunet"
        return "msd" if isinstance(meta, dict) and isinstance(meta.get("training"), list) else "nnunet"
    if any(root.rglob("annotations.csv")) and any(root.rglob("*.mhd")):
        return "luna16"
    if (root / "studies.csv").is_file() or (root.is_dir() and any(p.is_dir() for p in root.iterdir())):
        return "classification"
    raise DatasetError(root, ["not a labelled folder: no dataset.json, annotations.csv or studies.csv"])


def read_dataset(path: str | Path, task: str | None = None) -> Dataset:
    """Describe a labelled folder and validate it; raise one DatasetError listing every problem.

    ``task`` ("segment", "detect", "classify") decides which labels must be present. Validation reads
    each label (and each image's header) once; images are decoded later, by the training cache.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, ["no such folder"])
    layout = detect_layout(root)
    problems: list[str] = []
    if layout in ("nnunet", "msd"):
        meta = _read_json(root / "dataset.json", problems)
        if meta is None:
            raise DatasetError(root, problems)
        ds = _read_nnunet(root, meta, problems) if layout == "nnunet" else _read_msd(root, meta, problems)
    elif layout == "luna16":
        ds = _read_luna16(root, problems)
    else:
        ds = _read_classification(root, problems)
    _validate(ds, task, problems)
    if problems:
        raise DatasetError(root, problems)
    return ds


def _header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
    """Shape (z, y, x), spacing (z, y, x), origin and direction of a volume file, without its pixels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    return tuple(size[::-1]), tuple(reader.GetSpacing()[::-1]), reader.GetOrigin(), reader.GetDirection()


def _validate(ds: Dataset, task: str | None, problems: list[str]) -> None:
    if task == "classify" and ds.layout != "classification":
        problems.append(f"{ds.root}: classification needs a folder per label or studies.csv")
        return
    if task in ("segment", "detect") and ds.layout == "classification":
        problems.append(f"{ds.root}: {task} needs label maps (nnU-Net, Decathlon or LUNA16 layout)")
        return
    if task == "segment" and ds.layout == "luna16":
        problems.append(f"{ds.root}: LUNA16 annotations are centres and diameters; segmentation needs label maps")
        return
    if ds.layout in ("nnunet", "msd") and not ds.labels:
        problems.append(f"{ds.root / 'dataset.json'}: no foreground labels")
    for case in ds.cases:
        if case.image is None or not case.image.exists():
            problems.append(f"{case.image}: missing image for case {case.case_id}")
            continue
        if ds.layout == "classification":
            if case.slice_labels is not None and case.image.is_file():
                try:
                    depth = _header(case.image)[0][0]
                except RuntimeError:
                    problems.append(f"{case.image}: unreadable image")
                    continue
                if depth != len(case.slice_labels):
                    problems.append(
                        f"{case.case_id}: {len(case.slice_labels)} slice labels for {depth} slices ({SLICE_LABELS})"
                    )
            continue
        if task == "segment" and case.label is None:
            if case.nodules is None:
                continue  # already reported as a missing label
            problems.append(f"{case.case_id}: no label map (segmentation needs labelsTr/{case.case_id}.nii.gz)")
            continue
        image_grid = None
        if case.image.is_file():
            try:
                image_grid = _header(case.image)
            except RuntimeError:
                problems.append(f"{case.image}: unreadable image")
                continue
            if len(image_grid[0]) != 3:
                problems.append(f"{case.image}: not a 3D single-channel volume (size {image_grid[0]})")
                continue
        if case.label is None:
            continue
        try:
            label = load_label(case.label)
        except ImagingError as err:
            problems.append(str(err))
            continue
        if image_grid is not None:
            shape, spacing, origin, direction = image_grid
            same = (
                tuple(shape) == label.shape_zyx
                and np.allclose(spacing, label.spacing_zyx, atol=1e-3)
                and np.allclose(origin, label.origin_lps, atol=1e-2)
                and np.allclose(np.reshape(direction, (3, 3)), label.direction, atol=1e-3)
            )
            if not same:
                problems.append(
                    f"{case.label}: geometry differs from its image (label {list(label.shape_zyx)} at "
                    f"{[round(s, 3) for s in label.spacing_zyx]} mm, image {list(shape)} at "
                    f"{[round(s, 3) for s in spacing]} mm)"
                )
        values = np.unique(label.array)
        if np.any(values != np.round(values)) or np.any(values < 0):
            problems.append(f"{case.label}: label values must be non-negative integers")
        elif task != "detect" and not ds.instances:
            unknown = sorted(set(int(v) for v in values) - set(ds.labels) - {0})
            if unknown:
                problems.append(
                    f"{case.label}: unknown label value(s) {unknown} (dataset.json lists {sorted(ds.labels)})"
                )
