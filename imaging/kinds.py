"""What a series is, decided once at discovery: a volume, a projection, a cine or a 4D set.

Why: half of a radiology department is not CT and MR. A radiograph is one view of the patient, not
a slice of a volume; an angiography run or an ultrasound clip is frames over time, not positions
along a normal. The viewer picks its layout from the kind (three planes for a volume, one view for
the rest), the AI panel refuses volume models on the others, and ``radlens info --json`` shows it.

- ``volume``: cross-sectional slices placed along a normal (CT, MR, PT, NM, RT dose, a 3D volume
  file), also a single CT slice (one cross-section, not a projection).
- ``projection``: one image of the whole patient: CR, DX, MG, IO, PX, a single-frame XA, RF or US,
  and any single image without a slice orientation (a secondary capture).
- ``cine``: frames over time: multi-frame US, XA, RF, endoscopy and photos, or any multi-frame
  image whose frames have no positions but a frame time.
- ``4d``: several 3D stacks at the same positions (time points, b-values, echoes), split by that
  parameter (:attr:`radlens.imaging.series.SeriesInfo.parts`).
"""

from __future__ import annotations

VOLUME, PROJECTION, CINE, SET_4D = "volume", "projection", "cine", "4d"
KINDS = (VOLUME, PROJECTION, CINE, SET_4D)

# Modalities whose images are projections (one frame) or cines (several): radiography, mammography,
# dental, angiography and fluoroscopy, ultrasound, endoscopy, photography, microscopy.
PROJECTION_MODALITIES = frozenset(
    {"CR", "DX", "MG", "IO", "PX", "RG", "DF", "XA", "RF", "US", "ES", "XC", "GM", "SM", "OP", "DG", "BDUS"}
)
# Modalities whose frames are cross-sections even when their positions are missing.
CROSS_SECTIONAL = frozenset({"CT", "MR", "PT", "NM", "RTDOSE", "SEG", "OPT", "IVOCT", "RTIMAGE"})


def classify(
    modality: str,
    depth: int,
    *,
    has_orientation: bool,
    has_positions: bool,
    multiframe: bool = False,
    timed: bool = False,
) -> str:
    """The kind of one stack of ``depth`` frames or slices (a 4D set is decided where stacks are split).

    ``has_orientation``: an ImageOrientationPatient (not one made up from PatientOrientation);
    ``has_positions``: every frame or slice has a position; ``timed``: the header gives a frame time.
    """
    modality = (modality or "").upper()
    if depth <= 1:
        if modality in PROJECTION_MODALITIES or (not has_orientation and modality not in ("CT", "MR", "PT")):
            return PROJECTION  # a planar NM image or a secondary capture without a slice orientation
        return VOLUME
    if modality in PROJECTION_MODALITIES:
        return CINE if multiframe or not has_positions else VOLUME
    if not has_positions and (timed or (multiframe and modality not in CROSS_SECTIONAL)):
        return CINE
    return VOLUME


def volume_file_kind(depth: int) -> str:
    """A NIfTI/NRRD/MetaImage file names no modality: one slice is a projection, more a volume."""
    return PROJECTION if depth <= 1 else VOLUME


def one_view(kind: str) -> bool:
    """Whether a series of this kind is read in one view (no coronal or sagittal planes)."""
    return kind in (PROJECTION, CINE)


# Notes about slice geometry that mean nothing for frames over time or one projected image.
_SLICE_NOTES = ("no ImagePositionPatient", "no ImageOrientationPatient")


def without_slice_notes(kind: str, warnings) -> list[str]:
    """``warnings`` less those about slice positions and orientation, for a kind read in one view."""
    if not one_view(kind):
        return list(warnings)
    return [w for w in warnings if not w.startswith(_SLICE_NOTES)]
