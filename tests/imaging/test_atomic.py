"""A write that fails half-way leaves the previous file as it was and no temporary file behind."""

import json
import os
import stat
from pathlib import Path

import pytest

from radlens.imaging.atomic import atomic_path, write_json
from radlens.imaging.errors import ImagingError


def test_failed_json_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "review.json"
    write_json(target, {"decisions": {"1": "accepted"}})
    with pytest.raises(TypeError):
        write_json(target, {"decisions": object()})
    assert json.loads(target.read_text()) == {"decisions": {"1": "accepted"}}
    assert [p.name for p in tmp_path.iterdir()] == ["review.json"]


def test_target_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "mask.nii.gz"
    with atomic_path(target, ".nii.gz") as tmp:
        assert tmp.endswith(".nii.gz")
        with open(tmp, "wb") as f:
            f.write(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"


def test_unwritable_folder_is_one_line_naming_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImagingError) as err:
        write_json(blocker / "inside.json", {})
    assert str(blocker) in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_honours_the_umask(tmp_path, umask_022):
    target = write_json(tmp_path / "findings.json", {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with atomic_path(tmp_path / "volume.nii.gz", ".nii.gz") as tmp:
        Path(tmp).write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "volume.nii.gz").stat().st_mode) == 0o644


def test_the_umask_is_read_without_the_proc_file(tmp_path, umask_022, monkeypatch):
    real_open = open

    def no_proc(file, *args, **kwargs):
        if file == "/proc/self/status":
            raise OSError("no /proc here")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    assert stat.S_IMODE(write_json(tmp_path / "a.json", {}).stat().st_mode) == 0o644
    assert os.umask(0o022) == 0o022  # and it was left as it was


def test_an_existing_file_keeps_its_mode(tmp_path, umask_022):
    target = tmp_path / "review.json"
    target.write_text("{}")
    target.chmod(0o640)
    write_json(target, {"b": 2})
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
