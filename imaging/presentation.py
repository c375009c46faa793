"""How a series wants to be shown, beyond its voxels: its kind, units, laterality, frame timing and shutters.

Why: a radiograph, an angiography run and an ultrasound clip each carry display instructions in the
header that a reader relies on. The frame time says how fast a cine was recorded; a display shutter
blanks the collimated edges of a radiograph so a bright border does not dazzle; the laterality
marker says which side is shown; the calibration says whether a length is in mm or only in pixels.
They are read once, at load (:func:`presentation_of`), and travel on the ``Volume`` to the viewer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radlens.imaging.calibration import MILLIMETRES, PIXELS, UsRegion, us_regions
from radlens.imaging.kinds import VOLUME

DEFAULT_FPS = 15.0  # a cine whose header gives no frame time is played at this rate, with a note


@dataclass(frozen=True, eq=False)
class Shutter:
    """A DICOM display shutter (PS3.3 C.7.6.11): what lies outside it is painted ``grey`` (0-255).

    Shapes combine as an intersection: a pixel shows only when it is inside every one. Positions
    are the header's (1-based rows and columns); ``bitmap`` is an overlay plane (True = shuttered).
    """

    shapes: tuple[str, ...]
    rect: tuple[int, int, int, int] | None = None  # left, right, upper, lower edge (columns, rows)
    circle: tuple[float, float, float] | None = None  # centre row, centre column, radius
    polygon: tuple[tuple[float, float], ...] = ()  # (row, column) vertices
    bitmap: np.ndarray | None = None
    grey: int = 0

    def visible(self, rows: int, cols: int) -> np.ndarray:
        """(rows, cols) bool: True where the image shows, False where the shutter covers it."""
        r = np.arange(1, rows + 1)[:, None]
        c = np.arange(1, cols + 1)[None, :]
        keep = np.ones((rows, cols), dtype=bool)
        if self.rect is not None:
            left, right, upper, lower = self.rect
            keep &= (c >= left) & (c <= right) & (r >= upper) & (r <= lower)
        if self.circle is not None:
            cr, cc, radius = self.circle
            keep &= (r - cr) ** 2 + (c - cc) ** 2 <= radius**2
        if len(self.polygon) >= 3:
            keep &= _inside_polygon(self.polygon, rows, cols)
        if self.bitmap is not None and self.bitmap.shape == (rows, cols):
            keep &= ~self.bitmap.astype(bool)
        return keep


@dataclass(frozen=True, eq=False)
class Presentation:
    kind: str = VOLUME
    pixel_unit: str = MILLIMETRES  # "px" when nothing calibrates the pixels
    calibration: str = ""  # where the pixel size came from (imaging.calibration)
    us_regions: tuple[UsRegion, ...] = ()
    laterality: str = ""  # R, L, B (both), U (unpaired), as the header says
    view: str = ""  # ViewPosition: PA, AP, LL, CC, MLO, ...
    frame_times_ms: tuple[float, ...] = ()  # how long each frame shows (one value: all frames)
    frame_time_source: str = ""  # the header field the timing came from, or why it is a default
    shutter: Shutter | None = None
    oriented: bool = True  # the header gives an orientation (a projection may give none: no letters then)

    def frame_interval_ms(self, frame: int) -> float:
        """How long frame ``frame`` stays on screen when played at the recorded rate."""
        if not self.frame_times_ms:
            return 1000.0 / DEFAULT_FPS
        return self.frame_times_ms[min(frame, len(self.frame_times_ms) - 1)]


def frame_timing(ds, frames: int) -> tuple[tuple[float, ...], str]:
    """Per-frame display times (ms) and their source: the field FrameIncrementPointer names first,
    then FrameTime, FrameTimeVector, CineRate and RecommendedDisplayFrameRate."""
    pointers = {str(getattr(p, "keyword", "") or "") for p in _as_list(ds.get("FrameIncrementPointer"))}
    order = ["FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate"]
    order.sort(key=lambda k: k not in pointers)
    for keyword in order:
        value = ds.get(keyword)
        if value in (None, ""):
            continue
        try:
            if keyword == "FrameTime":
                times = (float(value),)
            elif keyword == "FrameTimeVector":
                vector = [float(v) for v in _as_list(value)]
                # Entry i is the time from frame i-1 to frame i (the first is 0): frame i shows until i+1.
                times = tuple(vector[1:] + vector[-1:]) if len(vector) > 1 else ()
            else:
                times = (1000.0 / float(value),)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if times and all(math.isfinite(t) and t > 0 for t in times):
            return times, keyword
    return (), f"no frame time in the header: {DEFAULT_FPS:g} frames/s assumed"


def shutter_of(ds) -> Shutter | None:
    """The display shutter of a header (pydicom Dataset), or None; a malformed one is ignored."""
    shape = ds.get("ShutterShape")
    if not shape:
        return None
    shapes = tuple(str(s).strip().upper() for s in _as_list(shape))
    rect = circle = bitmap = None
    polygon: tuple = ()
    try:
        if "RECTANGULAR" in shapes:
            edges = ("LeftVertical", "RightVertical", "UpperHorizontal", "LowerHorizontal")
            rect = tuple(int(ds.get(f"Shutter{e}Edge")) for e in edges)
        if "CIRCULAR" in shapes:
            centre = [float(v) for v in ds.CenterOfCircularShutter]
            circle = (centre[0], centre[1], float(ds.RadiusOfCircularShutter))
        if "POLYGONAL" in shapes:
            vertices = [float(v) for v in ds.VerticesOfThePolygonalShutter]
            polygon = tuple(zip(vertices[0::2], vertices[1::2], strict=True))
        if "BITMAP" in shapes:
            group = int(ds.get("ShutterOverlayGroup", 0x6000) or 0x6000)
            bitmap = np.asarray(ds.overlay_array(group)).astype(bool)
    except Exception:  # a shutter the header describes badly shows the whole image
        return None
    value = ds.get("ShutterPresentationValue")
    grey = round(int(value) * 255 / 0xFFFF) if value not in (None, "") else 0
    return Shutter(shapes, rect, circle, polygon, bitmap, grey)


def laterality_of(ds) -> str:
    """ImageLaterality, else Laterality, else the enhanced FrameAnatomySequence's FrameLaterality."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value:
            return value
    shared = ds.get("SharedFunctionalGroupsSequence")
    anatomy = shared[0].get("FrameAnatomySequence") if shared else None
    return str(anatomy[0].get("FrameLaterality", "") or "").strip().upper() if anatomy else ""


def _as_list(value) -> list:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]


def _inside_polygon(vertices, rows: int, cols: int) -> np.ndarray:
    """Even-odd rule over pixel centres (1-based), vectorised over the image."""
    r = np.arange(1, rows + 1, dtype=np.float64)[:, None]
    c = np.arange(1, cols + 1, dtype=np.float64)[None, :]
    inside = np.zeros((rows, cols), dtype=bool)
    n = len(vertices)
    for i in range(n):
        (r0, c0), (r1, c1) = vertices[i], vertices[(i - 1) % n]
        if r0 == r1:
            continue
        crosses = (r0 > r) != (r1 > r)
        at = (c1 - c0) * (r - r0) / (r1 - r0) + c0
        inside ^= crosses & (c < at)
    return inside


def presentation_of(ds, kind: str, frames: int, geometry) -> Presentation:
    """Everything above from one header (the series' middle file, or its multi-frame file) and its
    :class:`radlens.imaging.dicom_headers.FrameGeometry`."""
    times, source = frame_timing(ds, frames) if frames > 1 else ((), "")
    return Presentation(
        kind=kind,
        pixel_unit=MILLIMETRES if geometry.pixel_spacing is not None else PIXELS,
        calibration=geometry.calibration,
        us_regions=us_regions(ds),
        laterality=laterality_of(ds),
        view=str(ds.get("ViewPosition", "") or "").strip().upper(),
        frame_times_ms=times,
        frame_time_source=source,
        shutter=shutter_of(ds),
        oriented=geometry.orientation is not None,
    )
