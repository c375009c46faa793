"""The varied-contrast brain phantom (domain randomisation): its variety, checked, and what it keeps."""

import hashlib
import json

import numpy as np
import pytest

from radlens.imaging.phantom import iter_write_phantoms, make_brain_mr, make_sequence_brain_mr, make_varied_brain_mr
from radlens.imaging.phantom_brain import VENTRICLES
from radlens.imaging.progress import run_to_end

SHAPE = (48, 72, 72)  # 4 × 3.3 × 3.3 mm: the same head, small enough for a test
SEEDS = range(8)


@pytest.fixture(scope="module")
def varied():
    return [make_varied_brain_mr(s, SHAPE) for s in SEEDS]


def _median(ph, mask) -> float:
    return float(np.median(ph.volume.array[mask]))


def _in(ph, ellipsoids, scale: float) -> np.ndarray:
    """Voxels inside ellipsoids given as offsets (mm) from the head's centre, shrunk by ``scale``."""
    v = ph.volume
    idx = np.indices(v.shape_zyx).reshape(3, -1).T
    lps = v.index_to_lps(idx) - np.array([0.0, 15.0, 30.0])
    x, y, z = lps[:, 0], lps[:, 1], lps[:, 2]
    inside = np.zeros(len(idx), bool)
    for (cx, cy, cz), (ax, ay, az) in ellipsoids:
        inside |= ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 < scale
    return inside.reshape(v.shape_zyx)


def _ventricles(ph) -> np.ndarray:
    return _in(ph, VENTRICLES[:2], 0.6)


def _deep_white_matter(ph) -> np.ndarray:
    """The centrum semiovale, above the lateral ventricles: white matter on every case."""
    return _in(ph, [((side, 4.0, 36.0), (6.0, 10.0, 4.0)) for side in (-14.0, 14.0)], 1.0)


def test_csf_is_brighter_than_white_matter_in_some_cases_and_darker_in_others(varied):
    t1 = make_brain_mr(0, SHAPE)
    signs = []
    for ph in [t1, *varied]:
        vent = _ventricles(ph) & (ph.labels == 0)
        deep_wm = _deep_white_matter(ph) & (ph.labels == 0)
        signs.append(np.sign(_median(ph, vent) - _median(ph, deep_wm)))
    assert signs[0] < 0  # the T1-like demo: dark CSF
    assert {1.0, -1.0} <= set(signs[1:])


def test_every_lesion_stands_out_from_the_white_matter_around_it(varied):
    for ph in varied:
        a = ph.volume.array.astype(np.float32)
        for f in ph.findings:
            # A tumour is an enhancing rim around a necrotic core: its rim is what stands out.
            lesion = ph.labels.astype(bool) & (
                _ball(ph, f, 1.0) & ~_ball(ph, f, 0.8) if f.kind == "tumour" else _ball(ph, f, 0.6)
            )
            shell = _ball(ph, f, 1.8) & ~_ball(ph, f, 1.3) & (ph.labels == 0)
            if lesion.sum() < 4 or shell.sum() < 8:
                continue
            # > 40: the shell may now hold sulcal CSF (wide sulci reach the white matter), which pulls its
            # median towards the lesion; a faint plaque still stands out by more than the noise.
            assert abs(np.median(a[lesion]) - np.median(a[shell])) > 40, (ph.seed, f)


def test_lesions_range_from_faint_to_strong(varied):
    """A reader's plaques are often faint: some differ from the white matter around them by about a
    tenth of the signal range, others by more than half of it."""
    steps = []
    for ph in varied:
        a = ph.volume.array.astype(np.float32)
        for f in ph.findings:
            if f.kind == "tumour" or f.diameter_mm < 8:
                continue
            lesion, shell = ph.labels.astype(bool) & _ball(ph, f, 0.6), _ball(ph, f, 1.8) & ~_ball(ph, f, 1.3)
            shell &= ph.labels == 0
            if lesion.sum() >= 4 and shell.sum() >= 8:
                steps.append(abs(np.median(a[lesion]) - np.median(a[shell])))
    assert min(steps) < 150 and max(steps) > 500


def _ball(ph, f, scale: float) -> np.ndarray:
    idx = np.indices(ph.volume.shape_zyx).reshape(3, -1).T
    d = np.linalg.norm((idx - np.asarray(f.center_zyx)) * np.asarray(ph.volume.spacing_zyx), axis=1)
    return (d < scale * f.diameter_mm / 2).reshape(ph.volume.shape_zyx)


def test_lesion_families_and_sizes_vary(varied):
    kinds = {f.kind for ph in varied for f in ph.findings}
    assert kinds == {"lesion", "periventricular", "tumour"}
    sizes = [f.diameter_mm for ph in varied for f in ph.findings]
    assert min(sizes) < 16 and max(sizes) > 18
    assert all(f.diameter_mm >= 12 for ph in varied for f in ph.findings if f.kind == "tumour")


def test_slice_thickness_varies_the_smoothness_along_z():
    """Thick slices blur along z only: the ratio of z to in-plane gradients spreads over the cases."""
    ratios = []
    for seed in SEEDS:
        a = make_varied_brain_mr(seed, (40, 72, 72), (1.5, 3.3, 3.3)).volume.array.astype(np.float32)
        gz = np.abs(np.diff(a, axis=0)).mean()
        gx = np.abs(np.diff(a, axis=2)).mean()
        ratios.append(gz / gx)
    assert max(ratios) / min(ratios) > 1.3


def test_the_demo_brain_is_unchanged_by_the_varied_option():
    """varied=False is the T1-like generator the shipped figures were measured on, voxel for voxel: the
    digest was taken from the generator before the varied option existed."""
    a = make_brain_mr(3, SHAPE)
    assert hashlib.sha256(a.volume.array.tobytes()).hexdigest()[:16] == "1c846cd296ecc151"
    assert hashlib.sha256(a.labels.astype(np.uint8).tobytes()).hexdigest()[:16] == "7b008282fbfc9373"
    assert not np.array_equal(a.volume.array, make_varied_brain_mr(3, SHAPE).volume.array)
    assert "random contrast" in make_varied_brain_mr(3, SHAPE).volume.description


def test_radlens_phantom_writes_varied_brains(tmp_path):
    root = run_to_end(iter_write_phantoms(tmp_path / "v", kind="brain-mr-varied", cases=2, seed=4, shape_zyx=SHAPE))
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["brain_000_0000.nii.gz", "brain_001_0000.nii.gz"]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["kind"] == "brain-mr-varied" and meta["synthetic"] and meta["labels"] == {"background": 0, "lesion": 1}
    assert "--kind brain-mr-varied" in meta["command"]


def test_fluid_lesions_take_the_fluids_signal_and_change_nothing_else(tmp_path):
    """On a T2-weighted image a plaque is as bright as the CSF: --fluid-lesions makes such lesions, so a
    model must tell them from a sulcus by shape; without it every phantom stays as it was."""
    matched = {"plain": 0, "fluid": 0}
    for seed in SEEDS:
        plain, fluid = make_varied_brain_mr(seed, SHAPE), make_varied_brain_mr(seed, SHAPE, fluid_lesions=1.0)
        a, b = plain.volume.array.astype(np.float32), fluid.volume.array.astype(np.float32)
        assert np.array_equal(plain.labels, fluid.labels)
        near = [_ball(plain, f, 3.0) for f in plain.findings]
        far = ~np.any(near, axis=0) if near else np.ones(a.shape, bool)
        assert np.array_equal(a[far], b[far])  # away from the lesions (and their blur): the same draws
        csf = _median(fluid, _ventricles(fluid) & (fluid.labels == 0))
        for name, signal in (("plain", a), ("fluid", b)):
            for f in fluid.findings:
                core = fluid.labels.astype(bool) & _ball(fluid, f, 0.6)
                if f.kind != "tumour" and core.sum() >= 4 and abs(np.median(signal[core]) - csf) < 0.15 * csf:
                    matched[name] += 1
    assert matched["fluid"] >= matched["plain"] + 8, matched
    root = run_to_end(iter_write_phantoms(tmp_path / "f", kind="brain-mr-varied", cases=1, seed=4, shape_zyx=SHAPE,
                                          fluid_lesions=0.5))  # fmt: skip
    assert "--fluid-lesions 0.5" in json.loads((root / "dataset.json").read_text())["command"]


def test_sequence_brains_keep_their_sequence_s_order_of_fluid_and_white_matter():
    """brain-mr-sequences: fluid darker than white matter on T1 and FLAIR, brighter on T2, and lesions
    bright on T2 and FLAIR; all three are drawn."""
    seen = set()
    for seed in range(9):
        ph = make_sequence_brain_mr(seed, SHAPE)
        sequence = ph.volume.description.split("(")[1].split()[0]
        seen.add(sequence)
        fluid = _median(ph, _ventricles(ph) & (ph.labels == 0))
        white = _median(ph, _deep_white_matter(ph) & (ph.labels == 0))
        assert (fluid > white) == (sequence == "T2-like"), (seed, sequence, fluid, white)
        if sequence != "T1-like" and ph.labels.any():
            assert _median(ph, ph.labels.astype(bool)) > white, (seed, sequence)
    assert seen == {"T1-like", "T2-like", "FLAIR-like"}
