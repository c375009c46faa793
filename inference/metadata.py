"""A bundle's metadata.json as typed, frozen records, validated once when read, with their defaults.

Why: the engine, the pre-processing, the ensemble builder and the evaluation all need the same
fields; read as a raw dict, each re-applied its own default (overlap, blend, crop, thresholds) at
each read. Here every default has one home and every check runs once, with the file in the message.
The free-form sections a person reads (``training``, ``evaluation``, ``data_sources``,
``applicability``) stay plain JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from radlens.inference.errors import BundleError

TASKS = ("detection", "segmentation", "classification")
# How a bundle's input is prepared and its output read: RadLens' own (``input``), or nnU-Net's
# predictor reproduced step for step (``nnunet``, for models imported from nnU-Net results folders).
# MONAI's own transforms around RadLens' windows (``monai``, for models imported from MONAI bundles).
PIPELINES = ("radlens", "nnunet", "monai", "candidates")  # candidates: inference.candidates, two stages
# How a two-stage detector scores a candidate (inference.candidates.final_scores); training chooses one.
SCORINGS = ("classifier", "classifier×shape")
NORMALIZATIONS = ("ct-clip", "zscore")
SCALES = ("unit", "zscore")
# A bundle's sliding windows when its metadata does not say: how far neighbouring windows overlap,
# and how their outputs are averaged (inference.engine.window_profile).
DEFAULT_OVERLAP = 0.25
BLENDS = ("constant", "gaussian")
DEFAULT_BLEND = BLENDS[0]
REQUIRED = ("name", "version", "task", "arch", "input")


def is_window_overlap(value) -> bool:
    """Whether ``value`` is an overlap the sliding windows can run: a number from 0 up to (not including) 1."""
    return _is_number(value) and 0 <= value < 1


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _is_triple(value) -> bool:
    return isinstance(value, list | tuple) and len(value) == 3


@dataclass(frozen=True)
class Normalization:
    """How intensities are normalised: a fixed CT window (``ct-clip``), or z-score per volume (MR).

    ``ct-clip``: HU clipped to ``clip``, then scaled to [0, 1] (``scale="unit"``) or by the training
    set's ``mean``/``std`` (``scale="zscore"``). ``zscore``: mean and std of the voxels above
    ``foreground_above`` (MR, whose scale differs from scan to scan).
    """

    kind: str = "zscore"
    clip: tuple[float, float] = (-1000.0, 400.0)
    scale: str = "unit"
    mean: float = 0.0
    std: float = 1.0
    foreground_above: float = 0.0

    @classmethod
    def from_json(cls, block: dict | None, where: object = "normalization") -> Normalization:
        block = dict(block or {})
        unknown = sorted(set(block) - {f.name for f in fields(cls)})
        if unknown:
            raise BundleError(where, f"normalization has unknown field(s): {', '.join(unknown)}")
        kind = block.get("kind", cls.kind)
        if kind not in NORMALIZATIONS:
            raise BundleError(where, f"normalization {kind!r} is not one of {', '.join(NORMALIZATIONS)}")
        scale = block.get("scale", cls.scale)
        if scale not in SCALES:
            raise BundleError(where, f"normalization scale {scale!r} is not one of {', '.join(SCALES)}")
        clip = block.get("clip", cls.clip)
        if not (isinstance(clip, list | tuple) and len(clip) == 2 and all(_is_number(c) for c in clip)) or not (
            clip[0] < clip[1]
        ):
            raise BundleError(where, f"normalization clip must be two increasing numbers, not {clip!r}")
        numbers = {k: block.get(k, getattr(cls, k)) for k in ("mean", "std", "foreground_above")}
        bad = [f"{k} {v!r}" for k, v in numbers.items() if not _is_number(v)]
        if bad:
            raise BundleError(where, f"normalization needs numbers: {', '.join(bad)}")
        return cls(kind, (float(clip[0]), float(clip[1])), scale, **{k: float(v) for k, v in numbers.items()})

    def to_json(self) -> dict:
        return {**asdict(self), "clip": list(self.clip)}


# What a CT model's input is cropped to first: "body", the voxels above -500 HU (CT's default);
# "lungs", the lungs' bounding box (inference.lungs) plus a margin, or the body when none are found.
CROPS = ("body", "lungs")


@dataclass(frozen=True)
class InputSpec:
    """What a network expects: the modality, the grid (spacing, patch), the normalisation, the crop,
    and how its sliding windows run (overlap, blend, test-time mirroring axes)."""

    modality: str
    spacing_zyx: tuple[float, float, float]
    patch_zyx: tuple[int, int, int]
    normalization: Normalization = field(default_factory=Normalization)
    crop: str | None = None  # one of CROPS, or None (MR's default)
    overlap: float = DEFAULT_OVERLAP
    blend: str = DEFAULT_BLEND
    mirror_axes: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, block, where: object = "input") -> InputSpec:
        if not isinstance(block, dict) or not all(k in block for k in ("modality", "spacing_zyx", "patch_zyx")):
            raise BundleError(where, "input must give modality, spacing_zyx and patch_zyx")
        spacing, patch = block["spacing_zyx"], block["patch_zyx"]
        if not (_is_triple(spacing) and all(_is_number(s) and s > 0 for s in spacing)):
            raise BundleError(where, f"input spacing_zyx needs three positive numbers (z, y, x), not {spacing!r}")
        if not (_is_triple(patch) and all(type(p) is int and p > 0 for p in patch)):
            raise BundleError(where, f"input patch_zyx needs three positive whole numbers (z, y, x), not {patch!r}")
        mirror = block.get("mirror_axes", [])
        axes_ok = isinstance(mirror, list | tuple) and all(type(a) is int and a in (0, 1, 2) for a in mirror)
        if not axes_ok or len(set(mirror)) != len(mirror):
            raise BundleError(where, f"input.mirror_axes must list distinct image axes (0, 1, 2), not {mirror!r}")
        overlap = block.get("overlap", DEFAULT_OVERLAP)
        if not is_window_overlap(overlap):
            raise BundleError(where, f"input.overlap must be a number from 0 up to (not including) 1, not {overlap!r}")
        blend = block.get("blend", DEFAULT_BLEND)
        if blend not in BLENDS:
            raise BundleError(where, f"input.blend {blend!r} is not one of {', '.join(BLENDS)}")
        modality = str(block["modality"]).upper()
        crop = block.get("crop", "body" if modality == "CT" else None)
        if crop is not None and crop not in CROPS:
            raise BundleError(where, f"input.crop {crop!r} is not one of {', '.join(CROPS)} or null")
        return cls(
            modality=modality,
            spacing_zyx=tuple(float(s) for s in spacing),
            patch_zyx=tuple(patch),
            normalization=Normalization.from_json(block.get("normalization"), where),
            crop=crop,
            overlap=float(overlap),
            blend=blend,
            mirror_axes=tuple(mirror),
        )

    def to_json(self) -> dict:
        return {
            "modality": self.modality,
            "spacing_zyx": list(self.spacing_zyx),
            "patch_zyx": list(self.patch_zyx),
            "normalization": self.normalization.to_json(),
            "crop": self.crop,
            "overlap": self.overlap,
            "blend": self.blend,
            "mirror_axes": list(self.mirror_axes),
        }

    @property
    def preprocessing(self) -> tuple:
        """What :class:`~radlens.inference.preprocess.Preprocess` depends on: bundles equal here share one
        prepared volume."""
        return (self.modality, self.spacing_zyx, self.normalization, self.crop)


REGIONS = ("lungs",)


@dataclass(frozen=True)
class Applicability:
    """What a bundle is for, beyond its input modality (``applicability`` in metadata.json).

    ``region``: the organ its findings must touch; the engine drops findings elsewhere ("lungs": a
    chest CT model's boxes in the abdomen or the neck are not nodules). The rest is what a reader
    and the applicability check compare with a series: the body part, the MR contrasts it learned
    (``sequence``: one name or a list of them in metadata.json; empty for any contrast), and the slice
    thickness and lesion sizes it was trained and tested on.
    ``other_contrast``: what a series of another MR contrast gets, "warn" (run, with a warning) or
    "refuse" (for a model known to give nonsense there, as a T1 segmenter outlines T2 ventricles).
    """

    body_part: str = "any"
    region: str | None = None
    sequence: tuple[str, ...] = ()
    slice_thickness_mm: tuple[float, float] | None = None
    lesion_diameter_mm: tuple[float, float] | None = None
    other_contrast: str = "warn"

    @property
    def sequence_named(self) -> str:
        """The contrasts it learned, as a reader is told them: "T1-like", "T1-like or T2-like"."""
        return " or ".join(self.sequence) if self.sequence else "any"

    @classmethod
    def from_json(cls, block, where: object = "applicability") -> Applicability:
        block = dict(block or {})
        unknown = sorted(set(block) - {f.name for f in fields(cls)} - {"modality"})
        if unknown:
            raise BundleError(where, f"applicability has unknown field(s): {', '.join(unknown)}")
        region = block.get("region")
        if region not in (None, *REGIONS):
            raise BundleError(where, f"applicability.region {region!r} is not one of {', '.join(REGIONS)} or null")
        ranges = {}
        for key in ("slice_thickness_mm", "lesion_diameter_mm"):
            r = block.get(key)
            if r is not None and not (
                isinstance(r, list | tuple) and len(r) == 2 and all(_is_number(v) for v in r) and 0 <= r[0] <= r[1]
            ):
                raise BundleError(where, f"applicability.{key} must be [low, high] in mm, not {r!r}")
            ranges[key] = None if r is None else (float(r[0]), float(r[1]))
        other = block.get("other_contrast", "warn")
        if other not in ("warn", "refuse"):
            raise BundleError(where, f"applicability.other_contrast must be warn or refuse, not {other!r}")
        named = block.get("sequence", "any")
        if not (
            isinstance(named, str) or (isinstance(named, list) and named and all(isinstance(n, str) for n in named))
        ):
            raise BundleError(where, f"applicability.sequence must be a contrast or a list of them, not {named!r}")
        sequence = () if named in ("any", "") else (named,) if isinstance(named, str) else tuple(named)
        return cls(str(block.get("body_part", "any")), region, sequence, **ranges,
                   other_contrast=other)  # fmt: skip


@dataclass(frozen=True)
class BundleMetadata:
    """metadata.json of a bundle, read once. ``document`` is the file as it was read."""

    name: str
    version: str
    task: str
    arch: str
    input: InputSpec
    description: str = ""
    labels: tuple[str, ...] = ()
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    applicability: Applicability = field(default_factory=Applicability)
    threshold: float | None = None  # detectors: score; segmenters: probability
    min_component_ml: float = 0.0  # segmenters: smaller connected components are dropped
    sha256: str = ""
    pipeline: str = PIPELINES[0]
    nnunet: Any = None  # inference.nnunet.NnunetPlan when pipeline == "nnunet"
    monai: dict[str, Any] = field(default_factory=dict)  # allow-listed transforms when pipeline == "monai"
    scoring: str = SCORINGS[0]  # pipeline == "candidates"
    # Segmenters: the detector (a bundle name) whose boxes above its threshold a component must touch
    confirmed_by: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, meta, where: object = "metadata.json") -> BundleMetadata:
        if not isinstance(meta, dict):
            raise BundleError(where, "metadata must be a JSON object")
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise BundleError(where, f"missing field(s): {', '.join(missing)}")
        if meta["task"] not in TASKS:
            raise BundleError(where, f"task {meta['task']!r} is not one of {', '.join(TASKS)}")
        labels = meta.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise BundleError(where, f"labels must be a list of names, not {labels!r}")
        arch_kwargs = meta.get("arch_kwargs") or {}
        if not isinstance(arch_kwargs, dict):
            raise BundleError(where, "arch_kwargs must be a JSON object")
        thresholds = meta.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise BundleError(where, "thresholds must be a JSON object")
        min_ml = thresholds.get("min_component_ml", 0.0)
        if not _is_number(min_ml) or min_ml < 0:
            raise BundleError(where, f"thresholds.min_component_ml must be a number ≥ 0, not {min_ml!r}")
        pipeline = meta.get("pipeline", PIPELINES[0])
        if pipeline not in PIPELINES:
            raise BundleError(where, f"pipeline {pipeline!r} is not one of {', '.join(PIPELINES)}")
        plan = None
        if pipeline == "nnunet":
            from radlens.inference.nnunet import NnunetPlan

            plan = NnunetPlan.from_json(meta.get("nnunet"), where)
        monai_steps = meta.get("monai") or {}
        if pipeline == "monai" and not all(k in monai_steps for k in ("preprocessing", "inferer", "postprocessing")):
            raise BundleError(where, "a monai pipeline needs its preprocessing, inferer and postprocessing")
        scoring = meta.get("scoring", SCORINGS[0])
        if scoring not in SCORINGS:
            raise BundleError(where, f"scoring {scoring!r} is not one of {', '.join(SCORINGS)}")
        confirmed_by = meta.get("confirmed_by", "")
        if not isinstance(confirmed_by, str) or (confirmed_by and meta["task"] != "segmentation"):
            raise BundleError(where, f"confirmed_by must be a detector's bundle name, on a segmenter: {confirmed_by!r}")
        given = [thresholds[k] for k in ("score", "probability") if _is_number(thresholds.get(k))]
        threshold = float(given[0]) if given else None
        return cls(
            name=str(meta["name"]),
            version=str(meta["version"]),
            task=meta["task"],
            arch=str(meta["arch"]),
            input=InputSpec.from_json(meta["input"], where),
            applicability=Applicability.from_json(meta.get("applicability"), where),
            description=str(meta.get("description", "")),
            labels=tuple(labels),
            arch_kwargs=dict(arch_kwargs),
            threshold=threshold,
            min_component_ml=float(min_ml),
            sha256=str(meta.get("sha256", "")).lower(),
            pipeline=pipeline,
            nnunet=plan,
            monai=dict(monai_steps),
            scoring=scoring,
            confirmed_by=confirmed_by,
            training=dict(meta.get("training") or {}),
            evaluation=dict(meta.get("evaluation") or {}),
            document=meta,
        )
