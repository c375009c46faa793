"""What the user can command: the one keymap, the menu table, and the menu bar built from them.

Every menu entry and every key names one action; the window and the controller say what each
action does (``Controller.actions`` and the window's dialogs, zoom and mouse tools).
"""

from __future__ import annotations

from collections.abc import Callable

from radlens.imaging.geometry import PLANES
from radlens.imaging.windowing import presets
from radlens.viewer.qt import QtGui, QtWidgets

# The one keymap: key (Qt's portable key text) → action name. Each key is bound to its menu action,
# and the menus show the keys from here.
KEYMAP: dict[str, str] = {
    "Ctrl+O": "open_file",
    "Ctrl+Shift+O": "open_folder",
    "Ctrl+E": "export",
    "Ctrl+Q": "quit",
    "M": "toggle_layout",
    **{f"Ctrl+{i}": f"plane:{plane}" for i, plane in enumerate(PLANES, 1)},
    "F": "fit",
    "Z": "one_to_one",
    "A": "toggle_overlays",
    "Space": "cine",
    "T": "tags",
    **{p.key: f"preset:{p.name}" for p in presets()},
    "9": "series_window",
    "0": "auto_window",
    "I": "invert",
    "W": "tool:wl",
    "R": "tool:ruler",
    "O": "tool:roi",
    "L": "tool:polygon",
    "K": "tool:angle",
    "Shift+R": "tool:recist",
    "Backspace": "delete_measurement",
    "N": "next_finding",
    "P": "previous_finding",
    "B": "tool:brush",
    "E": "tool:eraser",
    "X": "tool:box",
    "G": "tool:grow",
    "H": "fill_holes",
    "Del": "delete_box",
    "Ctrl+Z": "undo",
    "Ctrl+Shift+Z": "redo",
}
_KEY_OF = {action: key for key, action in KEYMAP.items()}


def key_of(action: str) -> str | None:
    return _KEY_OF.get(action)


def menus() -> dict[str, list]:
    """Menu → entries: (text, action name), None for a separator, "recent" for the recent studies."""
    return {
        "&File": [
            ("Open file…", "open_file"),
            ("Open folder…", "open_folder"),
            ("Open findings…", "open_findings"),
            "recent",
            None,
            ("Export screenshot…", "export"),
            ("Export accepted findings…", "export_accepted"),
            None,
            ("Quit", "quit"),
        ],
        "&View": [
            ("Single view / 1×3", "toggle_layout"),
            *((plane.capitalize(), f"plane:{plane}") for plane in PLANES),
            ("Fit", "fit"),
            ("1:1", "one_to_one"),
            ("Show AI overlays", "toggle_overlays"),
            ("Cine", "cine"),
            ("DICOM tags…", "tags"),
        ],
        "&Window": [
            *((f"{p.name.capitalize()} {p.window.width:g}/{p.window.level:g}", f"preset:{p.name}") for p in presets()),
            ("Series window", "series_window"),
            ("Auto (percentile)", "auto_window"),
            ("Invert", "invert"),
        ],
        "&Edit": [
            ("Undo", "undo"),
            ("Redo", "redo"),
            None,
            ("Brush", "tool:brush"),
            ("Eraser", "tool:eraser"),
            ("Fill holes", "fill_holes"),
            ("Box", "tool:box"),
            ("Delete box", "delete_box"),
            ("Segment at a click", "tool:grow"),
            None,
            ("Save as training case…", "save_training_case"),
        ],
        "&Tools": [
            ("Window/level (left drag)", "tool:wl"),
            ("Ruler", "tool:ruler"),
            ("Ellipse ROI", "tool:roi"),
            ("Polygon ROI", "tool:polygon"),
            ("Angle", "tool:angle"),
            ("RECIST long/short axes", "tool:recist"),
            ("Delete measurement", "delete_measurement"),
            ("Export measurements…", "export_measurements"),
            None,
            ("Next finding", "next_finding"),
            ("Previous finding", "previous_finding"),
        ],
    }


def build_menus(
    bar: QtWidgets.QMenuBar, handlers: dict[str, Callable[[], None]], recent: QtWidgets.QMenu
) -> dict[str, QtGui.QAction]:
    """The menu bar's menus, each entry running its handler with its key from KEYMAP; action name → QAction."""
    actions: dict[str, QtGui.QAction] = {}
    for title, entries in menus().items():
        menu = bar.addMenu(title)
        for entry in entries:
            if entry is None:
                menu.addSeparator()
            elif entry == "recent":
                menu.addMenu(recent)
            else:
                text, name = entry
                act = menu.addAction(text)
                act.triggered.connect(handlers[name])
                if key_of(name):
                    act.setShortcut(QtGui.QKeySequence(key_of(name)))
                actions[name] = act
    return actions
