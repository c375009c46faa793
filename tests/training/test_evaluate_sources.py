"""radlens evaluate --record keeps in-generator and cross-source figures apart in a bundle's metadata."""

import json

from radlens.inference.bundle import update_metadata
from radlens.training.evaluate import generator_of, is_same_source, record_in_bundle
from tests.inference.inference_helpers import random_bundles

TRAINED_ON = "radlens phantom /data/brain-train --kind brain-mr-varied --cases 48 --seed 1"


def _doc(dataset: str, command: str | None, cases: int = 16) -> dict:
    return {
        "schema": "radlens.metrics/1", "bundle": {}, "per_case": {"c1": {}}, "task": "segmentation",
        "dataset": dataset, "data_command": command, "cases": cases, "summary": {"dice": 0.5},
    }  # fmt: skip


def test_the_generator_is_read_off_the_phantom_command():
    assert generator_of(TRAINED_ON) == "brain-mr-varied"
    assert generator_of("radlens phantom /x --kind chest-ct-independent --cases 4") == "chest-ct-independent"
    assert generator_of(None) is None and generator_of("nnUNetv2_convert_MSD_dataset -i Task06") is None


def test_same_folder_or_same_generator_is_in_generator_and_anything_else_cross_source(tmp_path):
    training = {"dataset": str(tmp_path / "train"), "data_command": TRAINED_ON}
    assert is_same_source(training, tmp_path / "train", None)
    assert is_same_source(training, tmp_path / "test", TRAINED_ON.replace("--seed 1", "--seed 1001"))
    assert not is_same_source(training, tmp_path / "test", "radlens phantom /t --kind brain-mr-independent")
    # Another kind of the same generator (its anatomy and intensity code) is still in-generator.
    assert is_same_source(training, tmp_path / "test", "radlens phantom /t --kind brain-mr-sequences --seed 9")
    assert not is_same_source(training, tmp_path / "real", None)  # real scans from elsewhere
    ensemble = {"ensemble_of": [{"dataset": "/a", "data_command": "radlens phantom /a --kind chest-ct"}]}
    assert is_same_source(ensemble, tmp_path / "t", "radlens phantom /t --kind chest-ct --seed 7")


def test_records_go_to_held_out_or_to_cross_source_with_their_case_counts(tmp_path):
    _, seg = random_bundles(tmp_path)

    def trained_on_varied(meta):
        meta["training"].update(dataset=str(tmp_path / "train"), data_command=TRAINED_ON)

    update_metadata(seg, trained_on_varied)
    held_out = _doc(str(tmp_path / "test"), TRAINED_ON.replace("--seed 1", "--seed 1001"), cases=32)
    other = _doc(str(tmp_path / "indep"), "radlens phantom /i --kind brain-mr-independent --seed 5")
    assert record_in_bundle(str(seg), held_out) == "in-generator"
    assert record_in_bundle(str(seg), other) == "cross-source"
    evaluation = json.loads((seg / "metadata.json").read_text())["evaluation"]
    assert evaluation["held_out"]["cases"] == 32 and evaluation["held_out"]["source"] == "in-generator"
    cross = evaluation["cross_source"]["brain-mr-independent"]
    assert cross["cases"] == 16 and cross["source"] == "cross-source" and "per_case" not in cross


def test_cases_the_bundle_refuses_are_counted_with_the_reason_and_score_as_nothing_found(tmp_path):
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_to_end
    from radlens.training.evaluate import evaluate

    _, seg = random_bundles(tmp_path)

    def t1_only(meta):
        meta["input"].update(modality="MR", normalization={"kind": "zscore"})
        meta["applicability"] = {"body_part": "brain", "sequence": "T1-like", "other_contrast": "refuse"}

    update_metadata(seg, t1_only)
    t2 = run_to_end(
        iter_write_phantoms(tmp_path / "t2", kind="brain-mr-independent", cases=2, seed=3, shape_zyx=(40, 96, 96))
    )
    doc = run_to_end(evaluate(str(seg), str(t2), device="cpu"))
    assert sorted(doc["refused"]) == sorted(doc["per_case"]) and len(doc["refused"]) == 2
    assert all("reads T1-like contrast only; this series looks T2-like" in why for why in doc["refused"].values())
    assert doc["summary"]["1"]["dice_mean"] == 0.0
