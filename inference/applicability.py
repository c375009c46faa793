"""Whether a bundle fits a series, checked before it runs: run, run with a warning, or refuse.

Why: a model trained on one kind of scan gives confident nonsense on another (a T1-trained lesion
segmenter outlines the ventricles of a T2 series). The bundle's ``input.modality`` and its
``applicability`` block (:class:`radlens.inference.metadata.Applicability`) say what it is for;
this module compares them with what the series says about itself. A wrong modality refuses; a
slice thickness outside the trained range, or an MR contrast other than the one it learned, warns
(or refuses, where the bundle says so: ``applicability.other_contrast``).
An MR contrast is read from the series description; a file without one (NIfTI, NRRD) is judged by
whether its fluid is brighter or darker than the brain (:func:`radlens.imaging.modality.fluid_contrast`).
The lungs a chest model needs are checked by the engine, which finds them anyway to gate findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from radlens.imaging.kinds import CINE, PROJECTION
from radlens.imaging.modality import BRIGHT, DARK, fluid_contrast
from radlens.imaging.volume import Volume
from radlens.inference.metadata import BundleMetadata

# Series-description words of the common MR contrasts (the scanner's own names for its sequences).
SEQUENCE_WORDS = (
    ("FLAIR-like", r"flair|dark[ _-]?fluid|\btirm\b"),
    ("T1-like", r"t1|mprage|spgr|bravo|tfe|vibe|\bmp[ _-]?rage\b"),
    ("T2-like", r"t2|\btse\b|\bfse\b|haste|space"),
    ("diffusion", r"dwi|diffusion|\badc\b|\btrace\b"),
)
# Which way fluid departs from the brain on each contrast a bundle may declare.
FLUID_OF = {"T1-like": DARK, "FLAIR-like": DARK, "T2-like": BRIGHT}
LOOKS = {BRIGHT: ("T2-like", "brighter"), DARK: ("T1- or FLAIR-like", "darker")}
REFUSED = "refused"
# A 3D model needs a volume: a scout, a radiograph or one slice of a CT is not one.
MIN_SLICES = 2


@dataclass(frozen=True)
class Verdict:
    """``action`` is "run", "warn" or "refuse"; ``reasons`` the one-line messages a reader is shown."""

    action: str
    reasons: tuple[str, ...] = ()

    @property
    def runs(self) -> bool:
        return self.action != "refuse"


def sequence_of(description: str) -> str | None:
    """The MR contrast a series description names, or None when it names none."""
    text = description.lower()
    for name, pattern in SEQUENCE_WORDS:
        if re.search(pattern, text):
            return name
    return None


def not_a_volume(volume: Volume) -> str | None:
    """Why no volume model (every RadLens model reads CT or MR volumes) fits ``volume``, or None."""
    if volume.kind == PROJECTION:
        return "this series is a projection (one image of the patient, not slices)"
    if volume.kind == CINE:
        return "this series is a cine (frames over time, not slices)"
    if volume.shape_zyx[0] < MIN_SLICES:
        return "this series is a single image"
    return None


def check(volume: Volume, metadata: BundleMetadata) -> Verdict:
    """How ``metadata``'s bundle may run on ``volume``; the reasons name the model and what differs."""
    want = metadata.input.modality.upper()
    have = (volume.modality or "OT").upper()
    name = metadata.name
    if have not in ("OT", "") and have != want:
        return Verdict("refuse", (f"{REFUSED}: {name} is made for {want}; this series is {have}",))
    if volume.is_rgb:
        return Verdict("refuse", (f"{REFUSED}: {name} reads grey-scale {want}; this series is a colour image",))
    if (why := not_a_volume(volume)) is not None:
        return Verdict("refuse", (f"{REFUSED}: {name} reads {want} volumes; {why}",))
    warnings = []
    if have in ("OT", ""):
        warnings.append(f"the series names no modality: {name} ran on it as {want}")
    app = metadata.applicability
    thickness = float(volume.spacing_zyx[0])
    if app.slice_thickness_mm is not None:
        lo, hi = app.slice_thickness_mm
        if not lo - 1e-6 <= thickness <= hi + 1e-6:
            warnings.append(
                f"{name} was trained on slices of {lo:g}-{hi:g} mm; this series' slices are {thickness:.1f} mm apart"
            )
    if app.sequence and want == "MR" and (why := _other_contrast(volume, app.sequence)) is not None:
        reason, known = why
        learned = app.sequence_named
        if known and app.other_contrast == "refuse":
            hint = "" if volume.contrast else " (if it is not, say its contrast in 'Series is')"
            return Verdict("refuse", (f"{REFUSED}: {name} reads {learned} contrast only; {reason}{hint}",))
        warnings.append(f"{name} was trained on {learned} contrast; {reason}")
    return Verdict("warn" if warnings else "run", tuple(warnings))


def _other_contrast(volume: Volume, sequences: tuple[str, ...]) -> tuple[str, bool] | None:
    """Why ``volume`` may not be one of ``sequences`` (the reader or its description names another, or
    its fluid says so), and whether it is known to be another rather than unnamed; None when it is one."""
    if volume.contrast:
        return None if volume.contrast in sequences else (f"the reader says this series is {volume.contrast}", True)
    if (seen := sequence_of(volume.description)) is not None:
        why = f"this series looks {seen} (series description {volume.description!r})"
        return None if seen in sequences else (why, True)
    fluids = {FLUID_OF.get(s) for s in sequences}
    if {BRIGHT, DARK} <= fluids:  # fluid either way is one of its contrasts
        return None
    fluid = fluid_contrast(volume.array, volume.spacing_zyx)
    if fluid is None or None in fluids:
        return "this series does not say its contrast, check the result against the image", False
    if fluid in fluids:
        return None
    looks, side = LOOKS[fluid]
    return f"this series looks {looks}: its fluid is {side} than the brain around it", True
