"""Turning a volume to the patient's axes for display: every signed axis permutation comes out with its
slices towards head or feet, rows towards the back and columns towards the left, and indices, boxes
and arrays map exactly both ways."""

import dataclasses
import itertools

import numpy as np
import pytest

from radlens.imaging import kinds
from radlens.imaging.orient import Orientation
from radlens.imaging.presentation import Presentation
from radlens.imaging.volume import Volume

SIGNED = [
    (perm, signs) for perm in itertools.permutations(range(3)) for signs in itertools.product((1.0, -1.0), repeat=3)
]


def _volume(perm, signs) -> Volume:
    """A 5×6×7 volume whose index axes x, y, z point along LPS axes perm[0..2] with the given signs."""
    d = np.zeros((3, 3))
    for col, (axis, sign) in enumerate(zip(perm, signs, strict=True)):
        d[axis, col] = sign
    a = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    return Volume(a, (2.0, 1.5, 1.0), (10.0, -20.0, 30.0), d)


@pytest.mark.parametrize(("perm", "signs"), SIGNED)
def test_every_orientation_is_shown_on_patient_axes_and_maps_exactly_both_ways(perm, signs):
    vol = _volume(perm, signs)
    o = Orientation.of(vol)
    shown = o.volume(vol)
    d = shown.direction
    assert d[0, 0] == 1.0 and d[1, 1] == 1.0 and abs(d[2, 2]) == 1.0  # columns → L, rows → P, slices → S or I
    rng = np.random.default_rng(0)
    src = np.stack([rng.integers(0, n, 20) for n in vol.shape_zyx], axis=1)
    disp = o.index(src)
    assert np.array_equal(o.source_index(disp), src)
    assert np.allclose(shown.index_to_lps(disp), vol.index_to_lps(src))  # the same place in the patient
    assert np.array_equal(shown.array[tuple(disp.astype(int).T)], vol.array[tuple(src.T)])
    assert np.array_equal(o.source_array(shown.array), vol.array)
    box = (1, 2, 3, 4, 5, 6)
    mask = np.zeros(vol.shape_zyx, bool)
    mask[1:4, 2:5, 3:6] = True
    b = o.box(box)
    boxed = np.zeros(shown.shape_zyx, bool)
    boxed[b[0] : b[3], b[1] : b[4], b[2] : b[5]] = True
    assert np.array_equal(o.array(mask), boxed)


def test_painting_the_display_view_paints_the_stored_array():
    vol = _volume((2, 0, 1), (1.0, 1.0, -1.0))  # a sagittal acquisition
    o = Orientation.of(vol)
    assert not o.is_identity
    stored = np.zeros(vol.shape_zyx, bool)
    view = o.array(stored)
    view[1, 2, 3] = True
    assert np.argwhere(stored).tolist() == [o.source_index((1, 2, 3)).astype(int).tolist()]


def test_an_axial_series_and_a_single_image_are_shown_as_stored():
    axial = _volume((0, 1, 2), (1.0, 1.0, 1.0))
    assert Orientation.of(axial).is_identity and Orientation.of(axial).volume(axial) is axial
    feet_first = _volume((0, 1, 2), (1.0, 1.0, -1.0))  # slices towards the feet: kept, the views flip rows
    assert Orientation.of(feet_first).is_identity
    xray = Volume(np.zeros((1, 8, 8), np.int16), direction=np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))
    assert Orientation.of(xray).is_identity
    cine = dataclasses.replace(_volume((2, 0, 1), (1.0, 1.0, -1.0)), presentation=Presentation(kind=kinds.CINE))
    assert Orientation.of(cine).is_identity  # its first axis is time
