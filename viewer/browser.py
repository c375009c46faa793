"""The study browser: patient → study → series (thumbnail, modality, description, slices).

Files that could not be read are listed under the tree with their reason, so nothing is hidden.
"""

from __future__ import annotations

import numpy as np

from radlens.viewer.qt import QtCore, QtGui, QtWidgets

SERIES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


class StudyBrowser(QtWidgets.QWidget):
    load_requested = QtCore.Signal(object)  # SeriesInfo

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Series", "Modality", "Slices", "Description"])
        self.tree.setIconSize(QtCore.QSize(48, 48))
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        v.addWidget(self.tree, 3)
        self.skipped_label = QtWidgets.QLabel("Unreadable files")
        v.addWidget(self.skipped_label)
        self.skipped = QtWidgets.QListWidget()
        v.addWidget(self.skipped, 1)
        self.skipped_label.setVisible(False)
        self.skipped.setVisible(False)
        self._series_items: dict[str, QtWidgets.QTreeWidgetItem] = {}

    def add_scan(self, results) -> list:
        """Add [(path, ScanResult), ...]; returns the new series in browser order."""
        added = []
        for _path, result in results:
            for s in result.series:
                if s.uid in self._series_items:
                    added.append(s)
                    continue
                self._add_series(s)
                added.append(s)
            for sk in result.skipped:
                self.skipped.addItem(f"{sk.path} — {sk.reason}")
        has_skipped = self.skipped.count() > 0
        self.skipped_label.setText(f"Unreadable files ({self.skipped.count()})")
        self.skipped_label.setVisible(has_skipped)
        self.skipped.setVisible(has_skipped)
        self.tree.expandAll()
        for i in range(4):
            self.tree.resizeColumnToContents(i)
        return added

    def _child(self, parent, key: str, text: str) -> QtWidgets.QTreeWidgetItem:
        for i in range(parent.childCount()):
            item = parent.child(i)
            if item.data(0, QtCore.Qt.ItemDataRole.UserRole) == key:
                return item
        item = QtWidgets.QTreeWidgetItem([text])
        item.setData(0, QtCore.Qt.ItemDataRole.UserRole, key)
        parent.addChild(item)
        return item

    def _add_series(self, s) -> None:
        st = s.study
        patient = self._child(
            self.tree.invisibleRootItem(),
            f"p:{st.patient_id}:{st.patient_name}",
            f"{st.patient_name or '(no name)'} {st.patient_id}".strip(),
        )
        study = self._child(
            patient, f"s:{st.study_uid}", f"{st.study_date or ''} {st.study_description or '(study)'}".strip()
        )
        item = QtWidgets.QTreeWidgetItem(
            [f"#{s.number}" if s.number is not None else "series", s.modality, str(s.shape_zyx[0]), s.description]
        )
        item.setData(0, SERIES_ROLE, s)
        item.setToolTip(0, "\n".join([s.uid, *s.warnings]))
        study.addChild(item)
        self._series_items[s.uid] = item

    def series(self) -> list:
        return [item.data(0, SERIES_ROLE) for item in self._series_items.values()]

    def set_thumbnail(self, uid: str, image: np.ndarray) -> None:
        item = self._series_items.get(uid)
        if item is None:
            return
        a = np.ascontiguousarray(image)
        h, w = a.shape[:2]
        fmt = QtGui.QImage.Format.Format_RGB888 if a.ndim == 3 else QtGui.QImage.Format.Format_Grayscale8
        qimg = QtGui.QImage(a.data, w, h, a.strides[0], fmt).copy()
        item.setIcon(0, QtGui.QIcon(QtGui.QPixmap.fromImage(qimg)))

    def _on_double_click(self, item, column) -> None:
        s = item.data(0, SERIES_ROLE)
        if s is not None:
            self.load_requested.emit(s)
