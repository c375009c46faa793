"""The import arrows of the architecture (docs/architecture.md), checked two ways, like napari's import
contract: statically, every import statement of a package's source (including those inside functions,
which run only later), and dynamically, what a fresh interpreter has loaded after importing every
module of the package."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import radlens

QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt")
HEAVY = ("torch", "monai")

# package -> what none of its modules may import, at module level or inside a function
FORBIDDEN = {
    "radlens.imaging": (*QT, *HEAVY, "radlens.inference", "radlens.training", "radlens.viewer", "radlens.pacs"),
    "radlens.inference": (*QT, "radlens.training", "radlens.viewer", "radlens.pacs"),
    "radlens.training": (*QT, "radlens.viewer", "radlens.pacs"),
    "radlens.pacs": (*QT, *HEAVY, "radlens.inference", "radlens.training", "radlens.viewer"),
    "radlens.viewer": ("radlens.training",),
}
# The viewer loads torch only when a model first runs: at module level it may not.
FORBIDDEN_AT_IMPORT = {"radlens.viewer": HEAVY}


def _package_dir(package: str) -> Path:
    module = __import__(package, fromlist=["_"])
    return Path(module.__file__).parent


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in one file, relative imports resolved against ``package``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _matches(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_source_line_of_a_package_imports_across_its_arrows(package):
    root = _package_dir(package)
    bad = [
        f"{path.relative_to(root.parent)}:{line}: {name}"
        for path in sorted(root.rglob("*.py"))
        for line, name in _imports(path, package)
        if _matches(name, FORBIDDEN[package])
    ]
    assert not bad, f"{package} imports across its arrows:\n" + "\n".join(bad)


def test_only_the_entry_point_reaches_into_the_viewer():
    """Nothing imports the viewer but itself and the console script's dispatcher (``radlens view``)."""
    packages = ("radlens.imaging", "radlens.inference", "radlens.training", "radlens.pacs", "radlens.resources")
    bad = [
        f"{path}:{line}: {name}"
        for package in packages
        for path in sorted(_package_dir(package).rglob("*.py"))
        for line, name in _imports(path, package)
        if _matches(name, ("radlens.viewer",))
    ]
    core = Path(radlens.__file__).parent
    bad += [
        f"{path}:{line}: {name}"
        for path in sorted(core.glob("*.py"))
        for line, name in _imports(path, "radlens")
        if _matches(name, ("radlens.viewer",))
    ]
    assert not bad


def test_no_bare_imports_of_the_subpackages():
    """``import imaging`` would find whatever ``imaging`` comes first on sys.path, not ours."""
    repo = Path(__file__).resolve().parents[1]
    bare = ("imaging", "inference", "training", "viewer", "pacs", "resources")
    bad = [
        f"{path.relative_to(repo)}:{line}: {name}"
        for folder in ("radlens", *bare, "tests", "bench")
        for path in sorted((repo / folder).rglob("*.py"))
        for line, name in _imports(path, "radlens")
        if _matches(name, bare)
    ]
    assert not bad, "\n".join(bad)


def _loaded_after_importing_all(package: str) -> set[str]:
    code = f"""
import importlib, json, pkgutil, sys
pkg = importlib.import_module({package!r})
for info in pkgutil.walk_packages(pkg.__path__, {package!r} + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_loads_only_what_its_arrows_allow(package):
    forbidden = (*FORBIDDEN[package], *FORBIDDEN_AT_IMPORT.get(package, ()))
    loaded = sorted(m for m in _loaded_after_importing_all(package) if _matches(m, forbidden))
    assert not loaded, f"{package} pulls in {loaded}"


@pytest.mark.parametrize(
    "module",
    ["radlens.viewer.controller", "radlens.viewer.state", "radlens.viewer.layers", "radlens.viewer.protocols"],
)
def test_the_viewers_model_and_controller_load_no_qt(module):
    """Like napari's layer models: what the viewer shows and decides is testable without Qt."""
    qt = {*QT, "shiboken6"}
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {qt!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_command_line_info_is_light():
    """`radlens info` must not pay for Qt or torch."""
    code = (
        "import sys; from radlens.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
