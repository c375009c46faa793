"""How each kind of series is read on screen, without Qt: the layout, the corner captions, the
orientation letters, the units of a length and the display shutter.

Why: a volume is read in three planes with slice numbers and positions along its normal; a
radiograph or a cine is one view of the patient, so it gets no "axial" label, no coronal or sagittal
plane cutting through time, and no orientation letters the file did not give. The slice views and
the exporter draw what these functions say (imaging.kinds decides the kind at discovery).
"""

from __future__ import annotations

import numpy as np

from radlens.imaging import kinds
from radlens.imaging.calibration import PIXELS, length_text
from radlens.imaging.volume import Volume
from radlens.viewer.state import orientation_letters


def one_view(volume: Volume) -> bool:
    """Read in one view: a projection, a cine, or any single image."""
    return kinds.one_view(volume.kind) or volume.shape_zyx[0] == 1


def series_lines(volume: Volume, plane: str) -> list[str]:
    """Top-right lines under modality and description: the plane of a volume, a projection's
    laterality and view ("R AP"), and the units when the pixels are not calibrated."""
    p = volume.presentation
    lines = [] if one_view(volume) else [plane]
    side = " ".join(t for t in (p.laterality, p.view) if t)
    if side:
        lines.append(side)
    if p.pixel_unit == PIXELS:
        lines.append(p.calibration or "uncalibrated: lengths in px")
    return lines


def slice_caption(volume: Volume, plane: str, index: int, count: int, position_mm: float) -> str:
    """Bottom-left: "axial 12/40  -3.0 mm" for a volume, "frame 5/96  0.13 s" for a cine, nothing
    for a single image."""
    if volume.kind == kinds.CINE:
        p = volume.presentation
        elapsed = sum(p.frame_interval_ms(i) for i in range(index)) / 1000.0
        return f"frame {index + 1}/{count}  {elapsed:.2f} s"
    if one_view(volume):
        return "" if count == 1 else f"image {index + 1}/{count}"
    return f"{plane} {index + 1}/{count}  {position_mm:.1f} mm"


def letters(volume: Volume, plane: str) -> dict[str, str]:
    """Orientation letters at the edges, or none when the file says nothing of the orientation
    (an ultrasound or angiography frame without PatientOrientation)."""
    if one_view(volume) and not volume.presentation.oriented:
        return {"left": "", "right": "", "top": "", "bottom": ""}
    return orientation_letters(volume, plane)


def measure_text(volume: Volume, p0_rc, p1_rc) -> str:
    """A ruler from (row, column) to (row, column) of the axial plane, in mm or, uncalibrated, px."""
    p = volume.presentation
    return length_text(p0_rc, p1_rc, volume.spacing_zyx[1:], p.pixel_unit, p.us_regions)


def shutter_rgba(volume: Volume) -> np.ndarray | None:
    """The display shutter as an RGBA image over the image plane: opaque grey where it covers the
    image, transparent elsewhere; None without a shutter."""
    shutter = volume.presentation.shutter
    if shutter is None:
        return None
    rows, cols = volume.shape_zyx[1:]
    covered = ~shutter.visible(rows, cols)
    rgba = np.zeros((rows, cols, 4), dtype=np.uint8)
    rgba[covered] = (shutter.grey, shutter.grey, shutter.grey, 255)
    return rgba
