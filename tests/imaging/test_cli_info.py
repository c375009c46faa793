"""`radlens info` as a user runs it: one JSON line per PATH, bad paths reported, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dicom_fixtures import write_stack

ROOT = Path(__file__).resolve().parents[2]


def _radlens(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "radlens", *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


def test_info_json_one_line_per_path_and_continues_after_a_bad_one(tmp_path):
    study = tmp_path / "study"
    uid, _ = write_stack(study, [0.0, 2.5, 5.0, 10.0], description="synthetic chest")
    (study / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    (study / "readme.txt").write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("a")
    missing = tmp_path / "missing"

    proc = _radlens("info", str(missing), str(study), str(empty), "--json")

    assert proc.returncode == 1  # some PATH failed
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(missing), str(study), str(empty)]
    assert lines[0] == {"path": str(missing), "ok": False, "error": "no such file or folder"}
    assert lines[2] == {"path": str(empty), "ok": False, "error": "no images found (1 files skipped)"}
    good = lines[1]
    assert good["ok"] is True
    (series,) = good["series"]
    assert series["uid"] == uid and series["modality"] == "CT" and series["description"] == "synthetic chest"
    assert series["shape_zyx"] == [4, 8, 8] and series["spacing_zyx"] == [2.5, 0.5, 0.5] and series["files"] == 4
    assert len(series["warnings"]) == 1 and series["warnings"][0].startswith("missing slices: gap of 5 mm")
    skipped = {Path(s["path"]).name: s["reason"] for s in good["skipped"]}
    assert skipped["readme.txt"] == "not a DICOM file"
    assert set(skipped) == {"readme.txt", "broken.dcm"} and "\n" not in skipped["broken.dcm"]


def test_info_text_and_exit_zero_when_all_paths_are_good(tmp_path):
    write_stack(tmp_path, [0.0, 1.0, 2.0], description="synthetic head")
    proc = _radlens("info", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"{tmp_path}: 1 series"
    assert "CT  synthetic head: 3×8×8 voxels (z×y×x), 1×0.5×0.5 mm, 3 files, volume" in proc.stdout
