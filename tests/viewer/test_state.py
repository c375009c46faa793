"""The Qt-free view state: plane geometry, windowing, thresholds, finding navigation, review file."""

import json

import numpy as np
import pytest

from radlens.imaging.geometry import PLANES
from radlens.imaging.volume import Window
from radlens.viewer.layers import LayerKey
from radlens.viewer.measure import ellipse_stats
from radlens.viewer.overlays import boxes_on_slice, mask_rgba
from radlens.viewer.review import Review, load_review, review_path, save_review
from radlens.viewer.state import ViewState, box_on_plane, from_plane, orientation_letters, to_plane
from tests.viewer.conftest import NODULE, key_of_detection, make_ct, make_findings


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("plane", PLANES)
def test_plane_coordinates_round_trip(plane, flip):
    shape = (40, 64, 50)
    zyx = (7, 33, 12)
    index, row, col = to_plane(plane, zyx, shape, flip)
    assert from_plane(plane, index, row, col, shape, flip) == zyx


def test_box_on_plane_follows_the_displayed_rows():
    shape = (40, 64, 64)
    # coronal rows are z reversed when z points to the head: box z 18..24 → rows 16..22
    assert box_on_plane(NODULE, "coronal", 25, shape, True) == (16, 36, 22, 46)
    assert box_on_plane(NODULE, "sagittal", 40, shape, True) == (16, 20, 22, 30)
    assert box_on_plane(NODULE, "axial", 18, shape, True) == (20, 36, 30, 46)
    assert box_on_plane(NODULE, "axial", 24, shape, True) is None  # half-open


def test_orientation_letters_for_lps_axes():
    v = make_ct()
    assert orientation_letters(v, "axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientation_letters(v, "coronal") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert orientation_letters(v, "sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_scroll_clamps_and_window_drag_widens_and_raises():
    st = ViewState.for_volume(make_ct(), Window(400, 40))
    assert st.slice_index("axial") == 20
    assert st.scroll("axial", 100) == 39
    assert st.scroll("axial", -500) == 0
    w = st.drag_window(10, -20)
    assert w.width > 400 and w.level < 40


def test_threshold_filters_boxes_and_rows():
    v = make_ct()
    f = make_findings(v)
    st = ViewState.for_volume(v, Window(400, 40))
    st.set_findings(f, v)
    key = LayerKey("nodule-detector", "detection", "nodule")
    assert st.threshold(key) == 0.5  # the bundle's suggestion
    assert len(boxes_on_slice(st.layers[key].data, st.threshold(key), "axial", 6, v.shape_zyx, True)) == 0
    st.layers[key].threshold = 0.2
    assert [b[0] for b in boxes_on_slice(st.layers[key].data, 0.2, "axial", 6, v.shape_zyx, True)] == [2]
    assert {fid for r in st.visible_rows() for _, fid, _ in r.boxes} == {1, 2}


def test_next_finding_moves_the_cursor_to_its_centre():
    v = make_ct()
    st = ViewState.for_volume(v, Window(400, 40))
    st.set_findings(make_findings(v), v)
    row = st.step_finding(1)
    assert row.key == key_of_detection(st)
    assert st.cursor_zyx == [20, 24, 40]  # centre of NODULE (rounded)
    keys = [st.step_finding(1).key for _ in range(len(st.visible_rows()))]
    assert keys[-1] == key_of_detection(st)  # wraps around
    assert st.step_finding(-1).key == keys[-2]


def test_mask_rgba_fills_outlines_and_crops():
    m = np.zeros((8, 8), bool)
    m[2:6, 3:6] = True
    rgba, r0, c0 = mask_rgba(m, (255, 0, 0))
    assert (r0, c0) == (2, 3) and rgba.shape == (4, 3, 4)
    assert rgba[0, 0, 3] == 255  # outline
    assert 0 < rgba[1, 1, 3] < 255  # fill
    assert tuple(rgba[1, 1, :3]) == (255, 0, 0)
    assert mask_rgba(np.zeros((8, 8), bool), (255, 0, 0)) is None


def test_ellipse_roi_statistics():
    img = np.zeros((20, 20))
    img[5:15, 5:15] = 100
    s = ellipse_stats(img, (6, 6, 14, 14), (0.5, 0.5))
    assert s.mean == 100 and s.sd == 0 and s.pixels > 30
    assert s.area_mm2 == pytest.approx(s.pixels * 0.25)


def test_review_round_trip_is_atomic_and_beside_the_study(study):
    volume, folder = study
    st = ViewState.for_volume(volume, Window(400, 40))
    st.set_findings(make_findings(volume), volume)
    review = Review()
    review.decide(st.row(key_of_detection(st)), "accepted")
    review.decide(st.row(key_of_detection(st, 2)), "rejected")
    path = save_review(volume, review)
    assert path.parent == folder and path == review_path(volume)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "radlens.review/2" and [d["decision"] for d in doc["decisions"]] == ["accepted", "rejected"]
    back = load_review(volume)
    assert [back.decision_for(r) for r in st.rows] == ["accepted", "rejected", ""]
    assert not list(folder.glob(".radlens-review.*"))  # no temp file left behind
    path.write_text("{broken")
    assert load_review(volume).lesions == []


def test_a_review_of_a_study_in_an_installed_package_goes_to_the_user_data_folder(tmp_path, monkeypatch):
    import dataclasses

    from pydicom.data import get_testdata_file

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    volume = dataclasses.replace(make_ct(), source=get_testdata_file("CT_small.dcm"), series_uid="1.2.3")
    path = review_path(volume)
    assert path.parent == tmp_path / "data" / "radlens" / "reviews"  # never into pydicom's own files
    assert save_review(volume, Review()).is_file()
