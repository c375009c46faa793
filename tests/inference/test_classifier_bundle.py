"""The shipped study-level classifier (resources/models/brain-mr-lesion-classifier) loads from its safetensors
and metadata, and runs on demo-size SYNTHETIC brains: a curve per slice and a heat map on the study's grid,
a brain with lesions scored above a healthy one, and its figures recorded in-generator and cross-source apart."""

from __future__ import annotations

import numpy as np
import pytest

from radlens.imaging.phantom import case_seed, make_brain_mr, make_varied_brain_mr
from radlens.imaging.progress import run_to_end
from radlens.inference.bundle import builtin_models_dir, load_bundle
from radlens.inference.engine import run_bundle

NAME = "brain-mr-lesion-classifier"
DEMO = (96, 128, 128)


@pytest.fixture(scope="module")
def bundle():
    import torch

    torch.set_num_threads(1)
    return load_bundle(builtin_models_dir() / NAME)


def test_it_is_shipped_with_its_figures_apart(bundle):
    meta = bundle.metadata
    assert meta.task == "classification" and meta.labels == ("lesion",) and meta.arch == "slice-gru-classifier"
    ev = meta.evaluation
    held_out, cross = ev["held_out"], ev["cross_source"]["brain-mr-independent"]
    assert held_out["source"] == "in-generator" and cross["source"] == "cross-source"
    for figures in (held_out, cross):
        assert figures["cases"] >= 40 and "radlens phantom" in figures["data_command"]
        assert figures["summary"]["study"]["auc"] is not None and figures["summary"]["study"]["auc_ci95"]
    assert "class_balance" in meta.training and meta.training["command"].startswith("radlens train classify")


def test_it_runs_on_demo_size_brains_and_ranks_lesions_above_healthy(bundle):
    sick = make_varied_brain_mr(9001, DEMO).volume
    healthy = make_varied_brain_mr(9001, DEMO, lesion_free=True).volume
    found = {}
    for name, volume in (("sick", sick), ("healthy", healthy)):
        findings = run_to_end(run_bundle(volume, bundle))
        [c] = findings.classifications
        assert len(c.per_slice) == volume.shape_zyx[0]
        assert c.heatmap.shape == volume.shape_zyx and c.heatmap.dtype == np.float32
        assert c.heatmap.min() >= 0.0 and c.heatmap.max() <= 1.0
        found[name] = c
    assert found["sick"].probability > found["healthy"].probability
    assert found["sick"].heatmap.max() > found["healthy"].heatmap.max()


def test_the_demo_brain_is_called_abnormal(bundle):
    """The T1-like brain of ``radlens --demo`` (its first case of seed 0, with lesions) at its own size."""
    volume = make_brain_mr(case_seed(0, 0)).volume
    [c] = run_to_end(run_bundle(volume, bundle)).classifications
    assert c.probability >= bundle.info.threshold
