"""A tiny CT study on disk (NIfTI) with a findings folder: one nodule, a faint false positive,
its mask and a heat map; what the viewer tests open, review and export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from radlens.imaging.volume import Volume
from radlens.imaging.volume_io import read_volume, write_volume
from radlens.inference.findings import (
    Classification,
    Component,
    Detection,
    Findings,
    ModelRun,
    Segmentation,
    input_block,
)

SHOTS = Path("/tmp/radlens-shots")
NODULE = (18, 20, 36, 24, 30, 46)  # box_zyx, half-open
FAINT = (5, 40, 10, 8, 48, 18)


def make_ct() -> Volume:
    a = np.full((40, 64, 64), -1000, dtype=np.int16)
    a[:, 8:56, 6:58] = 40  # a body
    a[:, 16:48, 10:30] = -800  # a lung
    z0, y0, x0, z1, y1, x1 = NODULE
    a[z0:z1, y0:y1, x0:x1] = 300
    return Volume(a, (2.0, 0.8, 0.8), (-25.0, -25.0, -40.0), np.eye(3), modality="CT", description="synthetic test CT")


def make_findings(volume: Volume) -> Findings:
    nz, ny, nx = volume.shape_zyx
    z0, y0, x0, z1, y1, x1 = NODULE
    mask = np.zeros(volume.shape_zyx, dtype=bool)
    mask[z0:z1, y0:y1, x0:x1] = True
    zz, yy, xx = np.mgrid[:nz, :ny, :nx]
    heat = np.exp(-(((zz - 21) / 4.0) ** 2 + ((yy - 25) / 6.0) ** 2 + ((xx - 41) / 6.0) ** 2)).astype(np.float32)
    centre = ((z0 + z1 - 1) / 2, (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)
    fz0, fy0, fx0, fz1, fy1, fx1 = FAINT
    fcentre = ((fz0 + fz1 - 1) / 2, (fy0 + fy1 - 1) / 2, (fx0 + fx1 - 1) / 2)
    return Findings(
        input=input_block(volume),
        models=(
            ModelRun("nodule-detector", "1.0.0", "detection", threshold=0.5),
            ModelRun("nodule-segmenter", "1.0.0", "segmentation"),
            ModelRun("nodule-classifier", "0.1.0", "classification"),
        ),
        detections=(
            Detection(1, "nodule-detector", "nodule", 0.93, NODULE, centre, tuple(volume.index_to_lps(centre)), 8.0),
            Detection(2, "nodule-detector", "nodule", 0.30, FAINT, fcentre, tuple(volume.index_to_lps(fcentre)), 6.0),
        ),
        segmentations=(
            Segmentation(
                "nodule-segmenter",
                "nodule",
                1,
                0.77,
                (Component(1, 0.77, tuple(volume.index_to_lps(centre)), NODULE, 0.9),),
                mask=mask,
            ),
        ),
        classifications=(
            Classification("nodule-classifier", "malignant", 0.7, tuple(heat.max(axis=(1, 2))), heatmap=heat),
        ),
    )


def widget_point(view, row: float, col: float):
    """The viewport point (a QPoint) where displayed pixel (row, col) of a SliceView is drawn."""
    from radlens.viewer.qt import QtCore

    rmm, cmm = view.pixel_mm
    p = view.mapFromScene(view.vb.mapViewToScene(QtCore.QPointF((col + 0.5) * cmm, (row + 0.5) * rmm)))
    return QtCore.QPoint(round(p.x()), round(p.y()))


def drag(qtbot, view, a, b, steps: int = 6) -> None:
    """A left-button drag on a view's viewport from a to b (QPoints), as a mouse does it."""
    from radlens.viewer.qt import QtCore

    vp = view.viewport()
    qtbot.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, pos=a)
    for i in range(1, steps + 1):
        qtbot.wait(12)  # pyqtgraph drops mouse moves closer than 10 ms
        qtbot.mouseMove(vp, a + (b - a) * i / steps)
    qtbot.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, pos=b)


def key_of_detection(state, detection_id: int = 1):
    """The key of the finding row (a fused lesion) that holds the detector's detection ``detection_id``."""
    return next(r.key for r in state.rows if any(fid == detection_id for _, fid, _ in r.boxes))


@pytest.fixture
def study(tmp_path):
    """(volume as read back from disk, folder holding findings.json beside it)."""
    path = tmp_path / "ct.nii.gz"
    write_volume(make_ct(), path)
    volume = read_volume(path)
    from radlens.inference.findings import write_findings

    write_findings(make_findings(volume), tmp_path)
    return volume, tmp_path


@pytest.fixture
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The real main window, offscreen, with settings and the user's data folder (reviews of studies in
    read-only or installed folders) kept out of the user's home."""
    monkeypatch.setenv("XDG_DATA_HOME", os.fspath(tmp_path / "user-data"))
    from radlens.viewer.main_window import MainWindow
    from radlens.viewer.qt import QtCore

    settings = QtCore.QSettings(os.fspath(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.resize(1400, 700)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory):
    """A small SYNTHETIC chest CT written as a DICOM series (the folder holding it)."""
    from radlens.imaging.phantom import iter_write_phantoms
    from radlens.imaging.progress import run_to_end

    root = tmp_path_factory.mktemp("phantom")
    run_to_end(iter_write_phantoms(root, kind="chest-ct", cases=1, seed=0, fmt="dicom", shape_zyx=(16, 48, 48)))
    return root / "imagesTr"
