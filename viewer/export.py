"""Annotated export: the window's screenshot and ``radlens export`` share ``render_study``.

Both draw a fresh SliceView offscreen from the same ViewState (so the PNG shows exactly the layers,
threshold and window the user sees), then add a legend strip: models, versions and thresholds,
W/L, slice position, and that AI results are machine-generated. With ``anonymize`` neither the
burned-in text nor the PNG text chunks carry patient identifiers.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from radlens.imaging.atomic import atomic_path
from radlens.imaging.errors import RadlensError
from radlens.imaging.orient import Orientation
from radlens.imaging.volume import StudyInfo, Volume, Window
from radlens.viewer import layout
from radlens.viewer.findings_panel import MACHINE_NOTE, colour_bar_pixmap
from radlens.viewer.layers import READER
from radlens.viewer.qt import QtCore, QtGui, QtWidgets
from radlens.viewer.state import ViewState, plane_pixel_mm
from radlens.viewer.widgets import save_cancel

LINE_H = 16
DEFAULT_LONG_SIDE = 768


def legend_lines(volume: Volume, state: ViewState, plane: str, *, synthetic: bool) -> list[str]:
    idx, n = state.slice_index(plane), state.count(plane)
    lps = volume.index_to_lps(state.cursor_zyx)
    pos = {"axial": lps[2], "coronal": lps[1], "sagittal": lps[0]}[plane]
    w = state.window
    parts = [f"RadLens{' — SYNTHETIC data' if synthetic else ''}"]
    if not layout.one_view(volume):
        parts.append(f"{plane} slice {idx + 1}/{n} at {pos:.1f} mm")
    elif where := layout.slice_caption(volume, plane, idx, n, pos):  # a film has no slice; a cine has frames
        parts.append(where.replace("  ", ", "))
    if not volume.is_rgb:
        parts.append(f"W {w.width:g} L {w.level:g}{' (inverted)' if state.invert else ''}")
    lines = [" · ".join(parts)]
    if state.findings is not None and state.findings.models:
        shown = {k.model for k in state.layers if state.shown(k)}
        parts = []
        for m in state.findings.models:
            if m.name not in shown or m.name == READER:
                continue
            ths = [layer.threshold for k, layer in state.layers.items() if k.model == m.name and k.kind == "detection"]
            parts.append(f"{m.name} v{m.version}" + (f" threshold {ths[0]:.2f}" if ths else ""))
        lines.append(f"{MACHINE_NOTE}: " + ("; ".join(parts) if parts else "overlays hidden"))
        if READER in shown:
            lines.append("masks and boxes edited by the reader")
    return lines


def render_study(
    volume: Volume,
    state: ViewState,
    plane: str,
    size_wh: tuple[int, int],
    *,
    anonymize: bool = False,
    synthetic: bool = False,
    view_rect: QtCore.QRectF | None = None,
) -> tuple[QtGui.QImage, list[str]]:
    """The plane as a W×H image (view above, legend strip below), drawn by a fresh SliceView."""
    from radlens.viewer.slice_view import SliceView

    w, h = (int(v) for v in size_wh)
    legend = legend_lines(volume, state, plane, synthetic=synthetic)
    font = QtGui.QFont()
    font.setPixelSize(12)
    drawn = _wrap(legend, QtGui.QFontMetrics(font), w - 12)
    heat = [k for k in state.layers if k.kind == "classification" and state.shown(k)]
    legend_h = LINE_H * len(drawn) + 8 + (14 if heat else 0)
    if w < 32 or h < legend_h + 32:
        raise RadlensError(f"export size {w}×{h}: too small (at least 32×{legend_h + 32})")
    view = SliceView(plane)
    view.anonymize = anonymize
    view.corner_extra = "SYNTHETIC" if synthetic else ""
    view.setAttribute(QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen)
    view.resize(w, h - legend_h)
    view.show()
    try:
        view.set_volume(volume, state)
        view.set_crosshair_visible(False)
        QtWidgets.QApplication.processEvents()
        view.fit()
        if view_rect is not None:
            view.vb.setRange(rect=view_rect, padding=0)
        QtWidgets.QApplication.processEvents()
        shot = view.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    finally:
        view.close()
        view.deleteLater()
    out = QtGui.QImage(w, h, QtGui.QImage.Format.Format_RGB32)
    out.fill(QtGui.QColor(20, 20, 20))
    p = QtGui.QPainter(out)
    p.drawImage(QtCore.QRect(0, 0, w, h - legend_h), shot)
    p.setPen(QtGui.QColor(235, 235, 235))
    p.setFont(font)
    for i, line in enumerate(drawn):
        p.drawText(6, h - legend_h + 4 + LINE_H * (i + 1) - 4, line)
    if heat:
        y = h - 14
        p.drawText(6, y + 11, "heat map 0")
        p.drawPixmap(80, y + 2, colour_bar_pixmap(128, 10))
        p.drawText(80 + 132, y + 11, "1")
    p.end()
    return out, legend


def rgb_array(image: QtGui.QImage) -> np.ndarray:
    """A QImage as an (rows, columns, 3) uint8 RGB array (what Secondary Capture stores)."""
    rgb = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    rows = np.frombuffer(rgb.constBits(), np.uint8, rgb.sizeInBytes()).reshape(rgb.height(), rgb.bytesPerLine())
    return rows[:, : 3 * rgb.width()].reshape(rgb.height(), rgb.width(), 3).copy()


def _wrap(lines: list[str], fm: QtGui.QFontMetrics, width: int) -> list[str]:
    """Break legend lines at spaces so that each fits the image width."""
    out = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and fm.horizontalAdvance(trial) > width:
                out.append(current)
                current = "  " + word
            else:
                current = trial
        out.append(current)
    return out


def save_png(image: QtGui.QImage, path, legend: list[str], *, anonymize: bool, study: StudyInfo) -> Path:
    """Write the PNG atomically; its text chunks repeat the legend (and the patient only if allowed)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise RadlensError(f"{path}: the export is a PNG; name it .png")
    if not path.parent.is_dir():
        raise RadlensError(f"{path.parent}: no such folder")
    image = QtGui.QImage(image)
    image.setText("Software", "RadLens")
    image.setText("Description", " | ".join(legend))
    image.setText("Comment", MACHINE_NOTE)
    if not anonymize:
        who = " ".join(t for t in (study.patient_name, study.patient_id, study.study_date) if t)
        if who:
            image.setText("Patient", who)
    with atomic_path(path, ".png") as tmp:
        if not image.save(tmp, "PNG"):
            raise RadlensError(f"{path}: could not write the PNG")
    return path


def default_size(volume: Volume, plane: str) -> tuple[int, int]:
    """Long side DEFAULT_LONG_SIDE, the other side from the plane's physical aspect (plus the legend)."""
    rows, cols = {
        "axial": volume.shape_zyx[1:],
        "coronal": (volume.shape_zyx[0], volume.shape_zyx[2]),
        "sagittal": (volume.shape_zyx[0], volume.shape_zyx[1]),
    }[plane]
    rmm, cmm = plane_pixel_mm(volume, plane)
    hmm, wmm = rows * rmm, cols * cmm
    scale = DEFAULT_LONG_SIDE / max(hmm, wmm)
    return max(256, round(wmm * scale)), max(256, round(hmm * scale)) + 3 * LINE_H + 8


# -- radlens export ------------------------------------------------------------------------------------
def ensure_app() -> QtWidgets.QApplication:
    """A QApplication for headless rendering (offscreen unless one already runs)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QtWidgets.QApplication(["radlens-export"])
    return app


def window_from_args(args: argparse.Namespace, volume: Volume) -> Window:
    from radlens.imaging.windowing import default_window, preset

    if args.preset:
        try:
            return preset(args.preset)
        except KeyError as err:
            raise RadlensError(f"--preset: {err.args[0]}") from None
    if (args.window is None) != (args.level is None):
        raise RadlensError("--window and --level: give both, or neither")
    if args.window is not None:
        if args.window <= 0:
            raise RadlensError(f"--window {args.window:g}: must be positive")
        return Window(args.window, args.level)
    return default_window(volume)


def choose_overlays(state: ViewState, spec: str) -> None:
    """--overlays all | none | MODEL,MODEL: which layers the PNG shows."""
    spec = (spec or "all").strip()
    if spec == "all":
        return
    if spec == "none":
        state.overlays_on = False
        return
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    known = {k.model for k in state.layers}
    unknown = wanted - known
    if unknown:
        raise RadlensError(
            f"--overlays: no results from {', '.join(sorted(unknown))} (have: {', '.join(sorted(known)) or 'none'})"
        )
    for key, layer in state.layers.items():
        layer.visible = key.model in wanted


def export_command(args: argparse.Namespace) -> int:
    """``radlens export``: load, place the slice, render through the viewer's code, write the PNG."""
    from radlens.imaging.loading import load
    from radlens.inference.findings import check_matches, read_findings

    ensure_app()
    volume = load(args.path)
    findings = None
    if args.findings:
        findings = read_findings(args.findings)
        check_matches(findings, volume, args.findings)
    orientation = Orientation.of(volume)  # shown on the patient's axes, as in the window
    source, volume = volume, orientation.volume(volume)
    state = ViewState.for_volume(volume, window_from_args(args, source))
    plane = args.plane
    state.active_plane = plane
    state.set_findings(findings.reoriented(orientation, volume) if findings is not None else None, volume)
    choose_overlays(state, args.overlays)
    if args.finding is not None:
        if findings is None:
            raise RadlensError("--finding: needs --findings DIR")
        ids = sorted(fid for r in state.rows for _, fid, _ in r.boxes)
        key = next((r.key for r in state.rows if any(fid == args.finding for _, fid, _ in r.boxes)), None)
        if key is None:
            shown = ", ".join(map(str, ids))
            raise RadlensError(f"--finding {args.finding}: no such detection (ids: {shown or 'none'})")
        state.select(key)
    elif args.slice is not None:
        n = state.count(plane)
        if not 0 <= args.slice < n:
            raise RadlensError(f"--slice {args.slice}: the {plane} plane has slices 0..{n - 1}")
        state.set_slice(plane, args.slice)
    size = tuple(args.size) if args.size else default_size(volume, plane)
    if args.dicom:
        from radlens.inference.dicom_source import require_dicom

        require_dicom(source)  # before any rendering: a NIfTI study is refused in one line
        if Path(args.out).suffix.lower() != ".dcm":
            raise RadlensError(f"{args.out}: --dicom writes a Secondary Capture; name it .dcm")
    image, legend = render_study(volume, state, plane, size, anonymize=args.anonymize)
    if args.dicom:
        axial = state.slice_index("axial") if plane == "axial" and orientation.axes[0] == 0 else None
        out = save_capture(image, legend, source, args.out, axial, anonymize=args.anonymize)
    else:
        out = save_png(image, args.out, legend, anonymize=args.anonymize, study=volume.study)
    print(out)
    return 0


def save_capture(image, legend, volume: Volume, path, axial: int | None, *, anonymize: bool) -> Path:
    """The rendering as DICOM Secondary Capture of the stored ``volume``; an axial one references the
    stored slice it shows (``axial``)."""
    from radlens.viewer.dicom_jobs import Capture, write_capture

    return write_capture(Capture(rgb_array(image), " | ".join(legend), axial), volume, path, anonymize=anonymize)


class ExportDialog(QtWidgets.QDialog):
    """File ▸ Export screenshot: where, at what size, anonymized or not."""

    def __init__(self, parent, on_screen: QtCore.QSize):
        super().__init__(parent)
        self.setWindowTitle("Export screenshot")
        form = QtWidgets.QFormLayout(self)
        self.file = QtWidgets.QLineEdit(str(Path.home() / "radlens.png"))
        browse = QtWidgets.QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.file)
        row.addWidget(browse)
        form.addRow("File", row)
        self.width_box = QtWidgets.QSpinBox()
        self.height_box = QtWidgets.QSpinBox()
        for box, v in ((self.width_box, on_screen.width()), (self.height_box, on_screen.height())):
            box.setRange(64, 8192)
            box.setValue(v)
        size = QtWidgets.QHBoxLayout()
        size.addWidget(self.width_box)
        size.addWidget(QtWidgets.QLabel("×"))
        size.addWidget(self.height_box)
        form.addRow("Size (on-screen by default)", size)
        self.anon = QtWidgets.QCheckBox("Anonymize (no patient identifiers)")
        form.addRow(self.anon)
        form.addRow(save_cancel(self))

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export PNG", self.file.text(), "PNG (*.png)")
        if path:
            self.file.setText(path)

    def path(self) -> str:
        return self.file.text()

    def size_wh(self) -> tuple[int, int]:
        return self.width_box.value(), self.height_box.value()

    def anonymize(self) -> bool:
        return self.anon.isChecked()
