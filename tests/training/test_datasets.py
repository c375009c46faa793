"""Every labelled-folder layout is read from tiny fixtures written here; a broken folder lists all its problems."""

import json

import numpy as np
import pytest

from radlens.imaging.progress import run_to_end
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import write_volume
from radlens.training.datasets import DatasetError, read_dataset


def _volume(shape=(6, 8, 8), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), value=0, dtype=np.int16):
    return Volume(np.full(shape, value, dtype=dtype), spacing, origin, modality="CT")


def _labelled(shape=(6, 8, 8), values=(1,)):
    lab = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        lab[1 + i, 2:4, 2:4] = v
    return lab


def test_nnunet_phantom_folder_with_boxes_and_a_test_set(tmp_path):
    from radlens.imaging.phantom import iter_write_phantoms

    root = run_to_end(iter_write_phantoms(tmp_path / "ds", kind="chest-ct", cases=2, seed=3, shape_zyx=(16, 24, 24)))
    # A held-out test set in the same folder: imagesTs + labelsTs.
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    for suffix, folder in (("_0000.nii.gz", "imagesTr"), (".nii.gz", "labelsTr"), (".json", "labelsTr")):
        src = root / folder / f"chest_001{suffix}"
        dst = root / folder.replace("Tr", "Ts") / f"chest_101{suffix}"
        dst.write_bytes(src.read_bytes())
    ds = read_dataset(root, "detect")
    assert ds.layout == "nnunet" and ds.modality == "CT" and ds.synthetic and ds.instances
    assert ds.labels == {1: "nodule"}
    assert [c.case_id for c in ds.train_cases] == ["chest_000", "chest_001"]
    assert [c.case_id for c in ds.test_cases] == ["chest_101"]
    boxes = json.loads((root / "labelsTr" / "chest_000.json").read_text())["nodules"]
    assert [n.diameter_mm for n in ds.cases[0].nodules] == [b["diameter_mm"] for b in boxes]
    assert ds.cases[0].nodules[0].center_lps == tuple(boxes[0]["center_lps"])


def test_nnunet_folder_with_dicom_series_images(tmp_path):
    from radlens.imaging.phantom import iter_write_phantoms

    root = run_to_end(
        iter_write_phantoms(tmp_path / "dcm", kind="chest-ct", cases=1, seed=4, fmt="dicom", shape_zyx=(12, 20, 20))
    )
    ds = read_dataset(root, "segment")
    (case,) = ds.cases
    assert case.image.is_dir() and case.image.name == "chest_000_0000"
    from radlens.training.datasets import load_image

    assert load_image(case.image).shape_zyx == (12, 20, 20)


def test_decathlon_layout(tmp_path):
    root = tmp_path / "Task09_Spleen"
    for i in range(2):
        write_volume(_volume(), root / "imagesTr" / f"spleen_{i}.nii.gz")
        write_volume(_volume().with_array(_labelled()), root / "labelsTr" / f"spleen_{i}.nii.gz")
    meta = {
        "name": "Spleen",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "spleen"},
        "training": [
            {"image": f"./imagesTr/spleen_{i}.nii.gz", "label": f"./labelsTr/spleen_{i}.nii.gz"} for i in range(2)
        ],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = read_dataset(root, "segment")
    assert ds.layout == "msd" and ds.labels == {1: "spleen"} and ds.modality == "CT"
    assert [c.case_id for c in ds.cases] == ["spleen_0", "spleen_1"]


def test_luna16_layout_reads_world_coordinates_as_lps(tmp_path):
    root = tmp_path / "luna"
    write_volume(_volume(origin=(-10.0, -20.0, -30.0)), root / "subset0" / "1.2.3.mhd")
    write_volume(_volume(), root / "subset0" / "1.2.4.mhd")
    (root / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-7.5,-16.0,-24.0,5.2\n1.2.3,-6,-15,-22,4\n"
    )
    ds = read_dataset(root, "detect")
    assert ds.layout == "luna16"
    by_id = {c.case_id: c for c in ds.cases}
    assert [(n.center_lps, n.diameter_mm) for n in by_id["1.2.3"].nodules] == [
        ((-7.5, -16.0, -24.0), 5.2),
        ((-6.0, -15.0, -22.0), 4.0),
    ]
    assert by_id["1.2.4"].nodules == []
    with pytest.raises(DatasetError, match="segmentation needs label maps"):
        read_dataset(root, "segment")


def test_classification_layouts(tmp_path):
    folders = tmp_path / "by_folder"
    for label in ("normal", "abnormal"):
        write_volume(_volume(), folders / label / f"{label}_1.nii.gz")
    ds = read_dataset(folders, "classify")
    assert ds.layout == "classification" and ds.class_names == ["abnormal", "normal"]
    assert sorted((c.case_id, c.class_label) for c in ds.cases) == [("abnormal_1", "abnormal"), ("normal_1", "normal")]

    table = tmp_path / "by_table"
    write_volume(_volume(), table / "images" / "a.nii.gz")
    write_volume(_volume(), table / "images" / "b.nii.gz")
    (table / "studies.csv").write_text("case,label\nimages/a.nii.gz,pneumonia\nimages/b.nii.gz,clear\n")
    ds = read_dataset(table, "classify")
    assert sorted(c.class_label for c in ds.cases) == ["clear", "pneumonia"]


def test_a_broken_folder_lists_every_problem_in_one_error(tmp_path):
    root = tmp_path / "broken"
    meta = {
        "name": "x",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "tumour": 1},
        "file_ending": ".nii.gz",
    }
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps(meta))
    write_volume(_volume(), root / "imagesTr" / "ok_0000.nii.gz")
    write_volume(_volume().with_array(_labelled()), root / "labelsTr" / "ok.nii.gz")
    write_volume(_volume(), root / "imagesTr" / "nolabel_0000.nii.gz")
    write_volume(_volume(), root / "imagesTr" / "moved_0000.nii.gz")
    write_volume(_volume(spacing=(3.0, 1.0, 1.0)).with_array(_labelled()), root / "labelsTr" / "moved.nii.gz")
    write_volume(_volume(), root / "imagesTr" / "extra_0000.nii.gz")
    write_volume(_volume().with_array(_labelled(values=(1, 7))), root / "labelsTr" / "extra.nii.gz")
    write_volume(_volume().with_array(_labelled()), root / "labelsTr" / "orphan.nii.gz")
    with pytest.raises(DatasetError) as info:
        read_dataset(root, "segment")
    err = info.value
    text = str(err)
    assert len(err.problems) == 4, err.problems
    assert "\n" not in text and text.startswith(f"{root}: 4 problems: ")
    assert "nolabel.nii.gz: missing label for case nolabel" in text
    assert "moved.nii.gz: geometry differs from its image" in text
    assert "extra.nii.gz: unknown label value(s) [7]" in text
    assert "orphan.nii.gz: label without an image" in text


def test_the_command_line_reports_a_broken_folder_in_one_line(tmp_path, capsys):
    from radlens.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "dataset.json").write_text("{}")
    code = main(["train", "segment", str(tmp_path / "empty"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("radlens: error: ") and "imagesTr: missing folder" in err and "\n" not in err
    assert not (tmp_path / "b").exists()
