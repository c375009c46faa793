"""What the window writes out: the screenshot, the accepted findings' key slices, the measurements
and a training case, each behind its file dialog.

The window owns one ExportActions (``window.exports``); its menus and panels call these methods.
The PNGs go through viewer.export's ``render_study``, the code ``radlens export`` uses.
"""

from __future__ import annotations

from pathlib import Path

from radlens.imaging.errors import RadlensError
from radlens.viewer.qt import QtWidgets


class ExportActions:
    def __init__(self, window):
        self.window = window

    def export_dialog(self) -> None:
        w = self.window
        if w.study is None:
            return
        from radlens.viewer.export import ExportDialog

        dlg = ExportDialog(w, w.views[w.controller.active_plane()].size())
        if dlg.exec():
            self.export_view(dlg.path(), dlg.size_wh(), anonymize=dlg.anonymize())

    def export_view(self, path, size_wh=None, *, anonymize: bool = False, plane: str | None = None, keep_view=True):
        """Render the plane as the user sees it (zoom and pan kept) through the exporter's code."""
        from radlens.viewer.export import render_study, save_png

        w = self.window
        plane = plane or w.controller.active_plane()
        if size_wh is None:
            s = w.views[plane].size()
            size_wh = (s.width(), s.height())
        study = w.study
        try:
            image, legend = render_study(
                study.volume,
                study.state,
                plane,
                size_wh,
                anonymize=anonymize,
                synthetic=w.controller.synthetic,
                view_rect=w.views[plane].vb.viewRect() if keep_view else None,
            )
            out = save_png(image, path, legend, anonymize=anonymize, study=study.volume.study)
        except RadlensError as err:
            w.show_error(str(err))
            return None
        w.set_status(f"exported {out}")
        return out

    def export_accepted_dialog(self) -> None:
        if self.window.study is None:
            return
        folder = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Folder for the key slices")
        if folder:
            self.export_accepted(folder)

    def export_accepted(self, folder) -> list[Path]:
        """The key slice of every accepted finding, one PNG each."""
        st = self.window.study.state
        keep_cursor, keep_sel = list(st.cursor_zyx), st.selected
        out = []
        for row in st.rows:
            if st.decision(row) == "accepted":
                st.select(row.key)
                name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(row.key))
                out.append(self.export_view(Path(folder) / f"{name}.png", plane="axial", keep_view=False))
        st.cursor_zyx, st.selected = keep_cursor, keep_sel
        self.window.set_status(f"exported {len(out)} key slices to {folder}")
        return out

    def save_training_case_dialog(self) -> None:
        w = self.window
        if w.study is None:
            return
        start = str(w.settings.value("training_cases", ""))
        folder = QtWidgets.QFileDialog.getExistingDirectory(w, "nnU-Net folder for the training case", start)
        if folder and w.controller.save_training_case(folder):
            w.settings.setValue("training_cases", folder)

    def export_measurements_dialog(self) -> None:
        w = self.window
        if w.study is None:
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            w, "Export measurements", "measurements.csv", "CSV (*.csv);;JSON (*.json)"
        )
        if path:
            w.controller.measurements.export(path)
