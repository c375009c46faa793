"""The applicability check: a bundle runs, runs with a warning, or is refused, as its metadata declares."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference_helpers import DETECTOR_KWARGS, SEGMENTER_KWARGS, metadata, sphere_ct  # noqa: E402

from radlens.imaging.phantom import make_brain_mr  # noqa: E402
from radlens.imaging.phantom_independent import make_independent_brain_mr  # noqa: E402
from radlens.imaging.progress import run_to_end  # noqa: E402
from radlens.imaging.volume import Volume  # noqa: E402
from radlens.inference import engine  # noqa: E402
from radlens.inference.applicability import check, sequence_of  # noqa: E402
from radlens.inference.bundle import load_bundle, save_bundle  # noqa: E402
from radlens.inference.errors import BundleError  # noqa: E402
from radlens.inference.metadata import BundleMetadata  # noqa: E402
from radlens.inference.networks import build_network  # noqa: E402


def brain_meta(**applicability) -> BundleMetadata:
    meta = metadata("brain-seg", "segmentation", "unet3d-seg", SEGMENTER_KWARGS, labels=["lesion"])
    meta["input"] = {"modality": "MR", "spacing_zyx": [2.0, 2.0, 2.0], "patch_zyx": [16, 32, 32],
                     "normalization": {"kind": "zscore"}}  # fmt: skip
    meta["applicability"] = {"body_part": "brain", **applicability}
    return BundleMetadata.from_json(meta)


def mr(description: str, slice_mm: float = 1.0) -> Volume:
    a = np.random.default_rng(0).uniform(0, 500, (12, 16, 16)).astype(np.float32)
    return Volume(a, (slice_mm, 1.0, 1.0), modality="MR", description=description, source="synthetic.nii")


@pytest.mark.parametrize(
    ("description", "sequence"),
    [("AX T2 FLAIR", "FLAIR-like"), ("sag 3D MPRAGE", "T1-like"), ("t2_tse_tra", "T2-like"),
     ("ep2d_diff DWI", "diffusion"), ("localizer", None)],
)  # fmt: skip
def test_the_contrast_is_read_from_the_series_description(description, sequence):
    assert sequence_of(description) == sequence


def test_a_t1_model_on_a_flair_series_warns_with_both_contrasts():
    verdict = check(mr("AX T2 FLAIR"), brain_meta(sequence="T1-like"))
    assert verdict.action == "warn" and verdict.runs
    (reason,) = verdict.reasons
    assert "trained on T1-like contrast" in reason and "looks FLAIR-like" in reason and "AX T2 FLAIR" in reason


def test_a_t1_model_on_an_unnamed_contrast_asks_the_reader_to_check():
    (reason,) = check(mr(""), brain_meta(sequence="T1-like")).reasons
    assert "does not say its contrast" in reason


def test_a_t1_model_on_an_unnamed_t2_like_brain_warns_from_its_fluid():
    """A NIfTI names no contrast; its bright ventricles say it is not the T1 the model learned."""
    t2 = dataclasses.replace(make_independent_brain_mr(0, (40, 96, 96)).volume, description="")
    (reason,) = check(t2, brain_meta(sequence="T1-like")).reasons
    assert reason == (
        "brain-seg was trained on T1-like contrast; this series looks T2-like: its fluid is brighter than the "
        "brain around it"
    )
    assert check(t2, brain_meta(sequence="T2-like")).action == "run"


def test_a_t1_model_on_an_unnamed_t1_like_brain_runs_without_a_contrast_warning():
    t1 = dataclasses.replace(make_brain_mr(0).volume, description="")
    assert check(t1, brain_meta(sequence="T1-like")).action == "run"
    (reason,) = check(t1, brain_meta(sequence="T2-like")).reasons
    assert "looks T1- or FLAIR-like: its fluid is darker than the brain around it" in reason


def test_the_contrast_a_reader_says_outweighs_the_description_and_the_image():
    t1 = dataclasses.replace(make_brain_mr(0).volume, description="sag MPRAGE", contrast="T2-like")
    (reason,) = check(t1, brain_meta(sequence="T1-like")).reasons
    assert reason == "brain-seg was trained on T1-like contrast; the reader says this series is T2-like"
    assert check(t1, brain_meta(sequence="T2-like")).action == "run"


def test_a_model_that_says_so_refuses_another_contrast_but_not_an_unnamed_one():
    meta = brain_meta(sequence="T1-like", other_contrast="refuse")
    t2 = dataclasses.replace(make_independent_brain_mr(0, (40, 96, 96)).volume, description="")
    assert check(t2, meta).reasons == (
        "refused: brain-seg reads T1-like contrast only; this series looks T2-like: its fluid is brighter than "
        "the brain around it (if it is not, say its contrast in 'Series is')",
    )
    assert check(dataclasses.replace(t2, contrast="T1-like"), meta).action == "run"  # the reader's word
    assert check(dataclasses.replace(t2, contrast="FLAIR-like"), meta).reasons == (
        "refused: brain-seg reads T1-like contrast only; the reader says this series is FLAIR-like",
    )
    assert check(mr("AX T2 FLAIR"), meta).action == "refuse"
    assert check(mr(""), meta).action == "warn"  # unnamed and unclear: run, and say so
    with pytest.raises(BundleError, match="other_contrast must be warn or refuse"):
        brain_meta(sequence="T1-like", other_contrast="maybe")


def test_a_model_of_several_contrasts_runs_on_each_and_names_them_all_when_refusing():
    t1 = dataclasses.replace(make_brain_mr(0).volume, description="")
    t2 = dataclasses.replace(make_independent_brain_mr(0, (40, 96, 96)).volume, description="")
    every = brain_meta(sequence=["T1-like", "T2-like", "FLAIR-like"], other_contrast="refuse")
    assert check(t1, every).action == check(t2, every).action == check(mr(""), every).action == "run"
    (reason,) = check(mr("ep2d_diff DWI"), every).reasons
    assert reason.startswith("refused: brain-seg reads T1-like or T2-like or FLAIR-like contrast only; ")
    dark_fluid = brain_meta(sequence=["T1-like", "FLAIR-like"])
    assert check(t1, dark_fluid).action == "run"
    (reason,) = check(t2, dark_fluid).reasons
    assert reason.startswith("brain-seg was trained on T1-like or FLAIR-like contrast; this series looks T2-like")
    with pytest.raises(BundleError, match="sequence must be a contrast or a list of them"):
        brain_meta(sequence=[])


def test_an_any_contrast_model_runs_on_every_sequence_without_a_warning():
    for description in ("AX T2 FLAIR", "MPRAGE", ""):
        assert check(mr(description), brain_meta(sequence="any")).action == "run"


def test_a_volume_model_is_refused_on_a_single_image():
    scout = Volume(np.zeros((1, 64, 64), np.float32), modality="MR", description="localizer")
    assert check(scout, brain_meta(sequence="any")).reasons == (
        "refused: brain-seg reads MR volumes; this series is a single image",
    )


def test_slices_thicker_than_trained_warn():
    meta = brain_meta(sequence="any", slice_thickness_mm=[1.0, 6.0])
    assert check(mr("T1", slice_mm=5.0), meta).action == "run"
    (reason,) = check(mr("T1", slice_mm=8.0), meta).reasons
    assert "slices of 1-6 mm" in reason and "8.0 mm" in reason


def test_a_model_for_another_modality_is_refused():
    verdict = check(sphere_ct(), brain_meta(sequence="any"))
    assert not verdict.runs
    assert verdict.reasons == ("refused: brain-seg is made for MR; this series is CT",)


def test_a_series_without_a_modality_runs_with_a_warning():
    volume = dataclasses.replace(mr("T1"), modality="OT")
    (reason,) = check(volume, brain_meta(sequence="any")).reasons
    assert "names no modality" in reason and "as MR" in reason


def test_the_engine_does_not_run_a_refused_model_and_says_why(tmp_path, monkeypatch):
    meta = metadata("det", "detection", "centernet3d", DETECTOR_KWARGS)
    bundle = load_bundle(save_bundle(tmp_path / "det", build_network("centernet3d", **DETECTOR_KWARGS), meta))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a refused model ran")
        yield

    monkeypatch.setattr(engine, "sliding_windows", must_not_run)
    found = run_to_end(engine.run_bundle(mr("T1"), bundle)).to_json()
    assert found["detections"] == [] and found["segmentations"] == []
    assert found["models"][0]["warnings"] == ["refused: det is made for CT; this series is MR"]
