"""One plane of a volume: an ImageItem windowed by levels, overlays, crosshair and corner text.

Scene coordinates are millimetres (the image item is scaled by the plane's pixel size), so the
aspect is right by construction and boxes, masks and the crosshair share one frame. The per-frame
path touches only the 2D slice: ``setImage`` with fixed levels, a LUT for inversion, and overlay
slices of the same size.
"""

from __future__ import annotations

import math

import numpy as np

from radlens.imaging.geometry import extract_plane, extract_slab
from radlens.imaging.volume import Volume
from radlens.imaging.windowing import display_lut
from radlens.viewer import layout
from radlens.viewer.layers import READER, LayerKey
from radlens.viewer.measure import on_plane
from radlens.viewer.overlays import boxes_on_slice, heat_lut, label_luts, labels_rgba, layer_slice, mask_rgba
from radlens.viewer.qt import QtCore, QtGui, QtWidgets, pg
from radlens.viewer.state import ViewState, plane_pixel_mm, to_plane
from radlens.viewer.view_tools import MeasureOverlay, ToolInput


class _ViewBox(pg.ViewBox):
    """Mouse mapping: left-drag W/L (or a measurement tool), click = crosshair, middle pan, right zoom."""

    def __init__(self, view: SliceView):
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self._view = view

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self._view.left_drag(ev)
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self._view.point_clicked(p.x(), p.y())
            return
        super().mouseClickEvent(ev)

    def wheelEvent(self, ev, axis=None):
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            self._view.update_zoom_text()
            return
        ev.accept()
        self._view.scroll_requested.emit(self._view.plane, 1 if ev.delta() > 0 else -1)


class _ScaleBar:
    """A bar of a round length in mm (about 100 screen pixels), sized from the current zoom."""

    NICE = tuple(n * 10**e for e in range(-1, 4) for n in (1, 2, 5))

    def __init__(self):
        self.mm, self.px = 0.0, 0
        self.unit = "mm"  # "px" on an uncalibrated image, whose scene units are pixels

    def set_scale(self, px_per_mm: float) -> None:
        if not math.isfinite(px_per_mm) or px_per_mm <= 0:
            self.mm, self.px = 0.0, 0
            return
        target = 100.0 / px_per_mm
        self.mm = max((n for n in self.NICE if n <= target), default=self.NICE[0])
        self.px = round(self.mm * px_per_mm)

    def text(self) -> str:
        return f"{self.mm:g} {self.unit}" if self.mm >= 1 else f"{self.mm:.1f} {self.unit}"


def _no_hover_events(ev, exitOnly: bool = False) -> None:
    """Replaces GraphicsScene.sendHoverEvents on the views' scenes (see SliceView.__init__)."""


class SliceView(pg.GraphicsView):
    """A plane widget; the main window (or the exporter) owns the state and calls ``refresh``."""

    clicked = QtCore.Signal(str, float, float)  # plane, row, column (displayed pixels)
    scroll_requested = QtCore.Signal(str, int)
    window_dragged = QtCore.Signal(float, float)
    probed = QtCore.Signal(str, float, float)
    measured = QtCore.Signal(str)
    painted = QtCore.Signal(str, float, float, str)  # plane, row, column, start | move | end
    boxed = QtCore.Signal(str, float, float, float, float, str, float)  # plane, r0, c0, r1, c1, phase, tolerance
    seeded = QtCore.Signal(str, float, float)  # plane, row, column: segment the lesion there
    measurement_drawn = QtCore.Signal(str, str, object)  # plane, kind, [(row, column), ...]
    measure_preview = QtCore.Signal(str, str, object)  # the same while a ruler or ellipse is dragged

    def __init__(self, plane: str, parent=None):
        super().__init__(parent)
        self.plane = plane
        self.tool = "wl"  # wl | ruler | roi | polygon | angle | recist | brush | eraser | box | grow
        self.volume: Volume | None = None
        self.state: ViewState | None = None
        self.shown_index = -1
        self._overlays_at = -1
        self.pixel_mm = (1.0, 1.0)
        self.anonymize = False
        self.corner_extra = ""  # e.g. "SYNTHETIC"
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(120, 120)

        self.vb = _ViewBox(self)
        self.setCentralItem(self.vb)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image_item)
        self.shutter_item = pg.ImageItem(axisOrder="row-major")  # a DICOM display shutter, over the image
        self.shutter_item.setZValue(5)
        self.vb.addItem(self.shutter_item)
        self.mask_items: dict[str, pg.ImageItem] = {}
        self.heat_items: dict[str, pg.ImageItem] = {}
        self.label_items: dict[int, tuple[pg.ImageItem, list[LayerKey]]] = {}  # one per model's label map
        self.box_items: list[QtWidgets.QGraphicsRectItem] = []
        self.box_labels: list[pg.TextItem] = []
        self.visible_boxes: list[tuple[LayerKey, int, float, tuple[int, int, int, int]]] = []
        pen = pg.mkPen((80, 200, 255, 170), width=1)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        for line in (self.hline, self.vline):
            line.setZValue(50)
            self.vb.addItem(line, ignoreBounds=True)
        self.tools = ToolInput(self)
        self.measures = MeasureOverlay(self)
        self._measures_at = -1

        # Text over the image is painted in drawForeground, in the same pass as the image: child
        # label widgets would make every change repaint the viewport twice.
        self.corners = {"tl": "", "tr": "", "bl": "", "br": ""}
        self.letters = {"left": "", "right": "", "top": "", "bottom": ""}
        self.scale_bar = _ScaleBar()
        self.vb.sigRangeChanged.connect(self.update_zoom_text)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        # No item here reacts to hovering, and pyqtgraph's hover search under the cursor on every
        # mouse move costs milliseconds of each W/L-drag frame (bench/render.py): switch it off.
        self.scene().sendHoverEvents = _no_hover_events

    # -- data ------------------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, state: ViewState | None) -> None:
        self.volume, self.state = volume, state
        self.shown_index = -1
        self.tools.clear()
        self._measures_at = -1
        if volume is not None:
            self.pixel_mm = plane_pixel_mm(volume, self.plane)
            self.image_item.setTransform(QtGui.QTransform.fromScale(self.pixel_mm[1], self.pixel_mm[0]))
        self.rebuild_layers()
        shutter = layout.shutter_rgba(volume) if volume is not None and self.plane == "axial" else None
        self.shutter_item.setVisible(shutter is not None)  # no shutter of the last study over the next one
        if volume is None:
            self.image_item.clear()
            return
        self.letters = layout.letters(volume, self.plane)
        self.scale_bar.unit = volume.presentation.pixel_unit
        if shutter is not None:
            self.shutter_item.setImage(shutter, autoLevels=False, levels=(0, 255))
            self.shutter_item.setTransform(self.image_item.transform())
        self.refresh()
        self.fit()

    def show_preview(self, image: np.ndarray, pixel_mm: tuple[float, float] | None, levels) -> None:
        """A single axial slice shown while the series is still loading."""
        self.image_item.setImage(image, autoLevels=False, levels=levels)
        if pixel_mm is not None:
            self.pixel_mm = pixel_mm
            self.image_item.setTransform(QtGui.QTransform.fromScale(self.pixel_mm[1], self.pixel_mm[0]))
        self.fit()

    def rebuild_layers(self) -> None:
        """The state's layers were replaced (new findings): one image item per mask and heat map."""
        self._overlays_at = -1
        labelled = [item for item, _ in self.label_items.values()]
        for item in (*self.mask_items.values(), *self.heat_items.values(), *labelled):
            self.vb.removeItem(item)
        self.mask_items, self.heat_items, self.label_items = {}, {}, {}
        self._set_boxes([])
        lut = heat_lut(pg.colormap.get("inferno"))
        for key, layer in self.state.layers.items() if self.state is not None else ():
            if key.kind == "detection":
                continue
            if layer.value is not None and id(layer.data) in self.label_items:
                self.label_items[id(layer.data)][1].append(key)
                continue
            heat = key.kind == "classification"
            item = pg.ImageItem(axisOrder="row-major")
            item.setTransform(QtGui.QTransform.fromScale(self.pixel_mm[1], self.pixel_mm[0]))
            item.setZValue(10 if heat else 20)  # masks over heat maps
            if heat:
                item.setLookupTable(lut)
            self.vb.addItem(item)
            if layer.value is not None:
                self.label_items[id(layer.data)] = (item, [key])
            else:
                (self.heat_items if heat else self.mask_items)[key] = item

    # -- drawing ---------------------------------------------------------------------------------
    def refresh(self, *, image: bool = True, levels: bool = True, overlays: bool = True) -> None:
        st, vol = self.state, self.volume
        if st is None or vol is None:
            return
        idx = st.slice_index(self.plane)
        # The window's VOI function (SIGMOID) or the series' VOI LUT table, as levels and a table.
        grey_levels, lut = display_lut(vol, st.window, st.invert)
        if image and idx != self.shown_index:
            half = st.slab_half(self.plane, vol.spacing_zyx)
            shown = extract_slab(vol, self.plane, idx, half, st.slab) if half else extract_plane(vol, self.plane, idx)
            self.image_item.setImage(
                shown.image,
                autoLevels=False,
                levels=None if vol.is_rgb else grey_levels,
            )
            self.shown_index = idx
        elif levels and not vol.is_rgb:
            self.image_item.setLevels(grey_levels)
        self.image_item.setLookupTable(None if vol.is_rgb else lut)
        if overlays and idx != self._overlays_at:
            self._draw_overlays(idx)
            self._overlays_at = idx
        if idx != self._measures_at:
            self.draw_measurements()
        self._draw_crosshair()
        self.update_corner_text()

    def draw_measurements(self) -> None:
        """The study's measurements drawn on this plane's current slice."""
        st, vol = self.state, self.volume
        if st is None or vol is None:
            return
        idx = st.slice_index(self.plane)
        shown = []
        for m in st.measurements:
            if m.plane != self.plane:
                continue
            at, points = on_plane(m, vol, st.flip_z)
            if at == idx:
                shown.append((m.kind, points, m.text(), m.id == st.selected_measurement))
        self.measures.show(shown)
        self._measures_at = idx

    def invalidate_overlays(self) -> None:
        """Layers, thresholds or the selection changed: the next refresh redraws the overlays."""
        self._overlays_at = -1

    def _draw_overlays(self, idx: int) -> None:
        st = self.state
        for key, item in self.mask_items.items():
            shown = st.shown(key)
            item.setVisible(shown)
            if not shown:
                continue
            layer = st.layers[key]
            piece = mask_rgba(layer_slice(layer, self.plane, idx), layer.colour)
            if piece is None:  # nothing of this mask on this slice
                item.setVisible(False)
                continue
            rgba, r0, c0 = piece
            item.setImage(rgba, autoLevels=False, levels=(0, 255))
            rmm, cmm = self.pixel_mm
            item.setTransform(QtGui.QTransform(cmm, 0, 0, rmm, c0 * cmm, r0 * rmm))
            item.setOpacity(layer.opacity)
        for item, keys in self.label_items.values():
            layers = [st.layers[k] for k in keys]
            piece = labels_rgba(layer_slice(layers[0], self.plane, idx), *label_luts(layers, st.shown))
            item.setVisible(piece is not None)
            if piece is not None:
                rgba, r0, c0 = piece
                item.setImage(rgba, autoLevels=False, levels=(0, 255))
                rmm, cmm = self.pixel_mm
                item.setTransform(QtGui.QTransform(cmm, 0, 0, rmm, c0 * cmm, r0 * rmm))
        for key, item in self.heat_items.items():
            shown = st.shown(key)
            item.setVisible(shown)
            if shown:
                layer = st.layers[key]
                item.setImage(layer_slice(layer, self.plane, idx), autoLevels=False, levels=(0.0, 1.0))
                item.setOpacity(layer.opacity)
        boxes = []
        for key, layer in st.layers.items():
            if key.kind == "detection" and st.shown(key):
                hits = boxes_on_slice(layer.data, layer.threshold, self.plane, idx, st.shape_zyx, st.flip_z)
                boxes += [(key, fid, score, rect) for fid, score, rect in hits]
        self._set_boxes(boxes)

    def _set_boxes(self, boxes) -> None:
        self.visible_boxes = boxes
        while len(self.box_items) < len(boxes):
            rect = QtWidgets.QGraphicsRectItem()
            rect.setZValue(30)
            self.vb.addItem(rect, ignoreBounds=True)
            text = pg.TextItem(anchor=(0, 1))
            text.setZValue(31)
            self.vb.addItem(text, ignoreBounds=True)
            self.box_items.append(rect)
            self.box_labels.append(text)
        rmm, cmm = self.pixel_mm
        st = self.state
        chosen = st.selected_boxes() if st is not None else set()
        for i, (rect, text) in enumerate(zip(self.box_items, self.box_labels, strict=True)):
            if i >= len(boxes):
                rect.setVisible(False)
                text.setVisible(False)
                continue
            key, fid, score, (r0, c0, r1, c1) = boxes[i]
            layer = st.layers[key]
            selected = (key, fid) in chosen
            color = QtGui.QColor(*layer.colour, int(255 * layer.opacity))
            pen = QtGui.QPen(color, 3 if selected else 2)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setRect(QtCore.QRectF(c0 * cmm, r0 * rmm, (c1 - c0) * cmm, (r1 - r0) * rmm))
            rect.setVisible(True)
            text.setText(f"{key.label} {score:.2f}", color=color)
            text.setPos(c0 * cmm, r0 * rmm)
            text.setVisible(True)

    def _draw_crosshair(self) -> None:
        st = self.state
        _, row, col = to_plane(self.plane, st.cursor_zyx, st.shape_zyx, st.flip_z)
        self.hline.setPos((row + 0.5) * self.pixel_mm[0])
        self.vline.setPos((col + 0.5) * self.pixel_mm[1])

    def set_crosshair_visible(self, on: bool) -> None:
        self.hline.setVisible(on)
        self.vline.setVisible(on)

    # -- text ------------------------------------------------------------------------------------
    def update_corner_text(self) -> None:
        st, vol = self.state, self.volume
        if st is None or vol is None:
            return
        idx = st.slice_index(self.plane)
        n = st.count(self.plane)
        pos_mm = vol.index_to_lps(st.cursor_zyx)
        pos = {"axial": pos_mm[2], "coronal": pos_mm[1], "sagittal": pos_mm[0]}[self.plane]
        study = vol.study
        tl = [] if self.anonymize else [study.patient_name or "(no name)", study.patient_id, study.study_date]
        if self.corner_extra:
            tl.insert(0, self.corner_extra)
        self._set_corner("tl", "\n".join(t for t in tl if t))
        tr = [vol.modality, vol.description, *layout.series_lines(vol, self.plane)]
        if st.overlays_on and st.layers:
            shown = {(k.model, layer.version) for k, layer in st.layers.items() if st.shown(k)}
            models = sorted(f"{m} v{v}" for m, v in shown if m != READER)
            if models:
                tr += ["AI, machine-generated:", *models]
            if any(m == READER for m, _ in shown):
                tr.append("edited by the reader")
        self._set_corner("tr", "\n".join(t for t in tr if t))
        slab = f"  {st.slab.upper()} {st.slab_mm:g} mm" if st.slab_half(self.plane, vol.spacing_zyx) else ""
        self._set_corner("bl", layout.slice_caption(vol, self.plane, idx, n, pos) + slab)
        self._set_corner("br", self._window_text())

    def zoom(self) -> float:
        """Screen pixels per image pixel (columns)."""
        px = self.vb.viewPixelSize()[0]
        return self.pixel_mm[1] / px if px > 0 else float("nan")

    def zoom_text(self) -> str:
        z = self.zoom()
        return f"zoom {z:.2f}×" if math.isfinite(z) else ""

    def update_zoom_text(self, *args) -> None:
        px = self.vb.viewPixelSize()[0]
        self.scale_bar.set_scale(1.0 / px if px > 0 else float("nan"))
        if self.state is not None and self.volume is not None:
            self._set_corner("br", self._window_text())

    def _window_text(self) -> str:
        if self.volume.is_rgb:  # colour is shown as it is: no window
            return self.zoom_text()
        w = self.state.window
        return f"W {w.width:.0f} L {w.level:.0f}{'  inv' if self.state.invert else ''}\n{self.zoom_text()}"

    def _set_corner(self, key: str, text: str) -> None:
        if self.corners[key] != text:
            self.corners[key] = text
            self.scene().update()  # merged with the items' own updates into one paint

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if hasattr(self, "scale_bar"):  # pyqtgraph resizes once inside its own __init__
            self.update_zoom_text()

    def drawForeground(self, painter: QtGui.QPainter, rect) -> None:
        """Corner text, orientation letters and the scale bar, in viewport pixels over the scene."""
        if self.volume is None:
            return
        painter.save()
        painter.resetTransform()
        w, h, m = self.viewport().width(), self.viewport().height(), 4
        font = QtGui.QFont("monospace")
        font.setStyleHint(QtGui.QFont.StyleHint.Monospace)
        font.setPixelSize(11)
        painter.setFont(font)
        fm = painter.fontMetrics()
        lh = fm.height()
        room = max(40, w // 2 - 10)  # each corner gets half the width: corners never overlap
        grey = QtGui.QColor(232, 232, 232)
        for key, text in self.corners.items():
            lines = [fm.elidedText(t, QtCore.Qt.TextElideMode.ElideRight, room) for t in text.split("\n") if t]
            top = m if key[0] == "t" else h - m - lh * len(lines)
            for i, line in enumerate(lines):
                x = m if key[1] == "l" else w - m - fm.horizontalAdvance(line)
                _outlined_text(painter, x, top + i * lh + fm.ascent(), line, grey)
        bottom_text = lh * max(1, len(self.corners["bl"].split("\n")))
        if self.scale_bar.px > 0:
            y = h - m - bottom_text - 6
            x1 = m + 4 + self.scale_bar.px
            for pen in (QtGui.QPen(QtGui.QColor(0, 0, 0), 4), QtGui.QPen(grey, 2)):  # outlined, as the text
                painter.setPen(pen)
                painter.drawLine(m + 4, y, x1, y)
                painter.drawLine(m + 4, y - 4, m + 4, y)
                painter.drawLine(x1, y - 4, x1, y)
            _outlined_text(painter, m + 8, y - 6, self.scale_bar.text(), grey)
        bold = QtGui.QFont(font)
        bold.setPixelSize(13)
        bold.setBold(True)
        painter.setFont(bold)
        bfm = painter.fontMetrics()
        amber = QtGui.QColor(255, 210, 74)
        L = self.letters
        cy = h // 2 + bfm.ascent() // 2
        _outlined_text(painter, m, cy, L["left"], amber)
        _outlined_text(painter, w - m - bfm.horizontalAdvance(L["right"]), cy, L["right"], amber)
        _outlined_text(painter, (w - bfm.horizontalAdvance(L["top"])) // 2, m + bfm.ascent(), L["top"], amber)
        _outlined_text(
            painter, (w - bfm.horizontalAdvance(L["bottom"])) // 2, h - m - bottom_text - 2, L["bottom"], amber
        )
        painter.restore()

    # -- view --------------------------------------------------------------------------------------
    def fit(self) -> None:
        self.vb.autoRange(padding=0.0, items=[self.image_item])
        self.update_zoom_text()

    def one_to_one(self) -> None:
        """One image pixel per screen pixel, centred where the view is now."""
        r = self.vb.viewRect()
        cx, cy = r.center().x(), r.center().y()
        w = self.vb.width() * self.pixel_mm[1] / 2
        h = self.vb.height() * self.pixel_mm[1] / 2
        self.vb.setRange(xRange=(cx - w, cx + w), yRange=(cy - h, cy + h), padding=0)
        self.update_zoom_text()

    def center_on(self, row: float, col: float) -> None:
        r = self.vb.viewRect()
        x, y = (col + 0.5) * self.pixel_mm[1], (row + 0.5) * self.pixel_mm[0]
        self.vb.setRange(
            xRange=(x - r.width() / 2, x + r.width() / 2), yRange=(y - r.height() / 2, y + r.height() / 2), padding=0
        )

    def scene_to_pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """View (mm) → displayed (row, column) in pixels (fractional)."""
        return y_mm / self.pixel_mm[0], x_mm / self.pixel_mm[1]

    # -- mouse -------------------------------------------------------------------------------------
    def point_clicked(self, x_mm: float, y_mm: float) -> None:
        row, col = self.scene_to_pixel(x_mm, y_mm)
        if not self.tools.click(row, col):
            self.clicked.emit(self.plane, row, col)

    def left_drag(self, ev) -> None:
        if self.tool == "wl":
            d = ev.screenPos() - ev.lastScreenPos()
            self.window_dragged.emit(float(d.x()), float(d.y()))
            return
        self.tools.drag(ev, "start" if ev.isStart() else "end" if ev.isFinish() else "move")

    def _mouse_moved(self, scene_pos) -> None:
        if self.volume is None:
            return
        p = self.vb.mapSceneToView(scene_pos)
        row, col = self.scene_to_pixel(p.x(), p.y())
        self.probed.emit(self.plane, row, col)

    def keyPressEvent(self, ev):
        k = ev.key()
        step = {
            QtCore.Qt.Key.Key_Up: 1,
            QtCore.Qt.Key.Key_Down: -1,
            QtCore.Qt.Key.Key_Right: 1,
            QtCore.Qt.Key.Key_Left: -1,
            QtCore.Qt.Key.Key_PageUp: 10,
            QtCore.Qt.Key.Key_PageDown: -10,
        }.get(k)
        if step is not None and self.state is not None:
            self.scroll_requested.emit(self.plane, step)
            return
        if k in (QtCore.Qt.Key.Key_Home, QtCore.Qt.Key.Key_End) and self.state is not None:
            n = self.state.count(self.plane)
            target = 0 if k == QtCore.Qt.Key.Key_Home else n - 1
            self.scroll_requested.emit(self.plane, target - self.state.slice_index(self.plane))
            return
        super().keyPressEvent(ev)


_OUTLINE = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]


def _outlined_text(painter: QtGui.QPainter, x: int, y: int, text: str, color: QtGui.QColor) -> None:
    """Text with a one-pixel black outline: readable over a white radiograph as over black air."""
    painter.setPen(QtGui.QColor(0, 0, 0))
    for dx, dy in _OUTLINE:
        painter.drawText(x + dx, y + dy, text)
    painter.setPen(color)
    painter.drawText(x, y, text)
