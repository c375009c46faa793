"""The study's measurements, without Qt: added and deleted on the one undo stack, jumped to, exported
to CSV or JSON, and kept in the review file beside the study (its ``measurements`` section)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from radlens.imaging.atomic import write_text
from radlens.imaging.errors import RadlensError
from radlens.viewer.editing import StateEdit
from radlens.viewer.measure import KINDS, Measurement, measure, on_plane, to_csv

if TYPE_CHECKING:
    from radlens.viewer.controller import Controller
    from radlens.viewer.state import Study


class Measurements:
    def __init__(self, controller: Controller):
        self.ctl = controller

    @property
    def study(self) -> Study | None:
        return self.ctl.study

    def open(self, study: Study) -> None:
        """The measurements kept in the review file (one that cannot be read is left out)."""
        items = []
        for d in study.state.review.extra.get("measurements") or []:
            try:
                items.append(Measurement.from_json(d))
            except (KeyError, TypeError, ValueError):
                continue
        study.state.measurements = items

    def _measure(self, mid: int, plane: str, kind: str, points) -> Measurement | None:
        st = self.study.state
        if kind not in KINDS or len(points) < max(KINDS[kind], 3 if kind == "polygon" else 2):
            return None
        return measure(mid, kind, plane, st.slice_index(plane), points, self.study.volume, st.flip_z)

    def preview(self, plane: str, kind: str, points) -> None:
        """What a ruler or ellipse being dragged measures, in the status line."""
        if self.study is not None and (m := self._measure(0, plane, kind, points)) is not None:
            self.ctl.view.set_status(m.text())

    def add(self, plane: str, kind: str, points) -> None:
        if self.study is None:
            return
        st = self.study.state
        m = self._measure(max((x.id for x in st.measurements), default=0) + 1, plane, kind, points)
        if m is None:
            return
        self._edit(f"add {kind}", [*st.measurements, m])
        st.selected_measurement = m.id
        self.changed()
        self.ctl.view.set_status(m.text())

    def delete(self, mid: int | None = None) -> None:
        """Delete a measurement (the selected one by default)."""
        if self.study is None:
            return
        st = self.study.state
        mid = st.selected_measurement if mid is None else mid
        kept = [m for m in st.measurements if m.id != mid]
        if len(kept) == len(st.measurements):
            return
        self._edit("delete measurement", kept)
        self.changed()

    def _edit(self, text: str, after: list[Measurement]) -> None:
        st = self.study.state
        edit = StateEdit(text, self._restore, {"items": list(st.measurements)}, {"items": after}, "measurements")
        edit.redo()
        self.study.history.push(edit)

    def _restore(self, state: dict) -> None:
        self.study.state.measurements = list(state["items"])

    def jump(self, mid: int) -> None:
        """Every plane to the measurement, its own plane active and showing its slice."""
        if self.study is None:
            return
        st, vol = self.study.state, self.study.volume
        m = next((x for x in st.measurements if x.id == mid), None)
        if m is None:
            return
        st.selected_measurement = mid
        index, _ = on_plane(m, vol, st.flip_z)
        st.set_cursor(vol.lps_to_index(m.centre_lps))
        st.set_slice(m.plane, index)
        self.ctl.set_active_plane(m.plane)
        self.ctl.view.show_measurements(st, focus=True)
        self.ctl.view.set_status(m.text())

    def changed(self) -> None:
        """The list changed (an edit, an undo): it is shown and kept in the review file."""
        st = self.study.state
        st.review.extra["measurements"] = [m.to_json() for m in st.measurements]
        self.ctl.save_review()
        self.ctl.view.show_measurements(st, focus=False)

    def export(self, path) -> Path | None:
        """The measurements as CSV (``.csv``) or JSON (anything else)."""
        if self.study is None:
            return None
        st, vol = self.study.state, self.study.volume
        path = Path(path)
        if path.suffix.lower() == ".csv":
            text = to_csv(st.measurements)
        else:
            items = [m.to_json() for m in st.measurements]
            text = json.dumps({"series_uid": vol.series_uid, "source": vol.source, "measurements": items}, indent=1)
            text += "\n"
        try:
            write_text(path, text)
        except RadlensError as err:
            self.ctl.view.set_status(str(err), error=True)
            return None
        self.ctl.view.set_status(f"exported {len(st.measurements)} measurements to {path}")
        return path
