"""Measurements, without Qt: ruler, ellipse and polygon ROIs with statistics, angle, RECIST axes.

A measurement is drawn on one plane of the displayed volume; its points are kept in LPS millimetres,
so it lands where it was drawn however the volume is shown, and travels in the review file. Values
are in modality units (HU on CT), mm and mm².
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from radlens.imaging.geometry import extract_plane
from radlens.imaging.volume import Volume
from radlens.viewer import layout
from radlens.viewer.state import from_plane, plane_pixel_mm, to_plane

KINDS = {"ruler": 2, "ellipse": 2, "polygon": 0, "angle": 3, "recist": 4}  # points each takes (0: 3 or more)


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


def stats_of(image: np.ndarray, inside: np.ndarray, pixel_mm) -> RoiStats:
    vals = np.asarray(image, dtype=np.float64)[inside]
    if vals.size == 0:
        return RoiStats(0, 0, 0, 0, 0, 0)
    area = float(vals.size * pixel_mm[0] * pixel_mm[1])
    return RoiStats(float(vals.mean()), float(vals.std()), float(vals.min()), float(vals.max()), area, int(vals.size))


def ellipse_stats(image: np.ndarray, rect_rc: tuple[float, float, float, float], pixel_mm) -> RoiStats:
    """Statistics of the pixels whose centres fall inside the ellipse inscribed in (row0, col0, row1, col1)."""
    r0, c0, r1, c1 = rect_rc
    rows, cols = image.shape[:2]
    ra, ca = (r1 - r0) / 2, (c1 - c0) / 2
    if ra <= 0 or ca <= 0:
        return RoiStats(0, 0, 0, 0, 0, 0)
    rr, cc = np.ogrid[:rows, :cols]
    inside = ((rr + 0.5 - (r0 + ra)) / ra) ** 2 + ((cc + 0.5 - (c0 + ca)) / ca) ** 2 <= 1.0
    return stats_of(image, inside, pixel_mm)


def polygon_stats(image: np.ndarray, points_rc, pixel_mm) -> RoiStats:
    """Statistics of the pixels whose centres fall inside the polygon (even-odd rule)."""
    pts = np.asarray(points_rc, dtype=np.float64)
    rows, cols = image.shape[:2]
    rr, cc = np.mgrid[:rows, :cols]
    r, c = rr + 0.5, cc + 0.5
    inside = np.zeros((rows, cols), dtype=bool)
    for (ra, ca), (rb, cb) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        if ra == rb:
            continue
        crosses = (r >= min(ra, rb)) & (r < max(ra, rb))
        at = ca + (r - ra) * (cb - ca) / (rb - ra)
        inside ^= crosses & (c < at)
    return stats_of(image, inside, pixel_mm)


def _mm(a, b, pixel_mm) -> float:
    return math.hypot((b[0] - a[0]) * pixel_mm[0], (b[1] - a[1]) * pixel_mm[1])


def angle_deg(a, vertex, b, pixel_mm) -> float:
    u = np.array([(a[0] - vertex[0]) * pixel_mm[0], (a[1] - vertex[1]) * pixel_mm[1]])
    v = np.array([(b[0] - vertex[0]) * pixel_mm[0], (b[1] - vertex[1]) * pixel_mm[1]])
    n = np.linalg.norm(u) * np.linalg.norm(v)
    return float(np.degrees(np.arccos(np.clip(u @ v / n, -1, 1)))) if n else 0.0


@dataclass(frozen=True)
class Measurement:
    """One measurement: its kind, the plane it was drawn on, its points in LPS mm and its values."""

    id: int
    kind: str
    plane: str
    points_lps: tuple[tuple[float, float, float], ...]
    values: dict

    def text(self) -> str:
        v = self.values
        unit = v.get("unit", "mm")  # "px" on an image without a pixel size
        if self.kind == "ruler":
            return v.get("text") or f"length {v['length_mm']:.1f} {unit}"
        if self.kind == "angle":
            return f"angle {v['angle_deg']:.1f}°"
        if self.kind == "recist":
            return f"RECIST long {v['long_mm']:.1f} {unit}, short {v['short_mm']:.1f} {unit}"
        return RoiStats(v["mean"], v["sd"], v["min"], v["max"], v["area_mm2"], v["pixels"]).text(unit)

    @property
    def centre_lps(self) -> np.ndarray:
        return np.asarray(self.points_lps).mean(axis=0)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "plane": self.plane,
            "points_lps": [[round(c, 3) for c in p] for p in self.points_lps],
            "values": {k: round(v, 3) if isinstance(v, float) else v for k, v in self.values.items()},
        }

    @classmethod
    def from_json(cls, d: dict) -> Measurement:
        points = tuple(tuple(float(c) for c in p) for p in d["points_lps"])
        if d["kind"] not in KINDS or d["plane"] not in ("axial", "coronal", "sagittal") or not points:
            raise ValueError(f"not a measurement: {d!r}")
        return cls(int(d["id"]), str(d["kind"]), str(d["plane"]), points, dict(d["values"]))


def measure(mid: int, kind: str, plane: str, index: int, points_rc, volume: Volume, flip_z: bool) -> Measurement:
    """A measurement from points drawn on slice ``index`` of ``plane`` (displayed row and column, in pixels
    with (0, 0) the top-left corner of the top-left pixel)."""
    pixel_mm = plane_pixel_mm(volume, plane)
    pts = [(float(r), float(c)) for r, c in points_rc]
    unit = volume.presentation.pixel_unit
    values: dict = {}
    if kind == "ruler":
        values["length_mm"] = _mm(pts[0], pts[1], pixel_mm)
        if layout.one_view(volume):  # a radiograph's or ultrasound's own calibration (or px) says it
            values["text"] = layout.measure_text(volume, pts[0], pts[1])
    elif kind == "angle":
        values["angle_deg"] = angle_deg(pts[0], pts[1], pts[2], pixel_mm)
    elif kind == "recist":
        axes = sorted((_mm(pts[0], pts[1], pixel_mm), _mm(pts[2], pts[3], pixel_mm)), reverse=True)
        values["long_mm"], values["short_mm"] = axes
    else:
        image = np.asarray(extract_plane(volume, plane, index).image)
        if kind == "ellipse":
            (r0, c0), (r1, c1) = pts
            stats = ellipse_stats(image, (min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)), pixel_mm)
        else:
            stats = polygon_stats(image, pts, pixel_mm)
        values = {"mean": stats.mean, "sd": stats.sd, "min": stats.minimum, "max": stats.maximum,
                  "area_mm2": stats.area_mm2, "pixels": stats.pixels}  # fmt: skip
    values["unit"] = unit
    lps = tuple(tuple(float(v) for v in volume.index_to_lps(_to_index(plane, index, p, volume, flip_z))) for p in pts)
    return Measurement(mid, kind, plane, lps, values)


def _to_index(plane: str, index: int, point_rc, volume: Volume, flip_z: bool):
    """Displayed (row, col) (pixel corners) → voxel index (z, y, x) (voxel centres)."""
    return from_plane(plane, index, point_rc[0] - 0.5, point_rc[1] - 0.5, volume.shape_zyx, flip_z)


def on_plane(m: Measurement, volume: Volume, flip_z: bool) -> tuple[int, list[tuple[float, float]]]:
    """(slice index, displayed points) of a measurement on its plane."""
    idx = volume.lps_to_index(np.asarray(m.points_lps))
    out = [to_plane(m.plane, zyx, volume.shape_zyx, flip_z) for zyx in idx]
    return out[0][0], [(r + 0.5, c + 0.5) for _, r, c in out]


COLUMNS = ("id", "kind", "plane", "unit", "text", "length_mm", "angle_deg", "long_mm", "short_mm", "mean", "sd",
           "min", "max", "area_mm2", "pixels", "points_lps")  # fmt: skip


def to_csv(measurements: list[Measurement]) -> str:
    """One row per measurement; the values a kind does not have are empty."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS)
    w.writeheader()
    for m in measurements:
        d = m.to_json()
        w.writerow({"id": m.id, "kind": m.kind, "plane": m.plane, **d["values"],
                    "points_lps": " ".join(",".join(f"{c:g}" for c in p) for p in d["points_lps"])})  # fmt: skip
    return out.getvalue()
