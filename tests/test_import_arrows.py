"""The import arrows of design section 1, checked in fresh interpreters (like napari's import contract)."""

import json
import subprocess
import sys

import pytest

QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt")
HEAVY = ("torch", "monai")

# package -> modules that must not be loaded after importing every module of it
FORBIDDEN = {
    "imaging": (*QT, *HEAVY, "inference", "training", "viewer"),
    "inference": (*QT, "training", "viewer"),
    "training": (*QT, "viewer"),
    "viewer": ("training",),
}


def _loaded_after_importing_all(package: str) -> set[str]:
    code = f"""
import importlib, json, pkgutil, sys
pkg = importlib.import_module({package!r})
for info in pkgutil.walk_packages(pkg.__path__, {package!r} + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_arrows_allow(package):
    loaded = _loaded_after_importing_all(package)
    assert not loaded & set(FORBIDDEN[package]), f"{package} pulls in {sorted(loaded & set(FORBIDDEN[package]))}"


def test_opening_the_viewer_module_does_not_import_torch():
    code = "import sys, viewer.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_command_line_info_is_light():
    """`radlens info` must not pay for Qt or torch."""
    code = (
        "import sys; from radlens.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
