"""The independent SYNTHETIC generator: deterministic, varied, labels exact and on the image's grid,
contrasts a reader would expect, and written without the main generator's code."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from radlens.imaging.phantom import Phantom
from radlens.imaging.phantom_independent import make_independent_brain_mr, make_independent_chest_ct
from radlens.imaging.phantom_independent_ct import TYPES

TINY_CHEST = (24, 64, 64)
CHEST = (80, 192, 192)  # the case's field of view at about 2.4 mm: enough to see the nodules
BRAIN = (40, 128, 128)
TYPE_SEEDS = (1, 3, 10)  # between them, all six nodule types


@pytest.fixture(scope="module")
def tiny_chests():
    return {s: make_independent_chest_ct(s, TINY_CHEST) for s in (*TYPE_SEEDS, 0, 2, 5)}


@pytest.fixture(scope="module")
def chests():
    return {s: make_independent_chest_ct(s, CHEST) for s in (1, 3)}


@pytest.fixture(scope="module")
def brains():
    return {s: make_independent_brain_mr(s, BRAIN) for s in (0, 1)}


def _labels_match_findings(ph: Phantom) -> None:
    """Chest: instance map 1..N whose boxes are the findings'; brain: lesion map (1) covering every box."""
    assert ph.labels.shape == ph.volume.shape_zyx and ph.labels.dtype == np.uint8
    assert [f.id for f in ph.findings] == list(range(1, len(ph.findings) + 1))
    chest = ph.kind == "chest-ct"
    ids = sorted(int(v) for v in np.unique(ph.labels) if v)
    assert ids == ([f.id for f in ph.findings] if chest else [1])
    for f in ph.findings:
        value = f.id if chest else 1
        assert ph.labels[tuple(round(c) for c in f.center_zyx)] == value
        assert np.allclose(ph.volume.index_to_lps(f.center_zyx), f.center_lps)
        box = tuple(slice(a, b) for a, b in zip(f.box_zyx[:3], f.box_zyx[3:], strict=True))
        if chest:
            zz, yy, xx = np.nonzero(ph.labels == f.id)
            assert f.box_zyx == (zz.min(), yy.min(), xx.min(), zz.max() + 1, yy.max() + 1, xx.max() + 1)
        else:
            assert (ph.labels[box] == 1).any()


def test_same_seed_same_case_and_another_seed_another():
    for make, shape in ((make_independent_chest_ct, TINY_CHEST), (make_independent_brain_mr, (24, 64, 64))):
        a, b, c = (make(s, shape) for s in (7, 7, 8))
        assert np.array_equal(a.volume.array, b.volume.array) and np.array_equal(a.labels, b.labels)
        assert a.findings == b.findings and a.volume.series_uid == b.volume.series_uid
        assert not np.array_equal(a.volume.array, c.volume.array)
        assert a.volume.series_uid != c.volume.series_uid


def test_chest_nodules_come_in_six_types_and_all_sizes(tiny_chests):
    found = [f for ph in tiny_chests.values() for f in ph.findings]
    assert {f.kind for s in TYPE_SEEDS for f in tiny_chests[s].findings} == set(TYPES)
    sizes = np.array([f.diameter_mm for f in found])
    assert sizes.min() >= 4.0 and sizes.max() <= 28.0 and sizes.max() > 20
    assert np.mean(sizes < 6) >= 1 / 3
    assert all(1 <= len(ph.findings) <= 5 for ph in tiny_chests.values())
    for ph in tiny_chests.values():
        _labels_match_findings(ph)
        assert ph.volume.modality == "CT" and ph.volume.array.dtype == np.int16
        assert "SYNTHETIC" in ph.volume.description and "independent generator" in ph.volume.description


def test_default_chest_grid_is_fine_in_plane_and_thin_sliced():
    ph = make_independent_chest_ct(4)
    dz, dy, dx = ph.volume.spacing_zyx
    assert 0.66 <= dy == dx <= 0.85 and dz in (2.0, 2.5)
    assert 300 <= dy * ph.volume.shape_zyx[2] <= 385
    assert np.prod(ph.volume.shape_zyx) <= 60e6
    assert ph.labels.shape == ph.volume.shape_zyx


def test_nodules_lie_in_the_lungs_with_their_hounsfield_units(chests):
    seen = set()
    for ph in chests.values():
        _labels_match_findings(ph)
        hu = ph.volume.array
        assert np.median(hu[:3, :3, :3]) < -900  # air around the patient
        for f in ph.findings:
            mask = ph.labels == f.id
            shell = ndimage.binary_dilation(mask, iterations=2) & ~mask
            inside = hu[mask]
            seen.add(f.kind)
            if f.kind == "juxta-pleural":
                assert (hu[shell] > -200).any() and (hu[shell] < -600).any(), f  # chest wall and lung
                assert f.touches == "pleura"
            else:
                assert np.median(hu[shell]) < -500, f  # lung around it
            if f.kind == "ground-glass" and f.diameter_mm >= 6:
                assert -750 <= np.median(inside) <= -300, f
            if f.kind == "calcified":
                assert inside.max() > 200, f
            if f.kind == "part-solid" and f.diameter_mm >= 8:
                assert inside.max() > np.median(inside) + 150 and np.median(inside) < -200, f  # core in a halo
    assert {"calcified", "part-solid", "ground-glass"} <= seen


def test_brain_is_t2_like_anisotropic_and_labelled(brains):
    for ph in brains.values():
        v = ph.volume
        assert v.modality == "MR" and v.array.dtype == np.int16 and v.array.min() >= 0
        assert "SYNTHETIC" in v.description and "independent generator" in v.description
        _labels_match_findings(ph)
        assert 2 <= len(ph.findings) <= 6
        for f in ph.findings:
            assert 4.0 <= f.diameter_mm <= 25.0
            assert f.kind in ("periventricular", "juxtacortical", "tumour")
            box = tuple(slice(a, b) for a, b in zip(f.box_zyx[:3], f.box_zyx[3:], strict=True))
            lesion = v.array[box][ph.labels[box] == 1]
            assert np.max(lesion) > np.median(v.array[v.array > 200]), f  # hyperintense to the brain

        def median_at(p_xyz, v=v):
            z, y, x = np.rint(v.lps_to_index(p_xyz)).astype(int)
            return float(np.median(v.array[z, y - 1 : y + 2, x - 1 : x + 2]))

        for side in (-1, 1):  # lateral ventricle body (CSF) against the centrum semiovale (white matter)
            assert median_at((side * 13, 3, 20)) > 1.6 * median_at((side * 24, -20, 28))
        dz, dy, dx = v.spacing_zyx
        assert dz > 2 * dy and dy == dx  # thick slices (3-5 mm by default, 0.9 mm pixels)


def test_brain_lesion_kinds_include_a_tumour(brains):
    kinds = {f.kind for ph in brains.values() for f in ph.findings}
    assert "tumour" in kinds and kinds & {"periventricular", "juxtacortical"}


def test_independent_generator_does_not_use_the_main_generators_anatomy():
    root = Path(__file__).resolve().parents[2] / "imaging"
    forbidden = {"phantom_chest", "phantom_brain", "phantom_fields"}
    files = sorted(root.glob("phantom_independent*.py"))
    assert len(files) >= 2
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = {(node.module or "").rsplit(".", 1)[-1], *(a.name for a in node.names)}
            elif isinstance(node, ast.Import):
                names = {a.name.rsplit(".", 1)[-1] for a in node.names}
            else:
                continue
            assert not names & forbidden, (path.name, names)
