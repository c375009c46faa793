"""Opening studies through the background jobs: scan, preview first, load, errors, drop, recents, stale jobs."""

import functools
import os
import subprocess
import sys
import threading
import time

import numpy as np

from radlens.imaging.progress import Progress
from radlens.viewer.qt import QtCore, QtGui
from radlens.viewer.worker import JobRunner


def test_open_folder_shows_preview_then_the_volume(window, qtbot, phantom_dicom, shots):
    previews = []

    def spy(ev):
        if ev.channel == "load" and ev.progress.preview is not None:
            previews.append(ev.progress.preview)

    window.runner.progressed.connect(spy)
    window.open_paths([phantom_dicom])
    qtbot.waitUntil(lambda: window.study is not None, timeout=20000)
    vol = window.study.volume
    assert vol.shape_zyx == (16, 48, 48) and vol.modality == "CT"
    assert previews and previews[0].index == 8  # the middle slice came first
    assert [s.description for s in window.browser.series()] == [vol.description]
    assert window.controller.recent() == [str(phantom_dicom)]
    assert window.recent_menu.actions()[0].text() == str(phantom_dicom)
    qtbot.waitUntil(lambda: not window.browser._series_items[vol.series_uid].icon(0).isNull(), timeout=20000)
    assert "SYNTHETIC" in window.views["axial"].corners["tl"]  # the phantom's own patient name
    window.grab().save(str(shots / "window_phantom.png"))


def test_bad_path_is_one_line_in_the_status_bar(window, qtbot, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    window.open_paths([bad])
    qtbot.waitUntil(lambda: "no images" in window.message.text(), timeout=20000)
    assert window.study is None and window.isVisible()
    assert window.browser.skipped.count() == 1


def test_drop_a_folder_opens_it(window, qtbot, phantom_dicom):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(phantom_dicom))])
    pos = QtCore.QPointF(window.rect().center())
    drop = QtGui.QDropEvent(
        pos,
        QtCore.Qt.DropAction.CopyAction,
        mime,
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    qtbot.waitUntil(lambda: window.study is not None, timeout=20000)
    assert window.study.volume.shape_zyx == (16, 48, 48)


def _slow(n: int, tag: str, cancel: threading.Event):
    for i in range(n):
        time.sleep(0.01)
        yield Progress(i, n, tag)
    return tag


def test_a_stale_job_result_is_dropped(qtbot):
    runner = JobRunner()
    got = []
    runner.finished.connect(got.append)
    first = runner.start("load", lambda cancel: _uncancellable(cancel))
    second = runner.start("load", lambda cancel: _slow(3, "second", cancel))
    qtbot.waitUntil(lambda: len(got) == 1, timeout=5000)
    assert got[0].job_id == second and got[0].result == "second"
    qtbot.waitUntil(lambda: runner.dropped >= 1, timeout=5000)  # the first one's answer came and was dropped
    assert all(ev.job_id != first for ev in got)
    assert runner.wait_idle(5000)


def test_models_run_in_another_process_with_progress_cancel_and_stale_results_dropped(qtbot):
    from tests.viewer import process_jobs

    runner = JobRunner()
    got, progress = [], []
    runner.finished.connect(got.append)
    runner.progressed.connect(progress.append)
    runner.start("infer", process_jobs.pid)
    qtbot.waitUntil(lambda: len(got) == 1, timeout=120000)
    child = got[0].result
    assert isinstance(child, int) and child != os.getpid() and progress[0].progress.message == "where am I"
    first = runner.start("infer", functools.partial(process_jobs.slow, 500, "first"))  # 10 s if not cancelled
    second = runner.start("infer", functools.partial(process_jobs.slow, 3, "second"))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=60000)
    assert got[1].job_id == second and got[1].result == "second"  # the first stopped at its next check
    assert all(ev.job_id != first for ev in got) and runner.dropped >= 1
    runner.start("infer", process_jobs.pid)
    qtbot.waitUntil(lambda: len(got) == 3, timeout=60000)
    assert got[2].result == child  # the same process serves the next run: no new start-up
    assert runner.wait_idle(5000)


def _uncancellable(cancel):
    """Ignores its cancel event, so its late result must be dropped by the runner."""
    time.sleep(0.2)
    yield Progress(1, 1, "late")
    return "first"


def test_a_failing_job_reports_one_line(qtbot):
    runner = JobRunner()
    got = []
    runner.finished.connect(got.append)

    def boom(cancel):
        yield Progress(0, 1, "")
        raise ValueError("bad\nthing")

    runner.start("load", boom)
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    assert got[0].error == "bad thing"


def test_radlens_export_subprocess(study, tmp_path, shots):
    volume, folder = study
    out = tmp_path / "out.png"
    cmd = [
        sys.executable,
        "-m",
        "radlens",
        "export",
        volume.source,
        "--out",
        str(out),
        "--findings",
        str(folder),
        "--finding",
        "1",
        "--plane",
        "coronal",
        "--preset",
        "lung",
        "--size",
        "400",
        "500",
        "--anonymize",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    img = QtGui.QImage(str(out))
    assert (img.width(), img.height()) == (400, 500)
    assert "W 1500 L -600" in img.text("Description") and "coronal slice 25/64" in img.text("Description")
    img.save(str(shots / "cli_export_coronal.png"))
    bad = subprocess.run(
        [*cmd[:5], "--out", str(tmp_path / "x.png"), "--preset", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("radlens: error: --preset") and bad.stderr.count("\n") == 1


def test_export_overlays_none_draws_no_box(study, tmp_path):
    import argparse

    from radlens.viewer.cli import register
    from radlens.viewer.export import export_command

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    volume, folder = study

    def yellow_pixels(overlays: str) -> int:
        out = tmp_path / f"{overlays}.png"
        argv = ["export", volume.source, "--out", str(out), "--findings", str(folder), "--finding", "1"]
        argv += ["--overlays", overlays, "--size", "256", "300"]
        assert export_command(parser.parse_args(argv)) == 0
        img = QtGui.QImage(str(out)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
        arr = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * img.height())
        rgb = arr.reshape(img.height(), -1)[:, : img.width() * 3].reshape(img.height(), img.width(), 3)
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] > 150) & (rgb[..., 2] < 80)).sum())

    boxes = yellow_pixels("nodule-detector")
    plain = yellow_pixels("none")
    assert boxes > plain + 50  # the box outline; what is left in "none" is the orientation letters


def test_double_click_in_the_browser_loads_and_cancel_stops(window, qtbot, phantom_dicom):
    window.open_paths([phantom_dicom])
    qtbot.waitUntil(lambda: window.study is not None, timeout=20000)
    window.set_volume(None)
    item = next(iter(window.browser._series_items.values()))
    rect = window.browser.tree.visualItemRect(item)
    at = QtCore.QPoint(rect.left() + 10, rect.center().y())
    qtbot.mousePress(window.browser.tree.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseDClick(window.browser.tree.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=at)
    assert window.runner.busy("load")
    qtbot.waitUntil(lambda: window.study is not None, timeout=20000)
    window.set_volume(None)
    window.controller.load_source(item.data(0, QtCore.Qt.ItemDataRole.UserRole + 1))
    window.controller.cancel_loading()
    assert window.runner.wait_idle(20000)
    qtbot.wait(50)
    assert window.study is None and window.message.text() == "cancelled"


def test_app_opens_the_paths_given_on_the_command_line(qtbot, phantom_dicom, monkeypatch, tmp_path):
    from radlens.viewer.app import open_window
    from radlens.viewer.qt import QtCore as QC

    QC.QSettings.setPath(QC.QSettings.Format.NativeFormat, QC.QSettings.Scope.UserScope, str(tmp_path))
    window = open_window([str(phantom_dicom)])
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.study is not None, timeout=20000)
    assert window.study.volume.shape_zyx == (16, 48, 48) and window.isVisible()
