"""The Qt-free controller with projections, cines and 4D parts (issue 21), against the fake view."""

import dataclasses

import numpy as np
import pytest

from radlens.imaging.presentation import Presentation
from radlens.imaging.volume import Volume
from radlens.viewer.controller import Controller
from tests.viewer.conftest import make_ct
from tests.viewer.test_controller import FakeRunner, FakeSettings, FakeView


@pytest.fixture
def ctl():
    return Controller(FakeView(), FakeRunner(), FakeSettings())


def _cine(frames: int = 4) -> Volume:
    return Volume(np.zeros((frames, 6, 6), np.int16), modality="XA", series_uid="1.2.9",
                  presentation=Presentation(kind="cine", frame_times_ms=(40.0,)))  # fmt: skip


def test_a_cine_is_read_in_one_view_and_m_keeps_it_so(ctl):
    ctl.set_volume(_cine())
    assert ctl.view.last("show_layout")[1] == ("single", "axial")
    ctl.toggle_layout()
    assert ctl.layout() == "single"
    assert ctl.view.last("set_status")[1] == ("a cine is read in one view: it has no other planes",)
    ctl.set_volume(make_ct())  # a volume gets the user's layout back
    assert ctl.layout() == "1x3"


def test_without_loop_the_cine_stops_at_the_last_frame(ctl):
    ctl.set_volume(_cine(3))
    ctl.study.state.set_slice("axial", 1)
    ctl.set_cine(True)
    ctl.cine_step(loop=False)
    assert ctl.study.state.slice_index("axial") == 2 and ctl.cine
    ctl.cine_step(loop=False)
    assert ctl.study.state.slice_index("axial") == 2 and not ctl.cine
    ctl.set_cine(True)
    ctl.cine_step()  # looping: back to the first frame
    assert ctl.study.state.slice_index("axial") == 0


def test_another_part_of_a_4d_set_keeps_the_slice_and_window(ctl):
    first = dataclasses.replace(make_ct(), series_uid="1.2.3")
    ctl.set_volume(first)
    st = ctl.study.state
    st.set_slice("axial", 5)
    st.window = dataclasses.replace(st.window, width=123.0)
    second = first.with_array(first.array + 1, series_uid="1.2.3.2")
    ctl.show_part(second)
    assert ctl.study.volume is second and ctl.study.state is st
    assert st.slice_index("axial") == 5 and st.window.width == 123.0
    other_grid = Volume(np.zeros((3, 4, 4), np.int16), series_uid="9.9")
    ctl.show_part(other_grid)  # not the same grid: shown as a new study
    assert ctl.study.volume is other_grid and ctl.study.state is not st
