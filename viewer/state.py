"""What the viewer shows, without Qt: slice per plane, window, layers, findings and their review.

The widgets read this state and draw it; tests drive it directly (like napari's layer model and
ndv's controller). Plane geometry follows ``imaging.geometry.extract_plane``: rows top→bottom,
coronal/sagittal rows along z, reversed when z points to the head so the head is at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens.imaging.geometry import z_rows_reversed
from radlens.imaging.orient import Orientation
from radlens.imaging.volume import Volume, Window
from radlens.inference.findings import Findings
from radlens.viewer.corrections import Corrections
from radlens.viewer.editing import History
from radlens.viewer.layers import FindingKey, FindingRow, Layer, LayerKey, build_layers, finding_rows
from radlens.viewer.review import Review

AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
# LPS letter for the positive direction of each patient axis, and for the negative one.
_POS, _NEG = "LPS", "RAI"


# -- plane geometry --------------------------------------------------------------------------------
def to_plane(plane: str, zyx, shape_zyx, flip_z: bool) -> tuple[int, float, float]:
    """Voxel (z, y, x) → (slice index, displayed row, displayed column) in ``plane``."""
    z, y, x = zyx
    nz = shape_zyx[0]
    zr = (nz - 1 - z) if flip_z else z
    if plane == "axial":
        return round(z), y, x
    if plane == "coronal":
        return round(y), zr, x
    return round(x), zr, y


def from_plane(plane: str, index: int, row: float, col: float, shape_zyx, flip_z: bool) -> tuple[float, float, float]:
    """(slice index, displayed row, displayed column) in ``plane`` → voxel (z, y, x)."""
    nz = shape_zyx[0]
    if plane == "axial":
        return float(index), row, col
    z = (nz - 1 - row) if flip_z else row
    if plane == "coronal":
        return z, float(index), col
    return z, col, float(index)


def box_on_plane(box_zyx, plane: str, index: int, shape_zyx, flip_z: bool) -> tuple[int, int, int, int] | None:
    """A half-open 3D box's rectangle (row0, col0, row1, col1) on one slice, or None if it misses it."""
    z0, y0, x0, z1, y1, x1 = box_zyx
    nz = shape_zyx[0]
    r0, r1 = (nz - z1, nz - z0) if flip_z else (z0, z1)
    if plane == "axial":
        return (y0, x0, y1, x1) if z0 <= index < z1 else None
    if plane == "coronal":
        return (r0, x0, r1, x1) if y0 <= index < y1 else None
    return (r0, y0, r1, y1) if x0 <= index < x1 else None


def box_from_plane(rect_rc, plane: str, depth: tuple[int, int], shape_zyx, flip_z: bool) -> tuple[int, ...]:
    """The inverse of ``box_on_plane``: a rectangle (row0, col0, row1, col1) on a plane, and the half-open
    range ``depth`` of slices it spans, as a box_zyx."""
    r0, c0, r1, c1 = (int(v) for v in rect_rc)
    nz = shape_zyx[0]
    z0, z1 = (nz - r1, nz - r0) if flip_z else (r0, r1)
    d0, d1 = depth
    if plane == "axial":
        return (d0, r0, c0, d1, r1, c1)
    if plane == "coronal":
        return (z0, d0, c0, z1, d1, c1)
    return (z0, c0, d0, z1, c1, d1)


def plane_pixel_mm(volume: Volume, plane: str) -> tuple[float, float]:
    """(row, column) pixel size in mm of a plane: what gives the view its true aspect."""
    sz, sy, sx = volume.spacing_zyx
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def orientation_letters(volume: Volume, plane: str) -> dict[str, str]:
    """Patient directions at the four edges of a displayed plane: {"left", "right", "top", "bottom"}."""
    d = volume.direction  # columns: LPS unit vectors of the x, y, z index axes
    flip = -1.0 if z_rows_reversed(volume) else 1.0
    col_vec, row_vec = {
        "axial": (d[:, 0], d[:, 1]),
        "coronal": (d[:, 0], flip * d[:, 2]),
        "sagittal": (d[:, 1], flip * d[:, 2]),
    }[plane]

    def letter(v: np.ndarray) -> str:
        i = int(np.argmax(np.abs(v)))
        return _POS[i] if v[i] > 0 else _NEG[i]

    return {"right": letter(col_vec), "left": letter(-col_vec), "bottom": letter(row_vec), "top": letter(-row_vec)}


# -- the view state ----------------------------------------------------------------------------------
@dataclass
class ViewState:
    """Everything a redraw needs apart from the pixels: the crosshair, window, layout and layers."""

    shape_zyx: tuple[int, int, int]
    window: Window
    flip_z: bool = True
    invert: bool = False
    layout: str = "1x3"  # or "single"
    active_plane: str = "axial"
    overlays_on: bool = True
    cursor_zyx: list[int] = field(default_factory=list)
    findings: Findings | None = None
    layers: dict[LayerKey, Layer] = field(default_factory=dict)
    rows: list[FindingRow] = field(default_factory=list)
    review: Review = field(default_factory=Review)
    selected: FindingKey | None = None
    slab: str = ""  # "" (one slice) or a thick slab: "mip" | "minip" | "mean" (imaging.geometry.SLAB_MODES)
    slab_mm: float = 10.0
    measurements: list = field(default_factory=list)  # viewer.measure.Measurement, in the order drawn
    selected_measurement: int | None = None

    def __post_init__(self) -> None:
        if not self.cursor_zyx:
            self.cursor_zyx = [n // 2 for n in self.shape_zyx]

    @classmethod
    def for_volume(cls, volume: Volume, window: Window) -> ViewState:
        """The state for showing ``volume`` as it is (the controller shows a study turned to the patient's
        axes: Study.open)."""
        return cls(volume.shape_zyx, window, flip_z=z_rows_reversed(volume), invert=volume.invert)

    # slices
    def count(self, plane: str) -> int:
        return self.shape_zyx[AXIS[plane]]

    def slice_index(self, plane: str) -> int:
        return self.cursor_zyx[AXIS[plane]]

    def set_slice(self, plane: str, index: int) -> int:
        i = int(min(max(index, 0), self.count(plane) - 1))
        self.cursor_zyx[AXIS[plane]] = i
        return i

    def scroll(self, plane: str, delta: int) -> int:
        return self.set_slice(plane, self.slice_index(plane) + delta)

    def set_cursor(self, zyx) -> None:
        self.cursor_zyx = [int(min(max(round(v), 0), n - 1)) for v, n in zip(zyx, self.shape_zyx, strict=True)]

    def slab_half(self, plane: str, spacing_zyx) -> int:
        """Slices on each side of the current one that the slab takes in (0: no slab)."""
        if not self.slab:
            return 0
        return max(0, round((self.slab_mm / spacing_zyx[AXIS[plane]] - 1) / 2))

    # window
    def drag_window(self, dx: float, dy: float) -> Window:
        """Left-drag: right widens, down raises the level; the step scales with the current width."""
        step = max(self.window.width, 1.0) / 256.0
        self.window = Window(max(1.0, self.window.width + dx * step), self.window.level + dy * step)
        return self.window

    # layers
    def set_findings(self, findings: Findings | None, volume: Volume) -> None:
        """New results: layers the user already set keep their visibility, opacity and threshold."""
        old, self.findings = self.layers, findings
        if findings is None:
            self.layers, self.rows = {}, []
            return
        self.layers = {}
        for layer in build_layers(findings, volume):
            if (before := old.get(layer.key)) is not None:
                layer.visible, layer.opacity, layer.threshold = before.visible, before.opacity, before.threshold
            self.layers[layer.key] = layer
        self.rows = finding_rows(findings, volume)
        if self.selected is not None and self.row(self.selected) is None:
            self.selected = None

    def shown(self, key: LayerKey) -> bool:
        layer = self.layers.get(key)
        return bool(self.overlays_on and layer is not None and layer.visible)

    def threshold(self, key: LayerKey) -> float:
        layer = self.layers.get(key)
        return layer.threshold if layer is not None else 0.0

    def visible_rows(self) -> list[FindingRow]:
        """Findings a reader is shown (the panel lists them, N/P walk through them): a lesion that a
        segmenter outlined, or that a detector scored at or above its layer's threshold."""
        return [r for r in self.rows if self.row_shown(r)]

    def row_shown(self, row: FindingRow) -> bool:
        if row.lesion is None or row.masked:
            return True
        return any(score >= self.threshold(layer) for layer, _, score in row.boxes)

    def row(self, key: FindingKey | None) -> FindingRow | None:
        return next((r for r in self.rows if r.key == key), None)

    def selected_boxes(self) -> set[tuple[LayerKey, int]]:
        """The detections of the selected lesion (drawn thicker)."""
        row = self.row(self.selected)
        return {(layer, fid) for layer, fid, _ in row.boxes} if row is not None else set()

    def decision(self, row: FindingRow) -> str:
        return self.review.decision_for(row)

    def select(self, key: FindingKey) -> FindingRow | None:
        row = self.row(key)
        if row is not None:
            self.selected = key
            self.set_cursor(row.center_zyx)
        return row

    def step_finding(self, delta: int) -> FindingRow | None:
        rows = self.visible_rows()
        if not rows:
            return None
        keys = [r.key for r in rows]
        i = keys.index(self.selected) + delta if self.selected in keys else (0 if delta > 0 else len(rows) - 1)
        return self.select(keys[i % len(keys)])


@dataclass
class Study:
    """One loaded series: the volume as displayed (turned to the patient's axes, imaging.orient) and as
    stored (``source``: models run on it; findings, edits and training cases are on its grid), its view
    state (which holds the findings shown), the AI's findings as the models gave them, and the reader's
    corrections with their undo history."""

    volume: Volume
    state: ViewState
    source: Volume | None = None
    orientation: Orientation | None = None
    ai: Findings | None = None
    corrections: Corrections | None = None
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = self.volume
        if self.orientation is None:
            self.orientation = Orientation.identity(self.volume.shape_zyx)

    @classmethod
    def open(cls, source: Volume, state_for) -> Study:
        """The study of a stored volume; ``state_for(display volume)`` makes its view state."""
        orientation = Orientation.of(source)
        display = orientation.volume(source)
        return cls(display, state_for(display), source, orientation)

    @property
    def key(self) -> str:
        return self.volume.series_uid or self.volume.source

    @property
    def findings(self) -> Findings | None:
        return self.state.findings
