"""How big a pixel is, and how sure we are: PixelSpacing, a radiograph's detector spacing, ultrasound.

Why: a length is only worth reading when its unit is true. A CT's PixelSpacing is in the patient;
a radiograph often gives only ImagerPixelSpacing, the size at the detector, which magnifies the
patient by the source-to-detector over source-to-patient distance (EstimatedRadiographicMagnification
Factor corrects it); an ultrasound gives a calibration per region of the screen (the Sequence of
Ultrasound Regions). With none of these the image is shown in pixels and every length says "px".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PIXELS, MILLIMETRES = "px", "mm"
_CM = 3  # PhysicalUnitsX/YDirection: 3 = cm (PS3.3 C.8.5.5.1.15)
_SPATIAL_2D = 1  # RegionSpatialFormat: 1 = 2D (tissue or flow)


@dataclass(frozen=True)
class UsRegion:
    """One calibrated region of an ultrasound screen: pixel bounds (inclusive) and mm per pixel."""

    x0: int
    y0: int
    x1: int
    y1: int
    spacing_yx: tuple[float, float]

    def contains(self, row: float, col: float) -> bool:
        return self.x0 <= col <= self.x1 + 1 and self.y0 <= row <= self.y1 + 1


@dataclass(frozen=True)
class Calibration:
    """The in-plane pixel size (row, column) in mm, or None (pixel units), and where it came from."""

    spacing_yx: tuple[float, float] | None
    # what a reader is told: "PixelSpacing", "ImagerPixelSpacing ÷ magnification 1.1", ...,
    # "uncalibrated (PixelSpacing 0\\0): lengths in px"
    source: str
    warnings: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return MILLIMETRES if self.spacing_yx is not None else PIXELS


def calibrate(
    candidates: list[tuple[str, tuple[float, float] | None]],
    magnification: float | None = None,
    regions: tuple[UsRegion, ...] = (),
) -> Calibration:
    """The first usable of ``candidates`` ((keyword, (row, column) spacing) in order of trust:
    PixelSpacing of the frames, of the image, then ImagerPixelSpacing), else the ultrasound regions.

    A zero or negative spacing is no calibration (pydicom-data's RG1 chests carry 0\\0): skipped with
    a warning. ImagerPixelSpacing is divided by the magnification factor when the header gives one.
    """
    warnings = []
    for keyword, spacing in candidates:
        if spacing is None:
            continue
        if min(spacing) <= 0 or not all(map(math.isfinite, spacing)):
            warnings.append(f"{keyword} {list(spacing)} is not a pixel size; ignored")
            continue
        if keyword == "ImagerPixelSpacing":
            if magnification and magnification > 0 and math.isfinite(magnification) and magnification != 1:
                corrected = (spacing[0] / magnification, spacing[1] / magnification)
                return Calibration(
                    corrected,
                    f"ImagerPixelSpacing ÷ magnification {magnification:g} (EstimatedRadiographicMagnificationFactor)",
                    tuple(warnings),
                )
            return Calibration(spacing, "ImagerPixelSpacing (at the detector, not corrected for magnification)",
                               tuple(warnings))  # fmt: skip
        return Calibration(spacing, keyword, tuple(warnings))
    if regions:
        r = regions[0]
        same = all(other.spacing_yx == r.spacing_yx for other in regions)
        where = "the ultrasound region" if len(regions) == 1 or same else "ultrasound region 1 (others differ)"
        return Calibration(r.spacing_yx, f"{where} (PhysicalDeltaX/Y)", tuple(warnings))
    zero = [f"{k} {chr(92).join(f'{v:g}' for v in sp)}" for k, sp in candidates if sp is not None]
    reason = ", ".join(zero) if zero else "no pixel size in the header"
    return Calibration(None, f"uncalibrated ({reason}): lengths in px", ())


def us_regions(ds) -> tuple[UsRegion, ...]:
    """The 2D regions of a Sequence of Ultrasound Regions calibrated in cm along both axes."""
    out = []
    for item in ds.get("SequenceOfUltrasoundRegions") or ():
        try:
            if int(item.get("RegionSpatialFormat", 0) or 0) != _SPATIAL_2D:
                continue
            if int(item.PhysicalUnitsXDirection) != _CM or int(item.PhysicalUnitsYDirection) != _CM:
                continue
            dx, dy = abs(float(item.PhysicalDeltaX)) * 10.0, abs(float(item.PhysicalDeltaY)) * 10.0
            box = [int(item.get(k)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                              "RegionLocationMaxX1", "RegionLocationMaxY1")]  # fmt: skip
        except (AttributeError, TypeError, ValueError):
            continue  # an incomplete region calibrates nothing
        if dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy):
            out.append(UsRegion(*box, spacing_yx=(dy, dx)))
    return tuple(out)


def length_text(
    p0_rc: tuple[float, float],
    p1_rc: tuple[float, float],
    spacing_yx: tuple[float, float],
    unit: str,
    regions: tuple[UsRegion, ...] = (),
) -> str:
    """A ruler's length between two (row, column) pixel positions, in mm or, uncalibrated, in px.

    On an ultrasound both ends must lie in a calibrated region: elsewhere (a Doppler strip, the
    screen's text) the same pixels mean time or velocity, and the length is given in pixels.
    """
    dr, dc = p1_rc[0] - p0_rc[0], p1_rc[1] - p0_rc[1]
    pixels = math.hypot(dr, dc)
    if unit == PIXELS:
        return f"length {pixels:.1f} px (uncalibrated)"
    if regions:
        region = next((r for r in regions if r.contains(*p0_rc) and r.contains(*p1_rc)), None)
        if region is None:
            return f"length {pixels:.1f} px (outside the calibrated ultrasound region)"
        spacing_yx = region.spacing_yx
    return f"length {math.hypot(dr * spacing_yx[0], dc * spacing_yx[1]):.1f} mm"
