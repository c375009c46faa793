"""Synthetic phantoms (chest CT with nodules, brain MR with lesions) and ``radlens phantom``.

They exist for the demo, the tests and the benchmarks: deterministic from a seed, with exact labels
(nodule instance masks and boxes, lesion masks), and called SYNTHETIC in every description they carry.
The anatomy lives in :mod:`radlens.imaging.phantom_chest` and :mod:`radlens.imaging.phantom_brain`; this module turns
it into :class:`Volume` + labels + findings and writes labelled folders
(nnU-Net v2; docs/architecture.md, "Labelled folders").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import write_json
from radlens.imaging.errors import ImagingError
from radlens.imaging.phantom_fields import Grid, instance_boxes
from radlens.imaging.progress import Progress, check_cancel
from radlens.imaging.volume import StudyInfo, Volume
from radlens.imaging.volume_io import write_volume
from radlens.imaging.windowing import preset

KINDS = (
    "chest-ct", "brain-mr", "brain-mr-varied", "brain-mr-sequences", "chest-ct-independent", "brain-mr-independent",
)  # fmt: skip
FORMATS = ("nifti", "dicom")
STUDY_DATE = "20000101"  # fixed, so that a seed always gives the same files


@dataclass(frozen=True)
class PhantomLesion:
    """One labelled finding of a phantom; ``box_zyx`` is half-open and comes from the instance mask."""

    id: int  # its value in the instance map
    kind: str  # a nodule type (solid, part-solid, ground-glass, ...) or a brain lesion family
    center_zyx: tuple[float, float, float]  # fractional voxel index of the centre
    center_lps: tuple[float, float, float]
    diameter_mm: float
    box_zyx: tuple[int, int, int, int, int, int]
    touches: str | None = None  # "pleura" | "vessel" | "fissure" | None, measured on the masks
    contrast: str | None = None  # brain lesions: "hyper" | "hypo"
    margin: str | None = None  # chest nodules: "smooth" | "lobulated" | "spiculated"
    calcification: str | None = None  # calcified nodules: "central" | "diffuse"

    def to_json(self, volume: Volume) -> dict:
        """The entry of ``labelsTr/CASE.json``: index and LPS (mm) boxes, as findings.json spells them."""
        return {
            "id": self.id,
            "label_value": self.id,
            "kind": self.kind,
            "center_zyx": [round(v, 3) for v in self.center_zyx],
            "center_lps": [round(v, 3) for v in self.center_lps],
            "diameter_mm": round(self.diameter_mm, 3),
            "box_zyx": list(self.box_zyx),
            "box_lps": [round(float(v), 3) for v in box_lps(volume, self.box_zyx)],
            "touches": self.touches,
            "contrast": self.contrast,
            "margin": self.margin,
            "calcification": self.calcification,
        }


@dataclass(frozen=True, eq=False)
class Phantom:
    """A SYNTHETIC study with its ground truth: what ``radlens phantom`` writes for one case."""

    volume: Volume
    labels: np.ndarray  # chest: nodule instance map (nodule i → i); brain: lesion label map (1 = lesion)
    findings: tuple[PhantomLesion, ...]
    kind: str
    seed: int


def box_lps(volume: Volume, box_zyx) -> np.ndarray:
    """[x0, y0, z0, x1, y1, z1] mm: the physical extent (voxel edges) of a half-open index box."""
    z0, y0, x0, z1, y1, x1 = box_zyx
    corners = np.array([(z, y, x) for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], dtype=np.float64) - 0.5
    lps = volume.index_to_lps(corners)
    return np.concatenate([lps.min(axis=0), lps.max(axis=0)])


def _uid(*parts: object) -> str:
    """A valid DICOM UID (2.25 + 128-bit integer) that is a pure function of ``parts``."""
    digest = hashlib.sha256("/".join(str(p) for p in ("radlens-phantom", *parts)).encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def check_shape(shape_zyx) -> tuple[int, int, int]:
    """A phantom grid needs three sizes of at least 8 voxels (smaller grids cannot hold the anatomy)."""
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom shape must be three sizes of at least 8 voxels, got {list(shape)}")
    return shape  # type: ignore[return-value]


def _grid(default_shape, extent_zyx, shape_zyx, spacing_zyx) -> Grid:
    """The requested grid; without a spacing, one that keeps the body at its physical size."""
    shape = check_shape(shape_zyx or default_shape)
    if spacing_zyx is None:
        spacing = tuple(e / n for e, n in zip(extent_zyx, shape, strict=True))
    else:
        spacing = tuple(float(s) for s in spacing_zyx)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"phantom spacing must be three positive sizes, got {spacing}")
    return Grid(shape, spacing)  # type: ignore[arg-type]


def _assemble(
    kind: str, seed: int, grid: Grid, centre_lps, array, instances, raw, modality, description, windows
) -> tuple[Volume, tuple[PhantomLesion, ...]]:
    """Place the grid in LPS (identity direction, body centre at ``centre_lps``) and index the findings."""
    spacing_xyz = np.asarray(grid.spacing_zyx[::-1])
    origin = np.asarray(centre_lps) - (np.asarray(grid.shape_zyx[::-1]) - 1) / 2 * spacing_xyz
    study = StudyInfo(
        patient_name="SYNTHETIC^PHANTOM",
        patient_id=f"PHANTOM-{kind}-{seed}",
        study_uid=_uid(kind, seed, "study"),
        study_date=STUDY_DATE,
        study_description=f"SYNTHETIC {kind} phantom (radlens phantom, seed {seed})",
    )
    volume = Volume(
        array=array,
        spacing_zyx=grid.spacing_zyx,
        origin_lps=tuple(origin),
        direction=np.eye(3),
        modality=modality,
        series_uid=_uid(kind, seed, "series"),
        description=description,
        study=study,
        windows=windows,
        source=f"synthetic:{kind}:{seed}",
    )
    boxes = instance_boxes(instances, len(raw))
    findings = []
    for i, (item, box) in enumerate(zip(raw, boxes, strict=True), start=1):
        c_lps = tuple(float(v) for v in np.asarray(item.centre_xyz) + np.asarray(centre_lps))
        c_zyx = tuple(float(v) for v in volume.lps_to_index(c_lps))
        findings.append(
            PhantomLesion(
                id=i,
                kind=item.kind,
                center_zyx=c_zyx,  # type: ignore[arg-type]
                center_lps=c_lps,  # type: ignore[arg-type]
                diameter_mm=float(item.diameter_mm),
                box_zyx=tuple(int(v) for v in box),  # type: ignore[arg-type]
                touches=getattr(item, "touches", None),
                contrast=getattr(item, "contrast", None),
                margin=getattr(item, "margin", None),
                calcification=getattr(item, "calcification", None),
            )
        )
    return volume, tuple(findings)


def make_chest_ct(seed: int, shape_zyx=None, spacing_zyx=None) -> Phantom:
    """A SYNTHETIC chest CT in HU with 2–6 labelled nodules of every Fleischner type, 3–30 mm
    (kind "mass" for the occasional 30–50 mm one), each case's patient and scan drawn at random.

    The default grid, 128×192×192 voxels of 2 mm, covers 256×384×384 mm: the chest of a body about
    340 mm wide (and, in half the cases, the upper abdomen instead of the apices; in a fifth, the lower
    neck), small enough for a fast demo and CPU inference. Nodules span at least 1.5 voxels (3 mm
    here and on finer grids). Any other ``shape_zyx`` keeps that field of view unless ``spacing_zyx`` is
    given. The series description names the slice thickness, kernel and noise of the case.
    """
    from radlens.imaging.phantom_chest import DEFAULT_SHAPE_ZYX, EXTENT_ZYX, build_chest

    grid = _grid(DEFAULT_SHAPE_ZYX, EXTENT_ZYX, shape_zyx, spacing_zyx)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    array, labels, raw, acquisition = build_chest(rng, grid)
    volume, findings = _assemble(
        "chest-ct", seed, grid, (0.0, 30.0, -170.0), array, labels, raw,
        "CT", f"SYNTHETIC chest CT phantom ({acquisition.describe()})", (preset("lung"),),
    )  # fmt: skip
    return Phantom(volume, labels, findings, "chest-ct", int(seed))


def make_brain_mr(
    seed: int, shape_zyx=None, spacing_zyx=None, varied: bool = False, lesion_free: bool = False,
    fluid_lesions: float = 0.0, sequences: bool = False,
) -> Phantom:
    """A SYNTHETIC T1-like brain MR (0..~1000, int16) with 2–6 lesions of 3–25 mm, hyper- and hypointense.

    Default grid: 128×192×192 voxels of 1.5×1.25×1.25 mm (192×240×240 mm), a routine head field of view.
    ``labels`` is the lesion label map (1 = lesion); ``findings`` keeps each lesion's box and size.
    ``varied``: the contrast, bias field, slice thickness, noise and gamma of each case drawn at random
    (domain randomisation, for training), with periventricular plaques and rim-enhancing tumours too.
    ``lesion_free``: a healthy brain, no lesion (negatives for a study-level classifier).
    ``fluid_lesions``: the share of lesions with the fluid's signal (``build_brain``; varied cases).
    ``sequences``: varied, but the contrast one of the common sequences (``make_sequence_brain_mr``).
    """
    from radlens.imaging.phantom_brain import DEFAULT_SHAPE_ZYX, EXTENT_ZYX, SEQUENCES, build_brain

    kind = "brain-mr-sequences" if sequences else "brain-mr-varied" if varied else "brain-mr"
    grid = _grid(DEFAULT_SHAPE_ZYX, EXTENT_ZYX, shape_zyx, spacing_zyx)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4 if sequences else 3 if varied else 2]))
    sequence = str(rng.choice(list(SEQUENCES))) if sequences else None
    array, instances, raw = build_brain(
        rng, grid, varied=varied or sequences, lesions=not lesion_free, fluid_lesions=fluid_lesions, sequence=sequence
    )
    contrast = f"{sequence} contrast" if sequence else "random contrast" if varied else "T1-like"
    volume, findings = _assemble(
        kind, seed, grid, (0.0, 15.0, 30.0), array, instances, raw,
        "MR", f"SYNTHETIC brain MR phantom ({contrast})", (),
    )  # fmt: skip
    return Phantom(volume, (instances > 0).astype(np.uint8), findings, kind, int(seed))


def make_varied_brain_mr(
    seed: int, shape_zyx=None, spacing_zyx=None, lesion_free: bool = False, fluid_lesions: float = 0.0
) -> Phantom:
    """:func:`make_brain_mr` with ``varied=True``: training data for a segmenter of any MR contrast."""
    return make_brain_mr(
        seed, shape_zyx, spacing_zyx, varied=True, lesion_free=lesion_free, fluid_lesions=fluid_lesions
    )


def make_sequence_brain_mr(
    seed: int, shape_zyx=None, spacing_zyx=None, lesion_free: bool = False, fluid_lesions: float = 0.0
) -> Phantom:
    """A varied brain MR whose contrast is one of the common sequences (T1-, T2- or FLAIR-like, a third
    each), the tissue signals drawn at random in that sequence's order: training data for a segmenter
    of the sequences real scanners make, easier to learn than any contrast at all."""
    return make_brain_mr(
        seed, shape_zyx, spacing_zyx, lesion_free=lesion_free, fluid_lesions=fluid_lesions, sequences=True
    )


def make_independent_chest_ct(seed: int, shape_zyx=None, spacing_zyx=None) -> Phantom:
    """A chest CT of the independently written generator (imaging.phantom_independent), for cross-source figures."""
    from radlens.imaging import phantom_independent  # it builds on this module's Phantom

    return phantom_independent.make_independent_chest_ct(seed, shape_zyx, spacing_zyx)


def make_independent_brain_mr(seed: int, shape_zyx=None, spacing_zyx=None) -> Phantom:
    """A T2-like brain MR of the independently written generator, for cross-source figures."""
    from radlens.imaging import phantom_independent

    return phantom_independent.make_independent_brain_mr(seed, shape_zyx, spacing_zyx)


MAKERS = {
    "chest-ct": make_chest_ct,
    "brain-mr": make_brain_mr,
    "brain-mr-varied": make_varied_brain_mr,
    "brain-mr-sequences": make_sequence_brain_mr,
    # Cross-source evaluation: written apart from the generators above, sharing no shape or intensity code.
    "chest-ct-independent": make_independent_chest_ct,
    "brain-mr-independent": make_independent_brain_mr,
}
# The code that made each kind: kinds of one generator share its anatomy and intensity models, so a
# figure on one kind for a model trained on another of the same generator is still in-generator.
GENERATOR = {
    "chest-ct": "chest", "brain-mr": "brain", "brain-mr-varied": "brain", "brain-mr-sequences": "brain",
    "chest-ct-independent": "independent chest", "brain-mr-independent": "independent brain",
}  # fmt: skip
CASE_PREFIX = {kind: kind.split("-")[0] for kind in KINDS}
# The kinds that can make a healthy case (``--lesion-free``); the independent generator cannot.
LESION_FREE_KINDS = ("brain-mr", "brain-mr-varied", "brain-mr-sequences")
# The kinds whose contrast is drawn, so a lesion may take the fluid's signal (``--fluid-lesions``).
FLUID_LESION_KINDS = ("brain-mr-varied", "brain-mr-sequences")


def case_seed(seed: int, index: int) -> int:
    """Case ``index``'s seed: a function of (seed, index) only, so more cases never change earlier ones."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def is_lesion_free(seed: int, index: int, fraction: float) -> bool:
    """Whether case ``index`` is healthy: a draw of its own, so the fraction never changes other cases."""
    if fraction <= 0:
        return False
    return bool(np.random.default_rng([int(seed), int(index), 17]).random() < fraction)


def iter_write_phantoms(
    out,
    *,
    kind: str,
    cases: int,
    seed: int,
    fmt: str = "nifti",
    shape_zyx=None,
    lesion_free: float = 0.0,
    fluid_lesions: float = 0.0,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, Path]:
    """Write ``cases`` SYNTHETIC studies and their labels as an nnU-Net v2 folder; return its root.

    OUT/dataset.json; imagesTr/CASE_0000.nii.gz (or, with ``fmt="dicom"``, the DICOM series folder
    imagesTr/CASE_0000/, the channel suffix the dataset readers expect); labelsTr/CASE.nii.gz on the
    image's grid (chest: nodule instance map 1..N; brain: lesion map) and labelsTr/CASE.json (boxes).
    ``lesion_free``: the share of brain cases made healthy (an empty label map), chosen per case.
    ``fluid_lesions``: brain-mr-varied: the share of lesions given the fluid's signal (T2-like plaques).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r} (known: {', '.join(KINDS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown phantom format {fmt!r} (known: {', '.join(FORMATS)})")
    root = Path(out)
    if cases < 1:
        raise ImagingError(root, f"--cases must be at least 1, got {cases}")
    if root.exists() and not root.is_dir():
        raise ImagingError(root, "exists and is not a folder")
    if seed < 0:
        raise ImagingError(root, f"--seed must be 0 or more, got {seed}")
    if not 0.0 <= lesion_free <= 1.0:
        raise ImagingError(root, f"--lesion-free must be a fraction from 0 to 1, got {lesion_free}")
    if lesion_free and kind not in LESION_FREE_KINDS:
        raise ImagingError(root, f"--lesion-free: only {' and '.join(LESION_FREE_KINDS)} phantoms can be healthy")
    if not 0.0 <= fluid_lesions <= 1.0:
        raise ImagingError(root, f"--fluid-lesions must be a fraction from 0 to 1, got {fluid_lesions}")
    if fluid_lesions and kind not in FLUID_LESION_KINDS:
        raise ImagingError(
            root, f"--fluid-lesions: only {' and '.join(FLUID_LESION_KINDS)} phantoms draw their contrast"
        )
    if shape_zyx is not None:
        try:
            check_shape(shape_zyx)
        except ValueError as err:
            raise ImagingError(root, str(err)) from None
    _check_previous(root, kind)
    images, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images, labels_dir):
        folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(cases):
        name = f"{CASE_PREFIX[kind]}_{i:03d}"
        check_cancel(cancel, "radlens phantom")
        yield Progress(i, cases, f"making {name}")
        s = case_seed(seed, i)
        healthy = is_lesion_free(seed, i, lesion_free)
        options = {"lesion_free": True} if healthy else {}
        options |= {"fluid_lesions": fluid_lesions} if fluid_lesions else {}
        ph = MAKERS[kind](s, shape_zyx, **options)
        check_cancel(cancel, "radlens phantom")
        if fmt == "nifti":
            write_volume(ph.volume, images / f"{name}_0000.nii.gz")
        else:
            _write_dicom_case(ph, images / f"{name}_0000")
        write_volume(ph.volume.with_array(ph.labels, modality="OT"), labels_dir / f"{name}.nii.gz")
        key = "nodules" if _is_chest(kind) else "lesions"
        write_json(
            labels_dir / f"{name}.json",
            {
                "case": name,
                "synthetic": True,
                "description": f"SYNTHETIC {kind} phantom, labels exact by construction",
                "kind": kind,
                "seed": s,
                "geometry": ph.volume.geometry(),
                key: [f.to_json(ph.volume) for f in ph.findings],
            },
        )
        names.append(name)
        yield Progress(i + 1, cases, f"wrote {name}")
    _remove_stale_cases(root, kind, set(names), fmt)
    command = f"radlens phantom {root} --kind {kind} --cases {cases} --seed {seed}"
    command += " --format dicom" if fmt == "dicom" else ""
    command += f" --shape {' '.join(str(int(n)) for n in shape_zyx)}" if shape_zyx is not None else ""
    command += f" --lesion-free {lesion_free:g}" if lesion_free else ""
    command += f" --fluid-lesions {fluid_lesions:g}" if fluid_lesions else ""
    write_json(root / "dataset.json", _dataset_json(kind, seed, cases, fmt, command))
    return root


def _is_chest(kind: str) -> bool:
    return kind.startswith("chest-ct")


def _check_previous(root: Path, kind: str) -> None:
    """Write only over nothing or over our own phantoms of the same kind: never mix into someone's dataset."""
    path = root / "dataset.json"
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("synthetic") is not True or meta.get("kind") not in KINDS:
        raise ImagingError(root, "holds a dataset not written by radlens phantom; choose another folder")
    if meta["kind"] != kind:
        raise ImagingError(root, f"holds {meta['kind']} phantoms; choose another folder for {kind}")


def _remove_stale_cases(root: Path, kind: str, written: set[str], fmt: str) -> None:
    """Cases left by an earlier, larger run (or in the other image format) would silently join the dataset."""
    pattern = re.compile(rf"({CASE_PREFIX[kind]}_\d+)(_0000)?(\.nii\.gz|\.json)?")
    for folder in (root / "imagesTr", root / "labelsTr"):
        for p in folder.iterdir():
            m = pattern.fullmatch(p.name)
            if m is None:
                continue
            other_format = folder.name == "imagesTr" and p.is_dir() != (fmt == "dicom")
            if m.group(1) not in written or other_format:
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def _dataset_json(kind: str, seed: int, cases: int, fmt: str, command: str) -> dict:
    """nnU-Net v2's dataset.json, plus what a bundle trained or evaluated on it records: ``command``
    makes these very cases again (case seeds depend only on the seed and the case index)."""
    chest = _is_chest(kind)
    return {
        "name": f"RadLens SYNTHETIC {kind} phantoms",
        "description": (
            f"SYNTHETIC data from `radlens phantom --kind {kind} --seed {seed}`: {cases} made-up "
            f"{'chest CT studies with nodule instance masks' if chest else 'brain MR studies with lesion masks'}"
            ", for demos and tests, not patients"
        ),
        "synthetic": True,
        "channel_names": {"0": "CT" if chest else {"brain-mr": "T1", "brain-mr-independent": "T2"}.get(kind, "MR")},
        "labels": {"background": 0, "nodule": 1} if chest else {"background": 0, "lesion": 1},
        "numTraining": cases,
        "file_ending": ".nii.gz",
        "image_format": fmt,
        "label_kind": "instances" if chest else "semantic",
        "kind": kind,
        "seed": seed,
        "command": command,
    }


def _write_dicom_case(ph: Phantom, folder: Path) -> None:
    """The series goes to a fresh temporary folder that replaces ``folder`` whole: never a mix of two runs."""
    from radlens.imaging.dicom_write import write_dicom_series

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_dicom_series(
            ph.volume,
            tmp,
            patient_name=ph.volume.study.patient_name,
            patient_id=ph.volume.study.patient_id,
            study_uid=ph.volume.study.study_uid,
            series_uid=ph.volume.series_uid,
            study_date=STUDY_DATE,
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
