"""The SYNTHETIC chest CT's variety: every Fleischner nodule type and size, nodules only in the lungs,
fields of view into the abdomen, and the acquisition (slice thickness with its partial volume)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radlens.imaging.phantom import make_chest_ct
from radlens.imaging.phantom_chest import (
    DEFAULT_SHAPE_ZYX,
    EXTENT_ZYX,
    KINDS,
    build_chest,
    diaphragm_z,
    draw_acquisition,
    draw_fissures,
    in_lung,
    plan_nodules,
    vessel_trees,
)
from radlens.imaging.phantom_fields import Grid

GRID = Grid(DEFAULT_SHAPE_ZYX, tuple(e / n for e, n in zip(EXTENT_ZYX, DEFAULT_SHAPE_ZYX, strict=True)))
SEEDS = (0, 1, 2, 3, 5, 7)  # between them, every rendered type


@pytest.fixture(scope="module")
def cases():
    """seed → (HU, labels, nodules, acquisition, lung mask) on the default grid."""
    out = {}
    for s in SEEDS:
        img, labels, nodules, acq = build_chest(np.random.default_rng(s), GRID)
        xa, ya = acq.anatomy_xy(GRID)
        lung = in_lung(xa[None], ya[None], acq.anatomy_z(GRID)[:, None, None])
        out[s] = (img, labels, nodules, acq, lung)
    return out


def _plans(n_seeds: int = 60):
    """Nodule plans (analytic, no voxels) of many cases: enough draws to see the rare types."""
    out = []
    for s in range(n_seeds):
        rng = np.random.default_rng(1000 + s)
        acq = draw_acquisition(rng)
        fis = draw_fissures(rng)
        out += plan_nodules(rng, acq, fis, vessel_trees(rng), GRID)
    return out


def test_sizes_are_log_uniform_3_to_30_mm_with_the_odd_mass():
    plans = _plans()
    d = np.array([2 * p.r_mm for p in plans])
    mass = np.array([p.kind == "mass" for p in plans])
    assert (d[~mass] >= 3.0).all() and (d[~mass] <= 30.0).all()
    assert ((d[mass] > 30.0) & (d[mass] <= 50.0)).all() and 0 < mass.sum() < 0.1 * len(plans)
    assert np.mean(d[~mass] < 6.0) > 0.2  # a good share of the small ones detectors miss
    assert np.mean(d[~mass] > 15.0) > 0.1
    assert {p.kind for p in plans} == set(KINDS)
    assert {p.target for p in plans} == {"pleura", "vessel", "fissure", "free"}
    assert {p.margin for p in plans} == {"smooth", "lobulated", "spiculated"}
    assert {p.calcification for p in plans if p.kind == "calcified"} == {"central", "diffuse"}


def test_every_type_appears_and_nodules_lie_in_the_lungs(cases):
    kinds, touches, margins, sizes = set(), set(), set(), []
    for _, labels, nodules, _, lung in cases.values():
        assert not (labels.astype(bool) & ~lung).any()  # not one labelled voxel outside the lungs
        assert sorted(np.unique(labels[labels > 0])) == list(range(1, len(nodules) + 1))
        kinds |= {n.kind for n in nodules}
        touches |= {n.touches for n in nodules}
        margins |= {n.margin for n in nodules}
        sizes += [n.diameter_mm for n in nodules]
    assert min(sizes) < 4.0 and sum(d < 6.0 for d in sizes) >= 3  # small ones survive the voxels
    assert {"solid", "part-solid", "ground-glass", "calcified"} <= kinds <= set(KINDS)
    assert {"pleura", "vessel", "fissure"} <= touches
    assert margins == {"smooth", "lobulated", "spiculated"}


def test_each_type_has_its_density(cases):
    """Mean HU of ground glass, peak of calcium, on nodules big enough for their slices' partial volume."""
    seen = set()
    for img, labels, nodules, acq, _ in cases.values():
        for i, n in enumerate(nodules, start=1):
            small = max(4.0, 1.5 * acq.slice_mm) if n.kind == "calcified" else max(6.0, 2.5 * acq.slice_mm)
            if n.diameter_mm < small:
                continue
            hu = img[labels == i].astype(float)
            seen.add(n.kind)
            if n.kind == "ground-glass":
                assert -750 < hu.mean() < -300, n
            elif n.kind == "calcified":
                assert hu.max() > 200, n
            elif n.kind in ("solid", "mass"):
                assert np.median(hu) > -400 and hu.max() > -50, n
    assert {"ground-glass", "calcified", "solid"} <= seen


def test_juxta_pleural_nodules_touch_the_wall_from_inside(cases):
    count = 0
    for img, labels, nodules, _, lung in cases.values():
        for i, n in enumerate(nodules, start=1):
            if n.touches != "pleura":
                continue
            mask = labels == i
            shell = ndimage.binary_dilation(mask, iterations=2) & ~mask
            assert (shell & ~lung).any() and (img[shell] > -200).any(), n  # the wall is right there
            count += 1
    assert count >= 3


def test_some_fields_of_view_reach_the_abdomen_whose_organs_hold_no_nodule(cases):
    abdominal = 0
    for img, labels, _, acq, lung in cases.values():
        xa, ya = acq.anatomy_xy(GRID)
        below = acq.anatomy_z(GRID)[:, None, None] < diaphragm_z(xa, ya)[None] - 5.0
        assert not labels[below].any()
        low = acq.anatomy_z(GRID) < -140.0
        if not low.any():
            continue
        abdominal += 1
        sl = img[low]
        assert np.mean((sl > 40) & (sl < 80)) > 0.05  # the liver, spleen and kidneys
        body_gas = (sl < -900) & ndimage.binary_erosion(sl > -300, iterations=3, border_value=0).any(axis=0)
        assert body_gas.any()  # bowel or stomach gas inside the body
        assert not lung[low].any()
    assert 0 < abdominal < len(cases)


def test_thick_slices_are_smoother_along_z(cases):
    """Adjacent slices of a thick-slice case correlate (the slice profile blurs along z); thin ones barely."""

    def z_corr(img):
        air = img[:, :12, :12].astype(float)  # a corner of air: only noise
        a, b = air[:-1].ravel() - air.mean(), air[1:].ravel() - air.mean()
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    by_thickness = sorted((c[3].slice_mm, z_corr(c[0])) for c in cases.values())
    (thin, c_thin), (thick, c_thick) = by_thickness[0], by_thickness[-1]
    assert thin < 1.5 and thick > 3.0
    assert c_thick > c_thin + 0.3


def test_the_box_json_records_each_nodules_type():
    ph = make_chest_ct(1, shape_zyx=(48, 96, 96))
    entries = [f.to_json(ph.volume) for f in ph.findings]
    assert entries and all(e["kind"] in KINDS and e["margin"] in ("smooth", "lobulated", "spiculated") for e in entries)
    assert all((e["calcification"] is not None) == (e["kind"] == "calcified") for e in entries)
    assert (
        "SYNTHETIC" in ph.volume.description and " mm, " in ph.volume.description and len(ph.volume.description) <= 64
    )
