"""The Qt-free controller against a fake view, runner and settings: no QApplication, no PySide6.

The fakes record every call; each test also checks that the controller called nothing on the view
that the ``View`` protocol does not list.
"""

import dataclasses
import itertools

import pytest

from radlens.imaging.progress import Progress
from radlens.imaging.windowing import preset, presets
from radlens.inference.findings import Detection, Findings, ModelRun, input_block
from radlens.viewer.controller import Controller
from radlens.viewer.jobs import JobEvent
from radlens.viewer.layers import LayerKey
from radlens.viewer.menus import KEYMAP
from radlens.viewer.protocols import AiView, BrowserView, View
from tests.viewer.conftest import key_of_detection, make_ct, make_findings

DETECTOR = LayerKey("nodule-detector", "detection", "nodule")
SEGMENTER = LayerKey("nodule-segmenter", "segmentation", "nodule")
# what the window itself does when these keys are pressed (dialogs, zoom, mouse tools)
WINDOW_ACTIONS = {"open_file", "open_folder", "export", "quit", "fit", "one_to_one", "tags"}
WINDOW_ACTIONS |= {f"tool:{t}" for t in ("wl", "ruler", "roi", "polygon", "angle", "recist")}
WINDOW_ACTIONS |= {f"tool:{t}" for t in ("brush", "eraser", "box", "grow")}


class Recorder:
    """Records every call made on it as (name, args); ``returns`` gives some calls an answer."""

    def __init__(self, protocol, returns=None):
        self.protocol, self.calls, self._returns = protocol, [], returns or {}

    def __getattr__(self, name):
        if name.startswith("_") or name not in dir(self.protocol):
            raise AttributeError(f"{self.protocol.__name__} has no {name}")

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return self._returns.get(name)

        return call

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def last(self, name: str):
        return next(c for c in reversed(self.calls) if c[0] == name)


class FakeView(Recorder):
    def __init__(self):
        super().__init__(View)
        self.ai_panel = Recorder(AiView, {"selected_bundles": ["a-bundle"]})
        self.browser = Recorder(BrowserView, {"add_scan": []})


class FakeRunner:
    def __init__(self):
        self._ids = itertools.count(1)
        self.started: list[tuple[int, str]] = []
        self.cancelled: list[str] = []

    def start(self, channel, factory) -> int:
        job_id = next(self._ids)
        self.started.append((job_id, channel))
        return job_id

    def cancel(self, channel) -> None:
        self.cancelled.append(channel)


class FakeSettings(dict):
    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value


@pytest.fixture
def ctl():
    return Controller(FakeView(), FakeRunner(), FakeSettings())


def _ct(uid: str):
    return dataclasses.replace(make_ct(), series_uid=uid)


def _one_model(volume, name: str, score: float) -> Findings:
    """What one detector's run streams in: a single box."""
    box = (18, 20, 36, 24, 30, 46)
    det = Detection(1, name, "nodule", score, box, (20.5, 24.5, 40.5), (0.0, 0.0, 0.0), 8.0)
    return Findings(input_block(volume), "cpu", (ModelRun(name, "1.0", "detection", threshold=0.5),), (det,))


def _stream(ctl, job_id: int, partial: Findings) -> None:
    ctl.on_progress(JobEvent(job_id, "infer", progress=Progress(1, 2, "done", preview=partial)))


def _infer_job(ctl) -> int:
    return next(job_id for job_id, channel in reversed(ctl.runner.started) if channel == "infer")


def test_opening_shows_the_study_with_the_findings_beside_it(ctl, study):
    volume, _ = study
    view = ctl.view
    assert view.names() == ["set_recent"] and view.ai_panel.names() == ["set_run_on_open"]  # the preferences
    view.calls.clear()
    ctl.set_volume(volume)
    assert view.names()[:3] == ["show_volume", "show_layout", "set_status"]
    assert view.last("show_volume")[1] == (ctl.study, False)
    assert view.last("show_layout")[1] == ("1x3", "axial")
    state = view.last("show_findings")[1][0]
    assert state is ctl.study.state and set(state.layers) >= {DETECTOR, SEGMENTER}
    assert ctl.runner.started == []  # run-on-open is off by default


def test_a_single_image_opens_in_one_view_and_the_chosen_layout_stays(ctl):
    ctl.toggle_layout()
    ctl.set_active_plane("coronal")
    ctl.set_volume(_ct("1.2.3"))
    assert (ctl.layout(), ctl.active_plane()) == ("single", "coronal")
    ctl.set_volume(dataclasses.replace(make_ct(), array=make_ct().array[:1]))
    assert ctl.view.last("show_layout")[1] == ("single", "axial")


def test_results_of_several_runs_merge_and_are_kept_per_series(ctl):
    vol = _ct("1.2.3.a")
    ctl.set_volume(vol)
    ctl.models.run()
    first = _infer_job(ctl)
    _stream(ctl, first, _one_model(vol, "det-a", 0.9))
    ctl.on_finished(JobEvent(first, "infer", done=True, result=_one_model(vol, "det-a", 0.9)))
    ctl.models.run()
    second = _infer_job(ctl)
    _stream(ctl, second, _one_model(vol, "det-b", 0.8))
    kept = ctl.models.results["1.2.3.a"]
    assert [m.name for m in kept.models] == ["det-a", "det-b"]
    assert [d.id for d in kept.detections] == [1, 2]  # renumbered, so both keys stay distinct
    (row,) = ctl.study.state.rows  # both detectors found the same nodule: one finding
    assert row.scores == (("det-a", 0.9), ("det-b", 0.8))
    ctl.set_volume(None)
    ctl.settings.setValue("run_on_open", "true")
    ctl.set_volume(vol)  # the kept results come back; nothing runs again
    assert ctl.study.findings is kept and ctl.runner.started[-1] == (second, "infer")


def test_a_models_warning_reaches_the_status_line(ctl):
    """A lung model run on a series without lungs says so where the reader looks."""
    vol = _ct("1.2.3.w")
    ctl.set_volume(vol)
    ctl.models.run()
    job = _infer_job(ctl)
    found = _one_model(vol, "det-a", 0.9)
    run = dataclasses.replace(found.models[0], warnings=("no lungs found in this series",))
    ctl.on_finished(JobEvent(job, "infer", done=True, result=dataclasses.replace(found, models=(run,))))
    (text,), _ = ctl.view.last("set_status")[1:]
    assert text == "AI: 1 detections, 0 masks; det-a: no lungs found in this series"


def test_a_result_for_a_series_no_longer_shown_is_dropped(ctl):
    first = _ct("1.2.3.first")
    ctl.set_volume(first)
    ctl.models.run()
    job = _infer_job(ctl)
    ctl.set_volume(_ct("1.2.3.second"))
    assert "infer" in ctl.runner.cancelled
    _stream(ctl, job, _one_model(first, "det-a", 0.9))
    ctl.on_finished(JobEvent(job, "infer", done=True, result=_one_model(first, "det-a", 0.9)))
    assert ctl.models.dropped == 2 and ctl.models.results == {} and ctl.study.findings is None
    assert "finished" not in ctl.view.ai_panel.names()


def test_an_older_job_of_the_same_series_is_dropped_too(ctl):
    vol = _ct("1.2.3")
    ctl.set_volume(vol)
    ctl.models.run()
    old = _infer_job(ctl)
    ctl.models.run()
    _stream(ctl, old, _one_model(vol, "det-a", 0.9))
    assert ctl.models.dropped == 1 and ctl.study.findings is None


def test_run_on_open_is_a_preference_and_the_demo_turns_it_on(ctl):
    ctl.open_paths(["/tmp/a", "/tmp/b"], run_models=True)
    assert ctl.settings["run_on_open"] == "true" and ctl.run_on_open()
    assert ctl.view.ai_panel.last("set_run_on_open")[1] == (True,)
    assert ctl.recent() == ["/tmp/b", "/tmp/a"] and ctl.view.last("set_recent")[1] == (["/tmp/b", "/tmp/a"],)
    ctl.set_volume(_ct("1.2.3"))
    assert ctl.runner.started[-1][1] == "infer"
    assert ctl.view.ai_panel.last("started")[1] == (("a-bundle",),)


def test_no_model_for_the_series_says_so(ctl):
    ctl.view.ai_panel._returns["selected_bundles"] = []
    ctl.set_volume(_ct("1.2.3"))
    ctl.models.run()
    assert ctl.view.ai_panel.last("set_status")[1] == ("no model fits this series",)
    assert all(channel != "infer" for _, channel in ctl.runner.started)


def test_the_one_keymap_covers_every_key_of_the_readme(ctl):
    assert len(set(KEYMAP.values())) == len(KEYMAP)  # one key per action
    readme = {p.key for p in presets()} | {"9", "0", "I", "M", "F", "Z", "W", "R", "O", "A", "N", "P", "T"}
    readme |= {"Space", "Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+O", "Ctrl+E"}
    assert readme <= set(KEYMAP)
    actions = ctl.actions()
    assert set(KEYMAP.values()) - set(actions) == WINDOW_ACTIONS
    ctl.set_volume(_ct("1.2.3"))
    actions[KEYMAP["1"]]()
    assert ctl.study.state.window == preset("lung")
    actions[KEYMAP["Ctrl+2"]]()
    assert ctl.active_plane() == "coronal" and ctl.view.last("show_layout")[1] == ("1x3", "coronal")


def test_thresholds_filter_the_rows_and_n_walks_the_findings(ctl):
    vol = _ct("1.2.3")
    ctl.set_volume(vol)
    ctl.set_findings(make_findings(vol))
    ctl.view.calls.clear()
    ctl.layer_changed(SEGMENTER)
    assert ctl.view.names() == ["redraw"]
    ctl.layer_changed(DETECTOR)
    assert ctl.view.names() == ["redraw", "redraw", "show_rows"]
    ctl.actions()[KEYMAP["N"]]()
    assert ctl.study.state.selected == key_of_detection(ctl.study.state)
    assert ctl.view.names()[-2:] == ["show_selection", "set_status"]
    assert ctl.study.state.cursor_zyx == [20, 24, 40]


def test_a_decision_is_saved_beside_the_study(ctl, study):
    volume, folder = study
    ctl.set_volume(volume)
    st = ctl.study.state
    key = key_of_detection(st)
    ctl.decide(key, "accepted")
    assert st.decision(st.row(key)) == "accepted"
    assert ctl.view.last("set_status")[1][0].startswith("review saved: radlens-review-")
    assert list(folder.glob("radlens-review-*.json"))
    ctl.set_volume(volume)
    st = ctl.study.state
    assert [st.decision(r) for r in st.rows] == ["accepted", "", ""]
    ctl.decide(key, "")
    assert [st.decision(r) for r in st.rows] == ["", "", ""]
    ctl.editor.undo()  # a decision is an edit like any other
    assert [st.decision(r) for r in st.rows] == ["accepted", "", ""]
    ctl.editor.redo()
    assert [st.decision(r) for r in st.rows] == ["", "", ""]


def test_a_load_preview_clears_the_old_study_and_shows_one_slice(ctl):
    ctl.set_volume(_ct("1.2.3"))
    ctl.load_source("/somewhere/ct.nii.gz")
    preview = dataclasses.make_dataclass("Preview", ["image", "index", "total"])(make_ct().array[3], 3, 40)
    ctl.on_progress(JobEvent(ctl.runner.started[-1][0], "load", progress=Progress(1, 40, "", preview=preview)))
    assert ctl.study is None
    assert ctl.view.names()[-3:] == ["show_volume", "show_preview", "set_status"]
    assert ctl.view.last("set_status")[1] == ("Loading… showing slice 4/40",)


def test_a_scan_that_finds_nothing_is_one_red_line(ctl):
    skipped = dataclasses.make_dataclass("Skipped", ["path", "reason"])("/x/notes.txt", "not an image")
    result = dataclasses.make_dataclass("Result", ["skipped"])((skipped,))
    ctl.on_finished(JobEvent(1, "scan", done=True, result=[("/x", result)]))
    _, args, kwargs = ctl.view.last("set_status")
    assert args == ("no images found (/x/notes.txt: not an image)",) and kwargs == {"error": True}


def test_the_probe_reads_the_voxel_under_the_mouse(ctl):
    ctl.set_volume(_ct("1.2.3"))
    ctl.probe("axial", 25.4, 41.7)
    text = ctl.view.last("set_probe")[1][0]
    assert "voxel z20 y25 x41" in text and text.endswith("300 HU")
    ctl.probe("axial", -3, 41)
    assert ctl.view.last("set_probe")[1] == ("",)


def test_cine_steps_the_active_plane_and_stops_without_a_study(ctl):
    ctl.toggle_cine()
    assert not ctl.cine  # nothing to play
    ctl.set_volume(_ct("1.2.3"))
    ctl.toggle_cine()
    assert ctl.cine and ctl.view.last("set_cine")[1] == (True,)
    ctl.cine_step()
    assert ctl.study.state.slice_index("axial") == 21
    ctl.set_volume(None)
    ctl.cine_step()
    assert not ctl.cine and ctl.view.last("set_cine")[1] == (False,)


def test_rerunning_models_leaves_one_finding_per_lesion_and_decisions_stay_on_their_lesion(ctl, tmp_path):
    vol = dataclasses.replace(make_ct(), series_uid="1.2.3.r", source=str(tmp_path / "ct.nii.gz"))
    ctl.set_volume(vol)
    full = make_findings(vol)
    detector = Findings(full.input, "cpu", full.models[:1], full.detections)
    segmenter = Findings(full.input, "cpu", full.models[1:2], (), full.segmentations)
    for partial in (detector, segmenter):
        ctl.models.run()
        _stream(ctl, _infer_job(ctl), partial)
    st = ctl.study.state
    assert len(st.rows) == 2  # the nodule (box + mask) and the faint box
    key = key_of_detection(st)
    ctl.decide(key, "rejected")
    for partial in (segmenter, detector, segmenter):  # run again, in another order: ids are renumbered
        ctl.models.run()
        _stream(ctl, _infer_job(ctl), partial)
    st = ctl.study.state
    assert [m.name for m in ctl.models.results[vol.series_uid].models] == ["nodule-detector", "nodule-segmenter"]
    assert len(st.rows) == 2 and len(ctl.models.results[vol.series_uid].detections) == 2
    assert {str(r.key): st.decision(r) for r in st.rows} == {str(key): "rejected", str(key_of_detection(st, 2)): ""}
    # a restart: a new controller reads the decision back from the file beside the study
    again = Controller(FakeView(), FakeRunner(), FakeSettings())
    again.set_volume(vol)
    again.set_findings(make_findings(vol))
    st = again.study.state
    assert st.decision(st.row(key)) == "rejected"


def test_a_review_file_of_the_first_form_is_read_and_rewritten_by_position(ctl, study):
    import json

    from radlens.viewer.review import review_path

    volume, _ = study
    path = review_path(volume)
    path.write_text(
        json.dumps(
            {
                "schema": "radlens.review/1",
                "decisions": {"det:nodule-detector:1": "accepted", "cls:nodule-classifier:malignant": "rejected"},
            }
        )
    )
    ctl.set_volume(volume)  # findings.json beside it: detection 1 is the nodule
    st = ctl.study.state
    assert [st.decision(r) for r in st.rows] == ["accepted", "", "rejected"]
    doc = json.loads(path.read_text())
    assert doc["schema"] == "radlens.review/2"
    (decision,) = doc["decisions"]
    assert decision["decision"] == "accepted" and decision["label"] == "nodule"
    assert decision["center_lps"] == pytest.approx(list(st.row(key_of_detection(st)).lesion.center_lps), abs=0.01)
    assert doc["classifications"] == {"cls:nodule-classifier:malignant": "rejected"}
