"""``radlens --demo``: synthetic studies written once into the cache, opened, labelled SYNTHETIC."""

import pytest

from radlens.imaging.progress import run_showing, run_to_end
from radlens.viewer import demo


@pytest.fixture
def small_demo(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SHAPES", dict.fromkeys(demo.KINDS, (16, 40, 40)))
    monkeypatch.setattr(demo, "demo_root", lambda: tmp_path / "cache")
    return tmp_path / "cache"


def test_demo_studies_are_written_once_and_reused(small_demo):
    messages = []
    paths = run_showing(demo.iter_demo_paths(), lambda p: messages.append(p.message))
    assert [p.split("/")[-2] for p in paths] == ["chest-ct", "brain-mr"]
    assert any("first run only" in m for m in messages)
    stamp = (small_demo / "chest-ct" / demo.DONE).stat().st_mtime_ns
    assert run_to_end(demo.iter_demo_paths()) == paths  # reused: nothing rewritten
    assert (small_demo / "chest-ct" / demo.DONE).stat().st_mtime_ns == stamp


def test_demo_opens_both_studies_marked_synthetic(window, qtbot, small_demo):
    window.open_demo()
    qtbot.waitUntil(lambda: window.study is not None, timeout=60000)
    assert "SYNTHETIC" in window.windowTitle()
    assert window.views["axial"].corners["tl"].startswith("SYNTHETIC")
    assert sorted(s.modality for s in window.browser.series()) == ["CT", "MR"]
    assert window.study.volume.modality == "CT"  # the chest CT opens first
    assert window.ai_panel.run_on_open.isChecked()
