"""Small widgets several panels and dialogs build alike, so they look and behave the same everywhere."""

from __future__ import annotations

from radlens.viewer.qt import QtWidgets


def row_table(titles) -> QtWidgets.QTableWidget:
    """A read-only table whose rows are picked one at a time (a list of findings, measurements, studies)."""
    table = QtWidgets.QTableWidget(0, len(titles))
    table.setHorizontalHeaderLabels(list(titles))
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    return table


def save_cancel(dialog: QtWidgets.QDialog, on_save=None) -> QtWidgets.QDialogButtonBox:
    """Save and Cancel buttons: Save calls ``on_save`` (default: accept the dialog), Cancel rejects it."""
    buttons = QtWidgets.QDialogButtonBox(
        QtWidgets.QDialogButtonBox.StandardButton.Save | QtWidgets.QDialogButtonBox.StandardButton.Cancel
    )
    buttons.accepted.connect(on_save or dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons
