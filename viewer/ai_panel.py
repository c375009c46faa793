"""The AI panel: what the series is, the model bundles that fit it, Run / Cancel, run-on-open, progress.

It only lists bundles (metadata, no torch); the controller runs them through the JobRunner. The
"Series is" box lets the reader correct a modality the file did not name or named wrongly (a CT
saved as NRRD reads "OT"), or say an MR's contrast (a NIfTI names none); the controller then reopens
the series as that.
"""

from __future__ import annotations

from radlens.imaging.modality import MR_CONTRASTS
from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume
from radlens.viewer.findings_panel import MACHINE_NOTE
from radlens.viewer.qt import QtCore, QtWidgets

BUNDLE_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
# What a reader may say a series is; a series' own other modality (PT, DX, ...) is offered too.
SERIES_CHOICES = ("CT", *(f"MR {c}" for c in MR_CONTRASTS), "MR", "OT")


class AiPanel(QtWidgets.QWidget):
    run_requested = QtCore.Signal()
    cancel_requested = QtCore.Signal()
    modality_chosen = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Series is"))
        self.modality = QtWidgets.QComboBox()
        self.modality.setToolTip("what this series is (for MR, its contrast): the models, windows and units follow")
        self.modality.setEnabled(False)
        row.addWidget(self.modality, 1)
        v.addLayout(row)
        self.models = QtWidgets.QListWidget()
        v.addWidget(self.models, 1)
        row = QtWidgets.QHBoxLayout()
        self.run_button = QtWidgets.QPushButton("Run")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        v.addLayout(row)
        self.run_on_open = QtWidgets.QCheckBox("Run on open")
        v.addWidget(self.run_on_open)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)
        v.addWidget(self.progress)
        self.results = QtWidgets.QLabel("")  # study-level classifiers: the probability of each label
        self.results.setWordWrap(True)
        self.results.setVisible(False)
        v.addWidget(self.results)
        self.device = QtWidgets.QLabel("")
        self.status = QtWidgets.QLabel(MACHINE_NOTE)
        self.status.setWordWrap(True)
        v.addWidget(self.device)
        v.addWidget(self.status)
        self.model_dirs: tuple = ()  # extra bundle folders searched first (``--model DIR`` style)
        self.run_button.clicked.connect(self.run_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.modality.textActivated.connect(self.modality_chosen)  # the reader's choice only

    def set_volume(self, volume: Volume | None) -> None:
        """List the bundles whose modality fits; a broken bundle folder is named, not fatal."""
        self.models.clear()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.modality.clear()
        self.modality.setEnabled(volume is not None)
        if volume is None:
            return
        shown = volume.modality_and_contrast
        self.modality.addItems([*SERIES_CHOICES, *([shown] if shown not in SERIES_CHOICES else [])])
        self.modality.setCurrentText(shown)
        from radlens.inference.applicability import not_a_volume
        from radlens.inference.bundle import list_bundles

        if (why := not_a_volume(volume)) is not None:  # every model reads CT or MR volumes
            self.run_button.setEnabled(False)
            self.set_status(f"no model offered: {why}; the models read CT and MR volumes")
            return
        errors: list = []
        for b in list_bundles(volume.modality, dirs=self.model_dirs, errors=errors):
            item = QtWidgets.QListWidgetItem(f"{b.name} {b.version} ({b.task})")
            item.setToolTip(b.description)
            item.setData(BUNDLE_ROLE, b)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Checked)
            self.models.addItem(item)
        if errors:
            self.set_status("; ".join(str(e) for e in errors[:2]))
        elif self.models.count() == 0:
            hint = ": say what the series is above" if volume.modality == "OT" else ""
            self.set_status(f"no model for {volume.modality}{hint}")
        else:
            self.set_status(MACHINE_NOTE)

    def show_classifications(self, findings) -> None:
        """Each study-level classification's probability, and where it stands against its model's threshold."""
        lines = []
        for c in findings.classifications if findings is not None else ():
            run = next((m for m in findings.models if m.name == c.model), None)
            threshold = run.threshold if run is not None else None
            verdict = "" if threshold is None else (" ≥ " if c.probability >= threshold else " < ") + f"{threshold:.2f}"
            lines.append(f"<b>{c.label}: {100 * c.probability:.0f} %</b> (study{verdict}) — {c.model}")
        self.results.setText("<br>".join(lines))
        self.results.setVisible(bool(lines))

    def selected_bundles(self) -> list:
        return [
            self.models.item(i).data(BUNDLE_ROLE)
            for i in range(self.models.count())
            if self.models.item(i).checkState() == QtCore.Qt.CheckState.Checked
        ]

    def started(self, bundles) -> None:
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.set_status(f"running {', '.join(b.name for b in bundles)}")

    def set_progress(self, p: Progress) -> None:
        self.progress.setMaximum(max(p.total, 0))
        self.progress.setValue(min(p.done, max(p.total, 0)))
        if p.message:
            self.status.setText(p.message)
            for word in ("cuda", "mps", "cpu"):
                if word in p.message.lower():
                    self.device.setText(f"device: {word}")

    def finished(self, ev) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        if ev.error:
            self.set_status(f"model failed: {ev.error}")
        elif ev.cancelled:
            self.set_status("cancelled")
        elif ev.result is not None:
            from radlens.inference.applicability import REFUSED

            self.device.setText(f"device: {ev.result.device}")
            # A model that would not run says why here, where the reader looks, not only in the status bar.
            refused = [w for m in ev.result.models for w in m.warnings if w.startswith(REFUSED)]
            self.set_status("\n".join([f"done — {MACHINE_NOTE}", *refused]))

    def stopped(self) -> None:
        """The job was cancelled or dropped: no result will come."""
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.set_status("cancelled")

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_run_on_open(self, on: bool) -> None:
        self.run_on_open.setChecked(on)
