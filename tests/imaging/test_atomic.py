"""A write that fails half-way leaves the previous file as it was and no temporary file behind."""

import json

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
