"""ROI statistics in modality units (HU for CT) and mm², for the ellipse tool."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoiStats:
    mean: float
    sd: float
    minimum: float
    maximum: float
    area_mm2: float
    pixels: int

    def text(self, unit: str = "mm") -> str:
        """One line; ``unit`` "px" for an uncalibrated image, whose pixels count as 1×1."""
        if not self.pixels:
            return "ROI: empty"
        return (
            f"ROI mean {self.mean:.1f} SD {self.sd:.1f} min {self.minimum:.0f} max {self.maximum:.0f} "
            f"area {self.area_mm2:.1f} {unit}²"
        )


def ellipse_stats(image: np.ndarray, rect_rc: tuple[float, float, float, float], pixel_mm) -> RoiStats:
    """Statistics of the pixels whose centres fall inside the ellipse inscribed in (row0, col0, row1, col1)."""
    r0, c0, r1, c1 = rect_rc
    rows, cols = image.shape[:2]
    ra, ca = (r1 - r0) / 2, (c1 - c0) / 2
    if ra <= 0 or ca <= 0:
        return RoiStats(0, 0, 0, 0, 0, 0)
    rr, cc = np.ogrid[:rows, :cols]
    inside = ((rr + 0.5 - (r0 + ra)) / ra) ** 2 + ((cc + 0.5 - (c0 + ca)) / ca) ** 2 <= 1.0
    vals = np.asarray(image, dtype=np.float64)[inside]
    if vals.size == 0:
        return RoiStats(0, 0, 0, 0, 0, 0)
    return RoiStats(
        float(vals.mean()),
        float(vals.std()),
        float(vals.min()),
        float(vals.max()),
        float(vals.size * pixel_mm[0] * pixel_mm[1]),
        int(vals.size),
    )
