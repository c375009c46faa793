"""A volume file that names no modality: a CT is recognised from its Hounsfield units, nothing else is;
an MR's fluid is recognised as brighter or darker than the brain."""

from pathlib import Path

import nibabel
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from radlens.imaging import load
from radlens.imaging.modality import BRIGHT, DARK, fluid_contrast, guess_ct
from radlens.imaging.phantom import make_brain_mr, make_chest_ct
from radlens.imaging.phantom_independent import make_independent_brain_mr
from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import read_volume, write_volume


def _without_modality(volume: Volume, path) -> Volume:
    """Written the way other tools write NRRD: the grid and the values, no modality."""
    write_volume(volume.with_array(volume.array, modality="OT"), path)
    return read_volume(path)


@pytest.mark.parametrize("name", ["693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_a_real_ct_saved_as_nrrd_reads_as_ct_with_the_reason(tmp_path, name):
    ct = load(get_testdata_file(name))
    assert ct.modality == "CT"
    read = _without_modality(ct, tmp_path / "ct.nrrd")
    assert read.modality == "CT"
    assert any("read as CT from its intensities" in w for w in read.warnings)
    np.testing.assert_array_equal(read.array, ct.array)


def test_a_synthetic_chest_ct_reads_as_ct(tmp_path):
    read = _without_modality(make_chest_ct(0).volume, tmp_path / "chest.nii.gz")
    assert read.modality == "CT"


def test_mr_stays_unknown_rather_than_guessed(tmp_path):
    """MR intensities are arbitrary: neither a real MR slice nor a synthetic brain MR reads as CT."""
    assert guess_ct(load(get_testdata_file("MR_small.dcm")).array) is None
    read = _without_modality(make_brain_mr(0).volume, tmp_path / "brain.nrrd")
    assert read.modality == "OT" and not read.warnings


def test_values_without_air_or_without_tissue_are_not_ct():
    rng = np.random.default_rng(0)
    soft_only = rng.normal(40, 20, (8, 32, 32))
    air_only = rng.normal(-1000, 20, (8, 32, 32))
    assert guess_ct(soft_only) is None and guess_ct(air_only) is None
    assert guess_ct(np.concatenate([soft_only, air_only])) is not None


EPI = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"


def test_fluid_is_dark_on_the_t1_like_brain_and_bright_on_the_t2_like_one():
    for seed in (0, 1):
        t1 = make_brain_mr(seed).volume
        assert fluid_contrast(t1.array, t1.spacing_zyx) == DARK
        t2 = make_independent_brain_mr(seed, (40, 96, 96)).volume
        assert fluid_contrast(t2.array, t2.spacing_zyx) == BRIGHT


def test_fluid_is_bright_on_a_real_t2_star_weighted_brain():
    """nibabel's example4d: a real EPI brain (FSL's test data), whose ventricles are bright."""
    epi = read_volume(EPI)
    assert fluid_contrast(epi.array, epi.spacing_zyx) == BRIGHT


def test_fluid_contrast_is_not_guessed_without_a_head():
    noise = np.random.default_rng(0).uniform(100, 500, (24, 64, 64)).astype(np.float32)
    assert fluid_contrast(noise, (2.0, 2.0, 2.0)) is None
    assert fluid_contrast(np.zeros((8, 32, 32), np.int16), (1.0, 1.0, 1.0)) is None
