"""A searchable DICOM tag browser for the slice on screen (headers only, read on demand)."""

from __future__ import annotations

from radlens.imaging.volume import Volume
from radlens.viewer.qt import QtWidgets


def slice_tags(volume: Volume, index: int) -> list[tuple[str, str, str]]:
    """(tag, keyword, value) of the file behind an axial slice; one explanatory row without a file."""
    if not volume.files:
        return [("", "", f"no DICOM header: {volume.source or 'in-memory volume'}")]
    import pydicom

    path = volume.files[min(max(index, 0), len(volume.files) - 1)]
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        return [("", "", f"{path}: {err}")]
    rows = []
    for elem in ds.iterall():
        value = "<sequence>" if elem.VR == "SQ" else str(elem.value)
        rows.append((f"({elem.tag.group:04X},{elem.tag.element:04X})", elem.keyword or elem.name, value[:200]))
    return rows


class TagBrowser(QtWidgets.QDialog):
    def __init__(self, volume: Volume, index: int, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"DICOM tags — slice {index + 1}")
        self.resize(700, 600)
        v = QtWidgets.QVBoxLayout(self)
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("search tag, keyword or value")
        v.addWidget(self.search)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Keyword", "Value"])
        v.addWidget(self.tree)
        for row in slice_tags(volume, index):
            self.tree.addTopLevelItem(QtWidgets.QTreeWidgetItem(list(row)))
        self.tree.resizeColumnToContents(0)
        self.tree.resizeColumnToContents(1)
        self.search.textChanged.connect(self.filter)

    def filter(self, text: str) -> int:
        """Hide rows that do not contain ``text``; returns how many stay visible."""
        text = text.lower()
        shown = 0
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            hit = not text or any(text in item.text(c).lower() for c in range(3))
            item.setHidden(not hit)
            shown += hit
        return shown
