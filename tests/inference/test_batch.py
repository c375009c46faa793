"""``radlens infer`` on a folder of studies: one result folder per series, resumable, one worker per device."""

import json

import pytest
from inference_helpers import random_bundles, sphere_ct

from radlens.cli import main as radlens
from radlens.imaging.volume_io import write_volume


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three SYNTHETIC CTs named as nnU-Net names its inputs (CASE_0000.nii.gz), and a random-weight segmenter."""
    root = tmp_path_factory.mktemp("cohort")
    for i, name in enumerate(("lung_a", "lung_b", "lung_c")):
        write_volume(sphere_ct(centres_zyx=((10 + i, 24, 26),)), root / "images" / f"{name}_0000.nii.gz")
    _, segmenter = random_bundles(root)
    return root / "images", str(segmenter)


def test_each_series_gets_its_folder_and_a_rerun_skips_the_finished(cohort, tmp_path, capsys):
    images, model = cohort
    out = tmp_path / "out"
    assert radlens(["infer", str(images), "--out", str(out), "--model", model, "--nnunet-names"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lung_a", "lung_b", "lung_c"]
    doc = json.loads((out / "lung_b" / "findings.json").read_text())
    assert doc["input"]["path"].endswith("lung_b_0000.nii.gz") and doc["models"][0]["name"] == "rand-segmenter"
    assert "3 series: 0 done already, 3 to run" in capsys.readouterr().out

    (out / "lung_a" / "findings.json").unlink()
    kept = (out / "lung_c" / "findings.json").stat().st_mtime_ns
    assert radlens(["infer", str(images), "--out", str(out), "--model", model, "--nnunet-names"]) == 0
    printed = capsys.readouterr().out
    assert "3 series: 2 done already, 1 to run" in printed and "lung_a:" in printed and "lung_c:" not in printed
    assert (out / "lung_a" / "findings.json").is_file()
    assert (out / "lung_c" / "findings.json").stat().st_mtime_ns == kept


def test_several_devices_share_the_series_one_process_each(cohort, tmp_path, capsys):
    images, model = cohort
    out = tmp_path / "out"
    assert radlens(["infer", str(images), "--out", str(out), "--model", model, "--device", "cpu,cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lung_a_0000", "lung_b_0000", "lung_c_0000"]
    assert all((p / "findings.json").is_file() for p in out.iterdir())
    assert "to run on cpu, cpu" in capsys.readouterr().out


def test_an_unknown_device_is_refused_before_anything_runs(cohort, tmp_path, capsys):
    images, model = cohort
    assert radlens(["infer", str(images), "--out", str(tmp_path / "o"), "--model", model, "--device", "cuda:x"]) == 1
    assert "device 'cuda:x': unknown device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_shards_split_the_cohort_between_machines_without_overlap(cohort, tmp_path, capsys):
    images, model = cohort
    out = tmp_path / "out"
    for k, expected in ((1, ["lung_b"]), (0, ["lung_a", "lung_b", "lung_c"])):
        assert (
            radlens(["infer", str(images), "--out", str(out), "--model", model, "--nnunet-names", "--shard", f"{k}/2"])
            == 0
        )
        assert sorted(p.name for p in out.iterdir()) == expected
    assert "2 series (shard 0/2): 0 done already, 2 to run" in capsys.readouterr().out
    assert radlens(["infer", str(images), "--out", str(out), "--model", model, "--shard", "2/2"]) == 1
    assert "--shard 2/2: expected K/N with 0 ≤ K < N" in capsys.readouterr().err
