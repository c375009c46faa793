"""Correcting the AI's results on the open study, without Qt: what the edit tools do.

The controller owns one Editor and hands it what the views report (a brush stroke's points, a box
dragged, a click to segment); the Editor changes the study's corrections (viewer.corrections),
records each change on the study's one undo stack (viewer.editing.History), shows the corrected
findings and writes the corrections beside the study after every edit.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from radlens.imaging.errors import RadlensError
from radlens.imaging.training_case import save_training_case
from radlens.viewer import jobs
from radlens.viewer.corrections import READER, Corrections, load_corrections, save_corrections
from radlens.viewer.editing import Brush, Compound, StateEdit, Stroke, VoxelEdit, add_region, fill_holes
from radlens.viewer.layers import LayerKey
from radlens.viewer.state import AXIS, Study, box_from_plane, box_on_plane, from_plane, plane_pixel_mm

if TYPE_CHECKING:
    from radlens.viewer.controller import Controller

DEFAULT_LABEL = "lesion"


class Editor:
    def __init__(self, controller: Controller):
        self.ctl = controller
        self.brush = Brush()
        self.label = ""  # what the brush paints; "" = the selected finding's label, else the AI's first
        self._stroke: Stroke | None = None
        self._stroke_new: StateEdit | None = None
        self._box: dict | None = None

    @property
    def study(self) -> Study | None:
        return self.ctl.study

    # -- opening --------------------------------------------------------------------------------------
    def open(self, study: Study) -> None:
        """The study's corrections as they were saved beside it (or none yet)."""
        orient = study.orientation
        study.corrections = Corrections(study.volume.shape_zyx, orient)
        saved = load_corrections(study.source)
        if saved is not None:
            small, masks = saved  # on the source grid: shown (and painted) through display views
            study.corrections.restore({**small, "masks": {k: orient.array(m) for k, m in masks.items()}})

    def current_label(self) -> str:
        if self.label:
            return self.label
        st = self.study.state
        row = st.row(st.selected)
        if row is not None and row.lesion is not None:
            return row.label
        ai = self.study.ai
        labels = [s.label for s in ai.segmentations] if ai is not None else []
        return labels[0] if labels else DEFAULT_LABEL

    # -- the brush ------------------------------------------------------------------------------------
    def paint(self, plane: str, row: float, col: float, phase: str) -> None:
        """A brush (or eraser) stroke: "start" on press, "move" while dragging, "end" on release."""
        study = self.study
        if study is None or study.volume.is_rgb:
            return
        st = study.state
        zyx = from_plane(plane, st.slice_index(plane), np.floor(row), np.floor(col), st.shape_zyx, st.flip_z)
        if phase == "start" or self._stroke is None:
            mask, self._stroke_new = self._mask(self.current_label())
            self._stroke = Stroke(mask, study.volume.array, study.volume.spacing_zyx, self.brush, AXIS[plane])
        self._stroke.dab(zyx)
        if phase != "end":
            self.ctl.view.redraw("overlays")
            return
        stroke, self._stroke = self._stroke, None
        self._record(stroke.finish(), self._stroke_new)

    def _mask(self, label: str) -> tuple[np.ndarray, StateEdit | None]:
        """The reader's mask of ``label``; a new one (copied from the AI's, which it then replaces) is
        shown at once and comes with the edit that made it."""
        corr = self.study.corrections
        before = corr.state()
        mask, new = corr.mask_for(label, self.study.ai)
        if not new:
            return mask, None
        st = self.study.state
        for model, lab in set(corr.taken_over) - set(before["taken_over"]):
            layer = st.layers.get(LayerKey(model, "segmentation", lab))
            if layer is not None:
                layer.visible = False  # the reader's copy is drawn instead
        self.ctl.show_corrected()
        return mask, StateEdit(f"edit {label}", corr.restore, before, corr.state())

    def fill_holes(self) -> None:
        """Fill the holes of the current label's mask on the active plane's slice."""
        if self.study is None:
            return
        st = self.study.state
        mask, made = self._mask(self.current_label())
        plane = st.active_plane
        self._record(fill_holes(mask, AXIS[plane], st.slice_index(plane)), made)

    # -- a lesion from a click --------------------------------------------------------------------------
    def segment_at(self, plane: str, row: float, col: float) -> None:
        """Grow a lesion from the clicked voxel in the background (imaging.regions)."""
        if self.study is None or self.study.volume.is_rgb:
            return
        st = self.study.state
        pixel = (np.floor(row), np.floor(col))
        zyx = tuple(round(v) for v in from_plane(plane, st.slice_index(plane), *pixel, st.shape_zyx, st.flip_z))
        self.ctl.view.set_status(f"segmenting at voxel z{zyx[0]} y{zyx[1]} x{zyx[2]} …")
        self.ctl.runner.start("grow", functools.partial(jobs.grow_region, self.study.volume, zyx))

    def grown(self, region: np.ndarray) -> None:
        if self.study is None or region is None:
            return
        if not region.any():
            self.ctl.view.set_status("nothing to segment there", error=True)
            return
        mask, made = self._mask(self.current_label())
        ml = float(region.sum()) * float(np.prod(self.study.volume.spacing_zyx)) / 1000.0
        self._record(add_region(mask, region, "segment at a click"), made)
        self.ctl.view.set_status(f"segmented {ml:.2f} ml at the click")

    # -- boxes ----------------------------------------------------------------------------------------
    def box_drag(self, plane: str, r0: float, c0: float, r1: float, c1: float, phase: str, tol_px: float) -> None:
        """Draw a box (a missed lesion), or resize one by dragging its corner."""
        if self.study is None:
            return
        st = self.study.state
        idx = st.slice_index(plane)
        if phase == "start":
            self._box = {"plane": plane, "resize": self._corner_at(plane, idx, r0, c0, tol_px)}
            return
        if phase != "end" or self._box is None:
            return
        drag, self._box = self._box, None
        rect = (min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1))
        if drag["resize"] is not None:
            det, fixed = drag["resize"]
            rect = (min(fixed[0], r1), min(fixed[1], c1), max(fixed[0], r1), max(fixed[1], c1))
        rect = (int(np.floor(rect[0])), int(np.floor(rect[1])), int(np.ceil(rect[2])), int(np.ceil(rect[3])))
        if rect[2] - rect[0] < 2 or rect[3] - rect[1] < 2:
            return
        corr = self.study.corrections
        before = corr.state()
        if drag["resize"] is not None:
            box = self._resized(det, plane, rect)
            self._drop(det)
            text = "resize box"
        else:
            box = self._new_box(plane, idx, rect)
            text = "add box"
        corr.boxes.append((self.current_label() if drag["resize"] is None else det.label, box))
        self._record(StateEdit(text, corr.restore, before, corr.state()))

    def delete_boxes(self) -> None:
        """Delete the boxes of the selected finding (an AI box is left out by its position from now on)."""
        if self.study is None:
            return
        st = self.study.state
        row = st.row(st.selected)
        if row is None or not row.boxes:
            self.ctl.view.set_status("select a finding with a box first", error=True)
            return
        corr = self.study.corrections
        before = corr.state()
        dets = {d.id: d for d in st.findings.detections}
        for _, fid, _ in row.boxes:
            self._drop(dets[fid])
        self._record(StateEdit("delete box", corr.restore, before, corr.state()))

    def _drop(self, det) -> None:
        corr = self.study.corrections
        if det.model == READER:
            corr.boxes = [(lab, b) for lab, b in corr.boxes if tuple(b) != tuple(det.box_zyx)]
        else:
            corr.remove(det)

    def _corner_at(self, plane: str, idx: int, row: float, col: float, tol_px: float):
        """(detection, the opposite corner) when the press is on a corner of a box drawn on this slice."""
        st = self.study.state
        for d in st.findings.detections if st.findings is not None else ():
            rect = box_on_plane(d.box_zyx, plane, idx, st.shape_zyx, st.flip_z)
            if rect is None or not self._box_shown(d):
                continue
            r0, c0, r1, c1 = rect
            for (cr, cc), opposite in (((r0, c0), (r1, c1)), ((r0, c1), (r1, c0)), ((r1, c0), (r0, c1)),
                                       ((r1, c1), (r0, c0))):  # fmt: skip
                if abs(row - cr) <= tol_px and abs(col - cc) <= tol_px:
                    return d, opposite
        return None

    def _box_shown(self, det) -> bool:
        st = self.study.state
        key = LayerKey(det.model, "detection", det.label)
        return st.shown(key) and det.score >= st.threshold(key)

    def _new_box(self, plane: str, idx: int, rect) -> tuple[int, ...]:
        """A box from a rectangle on one plane: as deep as it is wide (in mm), centred on the slice."""
        st, vol = self.study.state, self.study.volume
        axis = AXIS[plane]
        row_mm, col_mm = plane_pixel_mm(vol, plane)
        size_mm = ((rect[2] - rect[0]) * row_mm + (rect[3] - rect[1]) * col_mm) / 2
        half = max(0, round(size_mm / vol.spacing_zyx[axis] / 2))
        depth = (max(0, idx - half), min(st.count(plane), idx + half + 1))
        return box_from_plane(rect, plane, depth, st.shape_zyx, st.flip_z)

    def _resized(self, det, plane: str, rect) -> tuple[int, ...]:
        st = self.study.state
        axis = AXIS[plane]
        depth = (det.box_zyx[axis], det.box_zyx[axis + 3])
        return box_from_plane(rect, plane, depth, st.shape_zyx, st.flip_z)

    def save_training_case(self, folder) -> bool:
        """The image and its lesions as the reader left them (rejected ones out) into an nnU-Net folder."""
        if self.study is None:
            return False
        st, vol = self.study.state, self.study.volume
        labels = np.zeros(vol.shape_zyx, dtype=np.uint8)
        names: dict[str, int] = {}
        lesions = []
        for row in st.visible_rows():
            if row.lesion is None or st.decision(row) == "rejected":
                continue
            lesions.append((row.lesion.center_lps, row.lesion.long_mm))
            if row.lesion.mask is not None:
                value = names.setdefault(row.label, len(names) + 1)
                box = row.lesion.box_zyx
                labels[tuple(slice(box[i], box[i + 3]) for i in range(3))][row.lesion.mask] = value
        if not names:
            self.ctl.view.set_status("no outlined lesion to train on: paint or accept a mask first", error=True)
            return False
        stored = np.ascontiguousarray(self.study.orientation.source_array(labels))  # on the stored grid
        names_of = {v: k for k, v in names.items()}
        try:
            case, count = save_training_case(
                folder, self.study.source, stored, names_of, lesions, synthetic=self.ctl.synthetic
            )
        except RadlensError as err:
            self.ctl.view.set_status(str(err), error=True)
            return False
        self.ctl.view.set_status(f"saved {case} into {folder} ({count} training cases)")
        return True

    # -- undo, redo, saving ---------------------------------------------------------------------------
    def undo(self) -> None:
        self._replay(self.study.history.undo() if self.study else None, "undo")

    def redo(self) -> None:
        self._replay(self.study.history.redo() if self.study else None, "redo")

    def _replay(self, edit, what: str) -> None:
        scope = getattr(edit, "scope", "corrections")  # voxel edits and compounds change the corrections
        if edit is None:
            self.ctl.view.set_status(f"nothing to {what}")
        elif scope == "measurements":
            self.ctl.measurements.changed()
            self.ctl.view.set_status(f"{what}: {edit.text}")
        elif scope == "review":
            self.ctl.review_changed()
            self.ctl.view.set_status(f"{what}: {edit.text}")
        else:
            self._changed(f"{what}: {edit.text}")

    def _record(self, edit, made: StateEdit | None = None) -> None:
        """Push a finished edit (with the mask it needed, if new) and show and save the result."""
        parts = [e for e in (made, edit) if e is not None]
        if not parts:
            self.ctl.show_corrected()
            return
        done = parts[0] if len(parts) == 1 else Compound(edit.text if edit else made.text, parts)
        self.study.history.push(done)
        count = f" ({edit.count} voxels)" if isinstance(edit, VoxelEdit) else ""
        self._changed(done.text + count)

    def _changed(self, text: str) -> None:
        self.ctl.show_corrected()
        try:
            study = self.study
            masks = {k: study.orientation.source_array(m) for k, m in study.corrections.masks.items()}
            path = save_corrections(study.source, study.corrections, masks)
            self.ctl.view.set_status(f"{text}; saved {path.name}")
        except RadlensError as err:
            self.ctl.view.set_status(f"{text}; cannot save the edits: {err}", error=True)

