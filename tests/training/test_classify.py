"""``radlens train classify``: a study-level classifier (per-slice CNN, bidirectional GRU) trains, writes a
bundle ``radlens infer`` runs, and reports per-study and per-slice figures; its folder checks; and
``radlens classification-set`` turning label maps into studies."""

from __future__ import annotations

import csv
import json
from argparse import Namespace

import numpy as np
import pytest

from radlens.cli import main
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import read_volume, write_volume
from radlens.training.datasets import DatasetError, read_dataset

SHAPE = (10, 32, 32)
SPACING = (3.0, 2.0, 2.0)
SMALL = ["--channels", "4", "8", "--patch", "1", "24", "24", "--spacing", "3", "2", "2"]


def _study(rng, lesion_slices=()) -> np.ndarray:
    """A head-like disc with noise; a bright blob on each of ``lesion_slices``."""
    _, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    a = np.where((y - 16) ** 2 + (x - 16) ** 2 < 12**2, 300.0, 10.0) + rng.normal(0, 10, SHAPE)
    cy, cx = rng.integers(10, 22, 2)
    for k in lesion_slices:
        a[k][(y[k] - cy) ** 2 + (x[k] - cx) ** 2 < 3**2] = 800.0
    return a.astype(np.float32)


def write_classification_set(root, n: int = 16, seed: int = 0, depths=None):
    """A folder in studies.csv form: half the studies with a lesion on a few slices, per-slice labels."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows, per_slice = [], {}
    for i in range(n):
        sick = i % 2 == 0
        first = int(rng.integers(1, SHAPE[0] - 4))
        slices = list(range(first, first + 3)) if sick else []
        name = f"case_{i:02d}"
        write_volume(Volume(_study(rng, slices), SPACING, (0.0, 0.0, 0.0), np.eye(3), modality="MR"),
                     root / "images" / f"{name}.nii.gz")  # fmt: skip
        rows.append((f"images/{name}.nii.gz", "lesion" if sick else "normal"))
        per_slice[name] = [int(k in slices) for k in range(SHAPE[0])]
    with open(root / "studies.csv", "w", newline="") as f:
        csv.writer(f).writerows([("case", "label"), *rows])
    (root / "slice_labels.json").write_text(json.dumps(per_slice))
    (root / "source.json").write_text(json.dumps({"name": "tiny", "modality": "MR", "synthetic": True}))
    return root


@pytest.fixture
def tiny_set(tmp_path):
    return write_classification_set(tmp_path / "tiny")


def test_the_cnn_loss_falls_in_a_few_iterations(tiny_set):
    import torch

    from radlens.imaging.progress import run_to_end
    from radlens.inference.metadata import InputSpec
    from radlens.inference.networks import build_network
    from radlens.training import classify

    torch.manual_seed(0)
    ds = read_dataset(tiny_set, "classify")
    spec = InputSpec.from_json(classify.input_block("MR", SPACING, (24, 24)))
    samples = [classify.prepare_case(c, spec, (24, 24), "lesion") for c in ds.cases]
    net = build_network("slice-gru-classifier", channels=[4, 8], hidden=8)
    losses = run_to_end(classify.train_cnn(net, samples, 60, 16, 1e-2, np.random.default_rng(0)))
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_train_classify_writes_a_bundle_infer_runs_with_a_curve_and_a_heat_map_on_the_input_grid(
    tiny_set, tmp_path, capsys
):
    out = tmp_path / "bundle"
    argv = ["train", "classify", str(tiny_set), "--out", str(out), "--epochs", "1", "--iterations", "30",
            "--batch", "8", "--context", "1", *SMALL]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["arch_kwargs"]["context"] == 1  # each slice seen with its neighbours, in training and below
    assert meta["task"] == "classification" and meta["labels"] == ["lesion"] and meta["negative_label"] == "normal"
    assert "weighting" in meta["training"]["class_balance"]["studies"]
    assert "sampling" in meta["training"]["class_balance"]["slices"]
    val = meta["evaluation"]["validation"]
    assert val["study"]["cases"] == len(meta["training"]["split"]["validation"]) == 3
    for level in ("study", "slice"):
        assert {"auc", "auc_ci95", "at_threshold", "reliability", "roc"} <= set(val[level])
        assert {"accuracy", "precision", "recall", "f1", "sensitivity", "specificity"} <= set(
            val[level]["at_threshold"]
        )
    assert (out / "evaluation.png").stat().st_size > 1000
    assert meta["thresholds"]["probability"] == val["study"]["at_threshold"]["threshold"]

    # radlens infer: a study on another grid (other spacing and origin) gets its curve and heat map on that grid.
    rng = np.random.default_rng(5)
    image = tmp_path / "other.nii.gz"
    study = _study(rng, [4, 5])
    write_volume(Volume(study, (2.5, 1.5, 1.7), (10.0, -4.0, 3.0), np.eye(3), modality="MR"), image)
    assert main(["infer", str(image), "--out", str(tmp_path / "found"), "--model", str(out)]) == 0
    doc = json.loads((tmp_path / "found" / "findings.json").read_text())
    [c] = doc["classifications"]
    assert 0.0 <= c["probability"] <= 1.0
    assert len(c["per_slice"]) == SHAPE[0]
    heat = read_volume(tmp_path / "found" / c["heatmap"])
    source = read_volume(image)
    assert heat.shape_zyx == source.shape_zyx
    np.testing.assert_allclose(heat.spacing_zyx, source.spacing_zyx, atol=1e-5)
    np.testing.assert_allclose(heat.origin_lps, source.origin_lps, atol=1e-4)
    assert float(heat.array.min()) >= 0.0 and float(heat.array.max()) <= 1.0
    # The heat is scaled to the slices' probabilities: never above the highest, strongest near its slice.
    slice_heat = heat.array.max(axis=(1, 2))
    assert slice_heat.max() <= max(c["per_slice"]) + 1e-3
    assert abs(int(np.argmax(slice_heat)) - int(np.argmax(c["per_slice"]))) <= 1

    # radlens evaluate scores it the same way: studies and slices.
    metrics_json = tmp_path / "m.json"
    assert main(["evaluate", str(out), str(tiny_set), "--out", str(metrics_json)]) == 0
    doc = json.loads(metrics_json.read_text())
    assert doc["summary"]["study"]["cases"] == 3 and doc["summary"]["slice"]["cases"] == 3 * SHAPE[0]


def test_init_fine_tunes_from_a_bundle_with_its_input(tiny_set, tmp_path):
    first = tmp_path / "first"
    base = ["--epochs", "1", "--iterations", "5", "--batch", "8"]
    assert main(["train", "classify", str(tiny_set), "--out", str(first), *base, *SMALL]) == 0
    second = tmp_path / "second"
    assert main(["train", "classify", str(tiny_set), "--out", str(second), *base, "--init", str(first)]) == 0
    meta = json.loads((second / "metadata.json").read_text())
    assert meta["training"]["init"]["path"] == str(first)
    assert meta["input"]["patch_zyx"] == [1, 24, 24] and meta["arch_kwargs"]["channels"] == [4, 8]


def test_the_gru_reads_studies_of_different_lengths_as_if_each_were_alone():
    import torch

    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    net = build_network("slice-gru-classifier", channels=[4, 8], hidden=8).eval()
    emb = torch.randn(3, 9, net.embedding_size)
    lengths = torch.tensor([9, 4, 6])
    padded = emb.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = 1e3  # what lies past a study's end must not matter
    with torch.no_grad():
        study, per_slice = net.sequence(padded, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone_study, alone_slices = net.sequence(emb[b : b + 1, :n])
            torch.testing.assert_close(study[b], alone_study[0])
            torch.testing.assert_close(per_slice[b, :n], alone_slices[0])


def test_a_mirrored_classifier_reads_a_study_alike_in_either_slice_order_and_either_side():
    """Mirrored over z and x, a study read back to front and left for right gets the same study
    probability and the same curve, slice by slice; an untrained classifier on its own does not."""
    import torch

    from radlens.inference.classify import probabilities
    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    net = build_network("slice-gru-classifier", channels=[4, 8], hidden=8).eval()
    slices = np.random.default_rng(0).normal(size=(7, 24, 24)).astype(np.float32)
    turned = np.ascontiguousarray(slices[::-1, :, ::-1])
    study, curve = probabilities(net, slices)
    study_turned, curve_turned = probabilities(net, turned)
    assert not np.allclose(curve, curve_turned[::-1], atol=1e-4)
    study, curve = probabilities(net, slices, mirror_axes=(0, 2))
    study_turned, curve_turned = probabilities(net, turned, mirror_axes=(0, 2))
    assert study == pytest.approx(study_turned, abs=1e-5)
    np.testing.assert_allclose(curve, curve_turned[::-1], atol=1e-5)


def test_slices_see_their_neighbours_within_their_own_study_only():
    import torch

    from radlens.inference.networks import build_network

    torch.manual_seed(0)
    net = build_network("slice-gru-classifier", channels=[4, 8], hidden=8, context=1).eval()
    x = torch.randn(2, 7, 24, 24)
    lengths = torch.tensor([7, 3])
    x[1, 3:] = 50.0  # padding: a slice at a study's end sees itself again, never this
    ctx = net.with_context(x, lengths)
    assert ctx.shape == (2, 7, 3, 24, 24)
    torch.testing.assert_close(ctx[1, 2], torch.stack([x[1, 1], x[1, 2], x[1, 2]]))
    torch.testing.assert_close(ctx[0, 0], torch.stack([x[0, 0], x[0, 0], x[0, 1]]))
    with torch.no_grad():
        study, per_slice = net(x, lengths)
        alone_study, alone_slices = net(x[1:, :3])
    torch.testing.assert_close(study[1], alone_study[0])
    torch.testing.assert_close(per_slice[1, :3], alone_slices[0])


def test_slice_labels_of_the_wrong_length_and_three_labels_are_named(tmp_path, capsys):
    root = write_classification_set(tmp_path / "bad", n=4)
    labels = json.loads((root / "slice_labels.json").read_text())
    labels["case_01"] = labels["case_01"][:-2]
    labels["nobody"] = [0]
    (root / "slice_labels.json").write_text(json.dumps(labels))
    with pytest.raises(DatasetError) as err:
        read_dataset(root, "classify")
    assert "case_01: 8 slice labels for 10 slices" in str(err.value)
    assert "case nobody is not in the dataset" in str(err.value)

    three = write_classification_set(tmp_path / "three", n=4)
    with open(three / "studies.csv", "a") as f:
        f.write("images/case_00.nii.gz,other\n")
    (three / "slice_labels.json").unlink()
    assert main(["train", "classify", str(three), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("radlens: error:") and "one label, present or absent" in err[0]


def test_the_positive_class_is_the_one_not_named_like_a_negative(tiny_set):
    from radlens.training.classify import positive_label
    from radlens.training.errors import TrainingError

    ds = read_dataset(tiny_set, "classify")
    assert positive_label(ds, None) == ("lesion", "normal")
    assert positive_label(ds, "normal") == ("normal", "lesion")
    ds.class_names = ["cat", "dog"]
    with pytest.raises(TrainingError, match="--positive"):
        positive_label(ds, None)


def test_classification_set_gives_studies_and_healthy_slabs_from_label_maps(tmp_path):
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_to_end
    from radlens.training.classify_data import iter_classification_set
    from radlens.training.errors import TrainingError

    src = run_to_end(iter_write_phantoms(tmp_path / "ph", kind="brain-mr-independent", cases=1, seed=3,
                                         shape_zyx=(48, 64, 64)))  # fmt: skip
    label = read_volume(src / "labelsTr" / "brain_000.nii.gz")
    mask, (_, dy, dx) = label.array > 0, label.spacing_zyx
    with pytest.raises(TrainingError, match="all of one class"):  # every independent case has lesions
        run_to_end(iter_classification_set(src, tmp_path / "whole"))
    slabs = run_to_end(iter_classification_set(src, tmp_path / "slabs", slab_mm=25.0))
    ds = read_dataset(slabs, "classify")
    assert {c.class_label for c in ds.cases} == {"lesion", "no-lesion"}
    for case in ds.cases:
        z0 = int(case.case_id.rsplit("_z", 1)[1])
        part = mask[z0 : z0 + len(case.slice_labels)]
        assert (case.class_label == "lesion") == bool(part.any())
        area = part.sum(axis=(1, 2)) * dy * dx
        assert case.slice_labels == [1 if a >= 10 else (-1 if a else 0) for a in area]
    made_by = json.loads((src / "dataset.json").read_text())["command"]
    assert json.loads((slabs / "source.json").read_text())["command"] == made_by
    assert ds.data_command == made_by and ds.modality == "MR" and ds.synthetic


def test_lesion_free_phantoms_are_healthy_and_leave_the_other_cases_as_they_were(tmp_path):
    from radlens.imaging.phantom import is_lesion_free, iter_write_phantoms
    from radlens.imaging.progress import run_to_end

    kw = {"kind": "brain-mr-varied", "cases": 4, "seed": 7, "shape_zyx": (48, 64, 64)}
    plain = run_to_end(iter_write_phantoms(tmp_path / "plain", **kw))
    mixed = run_to_end(iter_write_phantoms(tmp_path / "mixed", lesion_free=0.5, **kw))
    healthy = [i for i in range(4) if is_lesion_free(7, i, 0.5)]
    assert 0 < len(healthy) < 4
    for i in range(4):
        a = read_volume(plain / "imagesTr" / f"brain_{i:03d}_0000.nii.gz").array
        b = read_volume(mixed / "imagesTr" / f"brain_{i:03d}_0000.nii.gz").array
        label = read_volume(mixed / "labelsTr" / f"brain_{i:03d}.nii.gz").array
        if i in healthy:
            assert not label.any() and not np.array_equal(a, b)
        else:
            np.testing.assert_array_equal(a, b)
            assert label.any()
    assert "--lesion-free 0.5" in json.loads((mixed / "dataset.json").read_text())["command"]


def test_metrics_of_a_classifier():
    from radlens.training import metrics

    scores, labels = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2], [0, 0, 1, 1, 1, 0]
    assert metrics.roc_auc(scores, labels) == pytest.approx(8 / 9)
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half
    assert metrics.roc_auc([0.1, 0.2], [1, 1]) is None
    lo, hi = metrics.bootstrap_auc_ci(scores, labels, n=200)
    assert lo <= 8 / 9 <= hi
    r = metrics.binary_at(scores, labels, 0.38)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 2)
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == pytest.approx(2 / 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(2 / 3)
    rel = metrics.reliability([0.05, 0.15, 0.95, 0.92], [0, 0, 1, 0], bins=10)
    assert [b["count"] for b in rel["bins"]] == [1, 1, 2]
    assert rel["bins"][-1]["observed"] == 0.5
    assert rel["ece"] == pytest.approx((0.05 + 0.15 + 2 * abs(0.935 - 0.5)) / 4)
    assert metrics.youden_threshold(scores, labels) == pytest.approx(0.8)


def test_resume_is_refused_in_one_line(tiny_set, tmp_path):
    from radlens.training import classify
    from radlens.training.errors import TrainingError

    args = Namespace(resume=True)
    with pytest.raises(TrainingError, match="--resume"):
        next(classify.train(args, "x"))
