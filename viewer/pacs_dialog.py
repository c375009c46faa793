"""PACS ▸ Query / retrieve and PACS ▸ Nodes: the dialogs. They only show and ask; viewer.dicom_actions runs
the queries and retrieves in the background and tells them what came back.
"""

from __future__ import annotations

from pathlib import Path

from radlens.imaging.progress import Progress
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import PacsConfig, parse_config
from radlens.pacs.query import Match, Query
from radlens.viewer.qt import QtCore, QtWidgets
from radlens.viewer.widgets import row_table, save_cancel

STUDY_COLUMNS = (
    ("PatientID", "Patient ID"),
    ("PatientName", "Name"),
    ("StudyDate", "Date"),
    ("StudyDescription", "Description"),
    ("ModalitiesInStudy", "Modalities"),
    ("NumberOfStudyRelatedSeries", "Series"),
    ("NumberOfStudyRelatedInstances", "Images"),
)
SERIES_COLUMNS = (
    ("SeriesNumber", "#"),
    ("Modality", "Modality"),
    ("SeriesDescription", "Description"),
    ("NumberOfSeriesRelatedInstances", "Images"),
)
FILTERS = (  # (DICOM keyword, label, hint)
    ("PatientID", "Patient ID", ""),
    ("PatientName", "Patient name", "wildcards: DOE^J*"),
    ("StudyDate", "Study date", "YYYYMMDD or YYYYMMDD-YYYYMMDD"),
    ("ModalitiesInStudy", "Modality", "CT, MR, ..."),
    ("AccessionNumber", "Accession", ""),
)


def _table(columns) -> QtWidgets.QTableWidget:
    t = row_table([title for _, title in columns])
    header = t.horizontalHeader()
    for i, (key, _) in enumerate(columns):  # the description takes what the others leave
        mode = "Stretch" if key.endswith("Description") else "ResizeToContents"
        header.setSectionResizeMode(i, getattr(QtWidgets.QHeaderView.ResizeMode, mode))
    return t


def _fill(table: QtWidgets.QTableWidget, columns, matches: list[Match], uid_key: str) -> None:
    table.setRowCount(0)
    for m in matches:
        row = table.rowCount()
        table.insertRow(row)
        for col, (key, _) in enumerate(columns):
            item = QtWidgets.QTableWidgetItem(m.get(key, ""))
            item.setData(QtCore.Qt.ItemDataRole.UserRole, m.get(uid_key, ""))
            table.setItem(row, col, item)


class QueryDialog(QtWidgets.QDialog):
    """Find studies on a node, see a study's series, retrieve the study (or one series) and open it."""

    find_requested = QtCore.Signal(str, object)  # node name, Query
    series_requested = QtCore.Signal(str, str)  # node name, study UID
    retrieve_requested = QtCore.Signal(str, str, str, str)  # node name, study UID, series UID or "", folder
    cancel_requested = QtCore.Signal()
    echo_requested = QtCore.Signal(str)
    nodes_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("PACS: query / retrieve")
        self.resize(900, 620)
        layout = QtWidgets.QVBoxLayout(self)

        top = QtWidgets.QHBoxLayout()
        self.node_box = QtWidgets.QComboBox()
        self.node_box.setMinimumWidth(280)
        echo = QtWidgets.QPushButton("Echo")
        nodes = QtWidgets.QPushButton("Nodes…")
        top.addWidget(QtWidgets.QLabel("Node"))
        top.addWidget(self.node_box, 1)
        top.addWidget(echo)
        top.addWidget(nodes)
        layout.addLayout(top)

        form = QtWidgets.QHBoxLayout()
        self.filters: dict[str, QtWidgets.QLineEdit] = {}
        for key, label, hint in FILTERS:
            edit = QtWidgets.QLineEdit()
            edit.setPlaceholderText(hint or label)
            edit.returnPressed.connect(self._find)
            self.filters[key] = edit
            box = QtWidgets.QVBoxLayout()
            box.addWidget(QtWidgets.QLabel(label))
            box.addWidget(edit)
            form.addLayout(box)
        self.find_button = QtWidgets.QPushButton("Find")
        form.addWidget(self.find_button, 0, QtCore.Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(form)

        self.studies = _table(STUDY_COLUMNS)
        self.series = _table(SERIES_COLUMNS)
        layout.addWidget(QtWidgets.QLabel("Studies"))
        layout.addWidget(self.studies, 3)
        layout.addWidget(QtWidgets.QLabel("Series of the selected study (none selected: the whole study)"))
        layout.addWidget(self.series, 2)

        dest = QtWidgets.QHBoxLayout()
        self.folder = QtWidgets.QLineEdit()
        browse = QtWidgets.QPushButton("…")
        dest.addWidget(QtWidgets.QLabel("Retrieve into"))
        dest.addWidget(self.folder, 1)
        dest.addWidget(browse)
        layout.addLayout(dest)

        bottom = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.retrieve_button = QtWidgets.QPushButton("Retrieve and open")
        self.retrieve_button.setEnabled(False)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.cancel_button)
        bottom.addWidget(self.retrieve_button)
        layout.addLayout(bottom)

        self.find_button.clicked.connect(self._find)
        echo.clicked.connect(self._echo)
        nodes.clicked.connect(self.nodes_requested)
        browse.clicked.connect(self._browse)
        self.studies.itemSelectionChanged.connect(self._study_selected)
        self.retrieve_button.clicked.connect(self._retrieve)
        self.cancel_button.clicked.connect(self.cancel_requested)

    # -- what the user asks ----------------------------------------------------------------------
    def node_name(self) -> str:
        return self.node_box.currentText().split(" (", 1)[0]

    def query(self) -> Query:
        return Query("study", {key: edit.text().strip() for key, edit in self.filters.items()})

    def selected_study(self) -> str:
        return self._selected(self.studies)

    def selected_series(self) -> str:
        return self._selected(self.series)

    @staticmethod
    def _selected(table: QtWidgets.QTableWidget) -> str:
        rows = table.selectionModel().selectedRows()
        return str(table.item(rows[0].row(), 0).data(QtCore.Qt.ItemDataRole.UserRole)) if rows else ""

    def _find(self) -> None:
        if self.node_name():
            self.series.setRowCount(0)
            self.find_requested.emit(self.node_name(), self.query())

    def _echo(self) -> None:
        if self.node_name():
            self.echo_requested.emit(self.node_name())

    def _study_selected(self) -> None:
        study = self.selected_study()
        self.retrieve_button.setEnabled(bool(study))
        self.series.setRowCount(0)
        if study:
            self.series_requested.emit(self.node_name(), study)

    def _retrieve(self) -> None:
        study = self.selected_study()
        if study:
            self.retrieve_requested.emit(self.node_name(), study, self.selected_series(), self.folder.text())

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Retrieve into", self.folder.text())
        if path:
            self.folder.setText(path)

    # -- what the controller tells it ------------------------------------------------------------
    def set_nodes(self, config: PacsConfig, current: str = "") -> None:
        self.node_box.clear()
        for node in config.nodes:
            self.node_box.addItem(str(node))
        names = [n.name for n in config.nodes]
        if current in names:
            self.node_box.setCurrentIndex(names.index(current))
        if not names:
            self.show_message("No PACS nodes yet: add one with Nodes…")

    def show_studies(self, matches: list[Match]) -> None:
        _fill(self.studies, STUDY_COLUMNS, matches, "StudyInstanceUID")
        self.show_message(f"{len(matches)} {'study' if len(matches) == 1 else 'studies'} found")

    def show_series(self, matches: list[Match]) -> None:
        _fill(self.series, SERIES_COLUMNS, matches, "SeriesInstanceUID")

    def show_message(self, text: str, *, error: bool = False) -> None:
        self.status.setStyleSheet("color: #ff6060;" if error else "")
        self.status.setText(text.splitlines()[0] if text else "")

    def show_progress(self, progress: Progress | None) -> None:
        """A retrieve running (progress) or not (None): the bar and Cancel show only while it runs."""
        running = progress is not None
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.retrieve_button.setEnabled(not running and bool(self.selected_study()))
        if running:
            self.progress.setMaximum(max(progress.total, 0))
            self.progress.setValue(min(progress.done, max(progress.total, 0)))
            if progress.message:
                self.show_message(progress.message)


NODE_COLUMNS = (
    ("name", "Name"),
    ("ae_title", "AE title"),
    ("host", "Host"),
    ("port", "Port"),
    ("retrieve", "Retrieve"),
    ("url", "DICOMweb URL"),
)


class NodesDialog(QtWidgets.QDialog):
    """PACS ▸ Nodes: the nodes and RadLens' own AE, saved to the pacs.json the command line reads too."""

    def __init__(self, config: PacsConfig, where: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("PACS nodes")
        self.resize(820, 360)
        self.config: PacsConfig | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel(f"Kept in {where} (shared with `radlens pacs`)"))
        self.table = QtWidgets.QTableWidget(0, len(NODE_COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in NODE_COLUMNS])
        self.table.horizontalHeaderItem(4).setToolTip("DIMSE nodes: get (C-GET) or move (C-MOVE to RadLens)")
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        for node in config.to_json()["nodes"]:
            self.add_row(node)
        self.table.resizeColumnsToContents()
        row = QtWidgets.QHBoxLayout()
        add, remove = QtWidgets.QPushButton("Add"), QtWidgets.QPushButton("Remove")
        add.clicked.connect(self._add_empty)
        remove.clicked.connect(self._remove)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        layout.addLayout(row)
        local = QtWidgets.QFormLayout()
        self.local_title = QtWidgets.QLineEdit(config.local.ae_title)
        self.local_port = QtWidgets.QSpinBox()
        self.local_port.setRange(1, 65535)
        self.local_port.setValue(config.local.port)
        local.addRow("RadLens' AE title", self.local_title)
        local.addRow("C-MOVE storage port", self.local_port)
        layout.addLayout(local)
        self.error = QtWidgets.QLabel("")
        self.error.setStyleSheet("color: #ff6060;")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        layout.addWidget(save_cancel(self, self._save))
        self._base = config

    def add_row(self, values: dict) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        for col, (key, _) in enumerate(NODE_COLUMNS):
            value = values.get(key, "")
            self.table.setItem(row, col, QtWidgets.QTableWidgetItem("" if value in (None, 0) else str(value)))

    def _add_empty(self) -> None:
        self.add_row({"retrieve": "get"})

    def _remove(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows:
            self.table.removeRow(r)

    def edited(self) -> PacsConfig:
        """The table as a configuration, checked as the file is (a bad row raises a PacsError naming it)."""
        nodes = []
        for r in range(self.table.rowCount()):
            cells = {
                key: (self.table.item(r, c).text().strip() if self.table.item(r, c) else "")
                for c, (key, _) in enumerate(NODE_COLUMNS)
            }
            if not any(cells.values()):
                continue
            node = {k: v for k, v in cells.items() if v}
            if "port" in node:
                if not node["port"].isdigit():
                    raise PacsError(f"row {r + 1}", f"port {node['port']!r}: must be a number")
                node["port"] = int(node["port"])
            if "url" in node:
                node.pop("retrieve", None)
            nodes.append(node)
        local = {
            **self._base.to_json()["local"],
            "ae_title": self.local_title.text().strip(),
            "port": self.local_port.value(),
        }
        return parse_config({"local": local, "nodes": nodes}, "PACS nodes")

    def _save(self) -> None:
        try:
            self.config = self.edited()
        except PacsError as err:
            self.error.setText(str(err))
            return
        self.accept()
