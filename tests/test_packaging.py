"""The wheel installs one top-level package, ``radlens``, and a user's own folders cannot shadow its parts."""

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = out / "source"
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "docs")
    shutil.copytree(REPO, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, cwd=out,
    )
    (found,) = out.glob("radlens-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"radlens"}
    assert "radlens/resources/presets.json" in names
    assert any(n.startswith("radlens/resources/models/") and n.endswith("model.safetensors") for n in names)


def test_installed_radlens_ignores_decoy_packages_in_the_working_folder(wheel, tmp_path):
    """A user's own ``training/`` or ``imaging/`` in the current folder (sys.path[0]) must not be imported."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    site = next((env / "lib").glob("python*/site-packages"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    # The dependencies (numpy, torch, ...) come from this interpreter's site-packages, added as a
    # plain path: its .pth files (among them this checkout's editable install) are not run.
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    (site / "deps.pth").write_text(deps + "\n")
    work = tmp_path / "work"
    for decoy in ("training", "imaging", "inference", "resources"):
        (work / decoy).mkdir(parents=True)
        (work / decoy / "__init__.py").write_text(f"raise ImportError('the decoy {decoy} was imported')\n")
    code = (
        "import radlens.training, radlens.imaging, radlens.resources, importlib.resources as r; "
        "print(radlens.training.__file__); print(radlens.imaging.__file__); "
        "print(r.files('radlens.resources').joinpath('presets.json').is_file())"
    )
    out = subprocess.run(
        [str(env / "bin" / "python"), "-c", code], cwd=work, capture_output=True, text=True, check=True
    )
    training, imaging, presets = out.stdout.split()
    assert Path(training).is_relative_to(site) and Path(imaging).is_relative_to(site)
    assert presets == "True"
