"""What a left click or drag does on a SliceView with each tool, and the measurements drawn on it.

``ToolInput`` turns the mouse into the view's signals: a measurement's points (a ruler or ellipse
dragged, a polygon, an angle or RECIST axes clicked point by point, shown as they are drawn), brush
strokes, boxes and seeds. ``MeasureOverlay`` draws the study's finished measurements that lie on the
view's slice. Coordinates handed out are displayed (row, column) in pixels, (0, 0) the top-left corner.
"""

from __future__ import annotations

import math

from radlens.viewer.measure import KINDS
from radlens.viewer.qt import QtCore, QtGui, QtWidgets, pg

GREEN = QtGui.QColor(80, 255, 120)
CLOSE_PX = 8  # screen pixels: a click this near a polygon's first point closes it
DRAG_TOOLS = {"ruler": "ruler", "roi": "ellipse"}
CLICK_TOOLS = {"polygon": "polygon", "angle": "angle", "recist": "recist"}


def _pen(color: QtGui.QColor, width: float = 2, dashed: bool = False) -> QtGui.QPen:
    pen = QtGui.QPen(color, width, QtCore.Qt.PenStyle.DashLine if dashed else QtCore.Qt.PenStyle.SolidLine)
    pen.setCosmetic(True)
    return pen


def shape_path(kind: str, points_mm: list[QtCore.QPointF]) -> QtGui.QPainterPath:
    """The outline of a measurement through its points (scene millimetres)."""
    path = QtGui.QPainterPath()
    if not points_mm:
        return path
    if kind == "ellipse" and len(points_mm) == 2:
        path.addEllipse(QtCore.QRectF(points_mm[0], points_mm[1]).normalized())
        return path
    if kind == "recist" and len(points_mm) > 2:
        path.moveTo(points_mm[0])
        path.lineTo(points_mm[1])
        path.moveTo(points_mm[2])
        for p in points_mm[3:]:
            path.lineTo(p)
        return path
    path.moveTo(points_mm[0])
    for p in points_mm[1:]:
        path.lineTo(p)
    if kind == "polygon" and len(points_mm) > 2:
        path.closeSubpath()
    return path


class ToolInput:
    def __init__(self, view):
        self.view = view
        self.points: list[tuple[float, float]] = []  # a click tool's points so far
        self.item: QtWidgets.QGraphicsPathItem | None = None  # what is being drawn

    # -- the shape being drawn ---------------------------------------------------------------------
    def _show(self, kind: str, points: list[tuple[float, float]], dashed: bool = False) -> None:
        v = self.view
        rmm, cmm = v.pixel_mm
        path = shape_path(kind, [QtCore.QPointF(c * cmm, r * rmm) for r, c in points])
        if self.item is None:
            self.item = QtWidgets.QGraphicsPathItem()
            self.item.setZValue(40)
            v.vb.addItem(self.item, ignoreBounds=True)
        self.item.setPen(_pen(GREEN, 2, dashed))
        self.item.setPath(path)

    def clear(self) -> None:
        self.points = []
        if self.item is not None:
            self.view.vb.removeItem(self.item)
            self.item = None

    # -- the mouse ---------------------------------------------------------------------------------
    def click(self, row: float, col: float) -> bool:
        """A left click with the current tool; False when it is a plain click (the crosshair)."""
        v, tool = self.view, self.view.tool
        if tool in ("brush", "eraser"):
            v.painted.emit(v.plane, row, col, "start")
            v.painted.emit(v.plane, row, col, "end")
        elif tool == "grow":
            v.seeded.emit(v.plane, row, col)
        elif tool in CLICK_TOOLS:
            self._add_point(CLICK_TOOLS[tool], row, col)
        else:
            return False
        return True

    def _add_point(self, kind: str, row: float, col: float) -> None:
        v = self.view
        tol = CLOSE_PX * v.vb.viewPixelSize()[0] / v.pixel_mm[1]
        if kind == "polygon" and len(self.points) >= 3 and math.dist(self.points[0], (row, col)) <= tol:
            self._finish(kind)
            return
        self.points.append((row, col))
        if KINDS[kind] and len(self.points) == KINDS[kind]:
            self._finish(kind)
            return
        self._show(kind, self.points, dashed=True)
        left = KINDS[kind] - len(self.points) if KINDS[kind] else 0
        hint = {"polygon": "click the first point to close the polygon", "angle": f"{left} more point(s): "
                "the vertex second", "recist": "the long axis' two ends, then the short axis' two ends"}[kind]
        v.measured.emit(f"{kind}: {hint}")

    def _finish(self, kind: str) -> None:
        points, v = self.points, self.view
        self.clear()
        v.measurement_drawn.emit(v.plane, kind, points)

    def drag(self, ev, phase: str) -> None:
        """A left drag with the current tool (not W/L)."""
        v, tool = self.view, self.view.tool
        p0 = v.vb.mapSceneToView(ev.buttonDownScenePos())
        p1 = v.vb.mapSceneToView(ev.scenePos())
        start, end = v.scene_to_pixel(p0.x(), p0.y()), v.scene_to_pixel(p1.x(), p1.y())
        if tool in ("brush", "eraser"):
            if phase == "start":  # the stroke starts where the button went down, not where the drag was noticed
                v.painted.emit(v.plane, *start, "start")
                phase = "move"
            v.painted.emit(v.plane, *end, phase)
        elif tool == "box":
            tolerance = 8 * v.vb.viewPixelSize()[0] / v.pixel_mm[1]  # 8 screen pixels, in image pixels
            if phase == "start":
                v.boxed.emit(v.plane, *start, *start, "start", tolerance)
            if phase == "end":
                self.clear()
                v.boxed.emit(v.plane, *start, *end, "end", tolerance)
            else:
                (r0, c0), (r1, c1) = start, end
                self._show("polygon", [(r0, c0), (r0, c1), (r1, c1), (r1, c0)], dashed=True)
        elif tool in DRAG_TOOLS:
            kind = DRAG_TOOLS[tool]
            if phase == "end":
                self.clear()
                v.measurement_drawn.emit(v.plane, kind, [start, end])
            else:
                self._show(kind, [start, end])
                v.measure_preview.emit(v.plane, kind, [start, end])


class MeasureOverlay:
    """The finished measurements on the view's slice: their outlines and values, the selected one bold."""

    def __init__(self, view):
        self.view = view
        self.items: list[tuple[QtWidgets.QGraphicsPathItem, pg.TextItem]] = []

    def show(self, shown: list[tuple[str, list[tuple[float, float]], str, bool]]) -> None:
        """``shown``: (kind, displayed points, text, selected) of each measurement on this slice."""
        v = self.view
        while len(self.items) < len(shown):
            path = QtWidgets.QGraphicsPathItem()
            path.setZValue(41)
            text = pg.TextItem(anchor=(0, 1), color=GREEN)
            text.setZValue(42)
            v.vb.addItem(path, ignoreBounds=True)
            v.vb.addItem(text, ignoreBounds=True)
            self.items.append((path, text))
        rmm, cmm = v.pixel_mm
        for i, (path, text) in enumerate(self.items):
            if i >= len(shown):
                path.setVisible(False)
                text.setVisible(False)
                continue
            kind, points, label, selected = shown[i]
            pts = [QtCore.QPointF(c * cmm, r * rmm) for r, c in points]
            path.setPath(shape_path(kind, pts))
            path.setPen(_pen(GREEN, 3 if selected else 1.5))
            path.setVisible(True)
            text.setText(label)
            top = min(pts, key=lambda p: p.y())
            text.setPos(top.x(), top.y())
            text.setVisible(True)
