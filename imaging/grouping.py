"""Headers → series: grouped by SeriesInstanceUID, split into stacks on one grid, classified.

A series is one stack on one grid, the unit the loader reads: files of one SeriesInstanceUID are
split into several stacks (uid suffixed ".2", ".3", ...) when orientation, size or pixel spacing
differ. Files in each stack are in slice order along the normal, with spacing and origin from
ImagePositionPatient. Stacks whose positions repeat (time points, b-values, echoes, in files or
in the frames of one enhanced object) become one 4D set whose parts are those stacks
(:mod:`radlens.imaging.fourd`); the radiographs of one series are one projection each. Every
result is classified here, once (:mod:`radlens.imaging.kinds`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from radlens.imaging.dicom_headers import Header
from radlens.imaging.fourd import label_of, repeats, split_repeats
from radlens.imaging.kinds import PROJECTION_MODALITIES, SET_4D, VOLUME, classify, without_slice_notes
from radlens.imaging.series import SeriesInfo
from radlens.imaging.stack_geometry import StackGeometry, stack_geometry


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class _Stack:
    """One grid's worth of headers (or of one file's frames) before it becomes a SeriesInfo."""

    headers: list[Header]
    multiframe: bool = False
    note: str = ""  # what sets this stack apart from its siblings (acquisition 2, echo 1, ...)
    warnings: list[str] = field(default_factory=list)
    frames: tuple[int, ...] = ()  # a part of a multi-frame file: its frames
    set_id: int | None = None  # the 4D set this stack is a part of
    parameter: str = ""  # what tells the parts of that set apart


def group_series(headers: list[Header]) -> tuple[list[SeriesInfo], list[Skipped]]:
    """Group headers into stacks (one SeriesInfo each); duplicates that cannot be placed are skipped.

    Files without a SeriesInstanceUID group by study, modality, series and acquisition number and
    geometry, each such group under a made-up (stable) UID.
    """
    groups: dict[tuple, list[Header]] = {}
    for h in headers:
        key = (
            (h.series_uid,)
            if h.series_uid
            else ("", h.study.study_uid, h.modality, h.series_number, h.acquisition_number)
        )
        groups.setdefault(key, []).append(h)
    out: list[SeriesInfo] = []
    skipped: list[Skipped] = []
    for key, members in groups.items():
        if key[0]:
            parts = [(key[0], members, [])]
        else:
            note = "no SeriesInstanceUID: grouped by study, modality, series and acquisition number and geometry"
            singles = [h for h in members if h.frames == 1 and not h.enhanced]
            pieces = _geometry_clusters(singles) + [[h] for h in members if h.frames > 1 or h.enhanced]
            parts = [(uid := _made_up_uid(key, p), p, [f"{note} (uid {uid} made up)"]) for p in pieces]
        for uid, part, notes in parts:
            infos, dropped = _series_of(uid, part, notes)
            out.extend(infos)
            skipped.extend(dropped)
    return out, skipped


def _series_of(uid: str, members: list[Header], notes: list[str]) -> tuple[list[SeriesInfo], list[Skipped]]:
    """The stacks of one SeriesInstanceUID: the largest keeps the uid, the others get ".2", ".3", ...

    The parts of a 4D set are numbered like stacks and gathered into one SeriesInfo of kind "4d".
    """
    stacks: list[_Stack] = []
    clusters = _geometry_clusters([h for h in members if h.frames == 1 and not h.enhanced])
    set_ids = iter(range(1 << 30))
    for cluster in clusters:
        if len(cluster) > 1 and cluster[0].modality in PROJECTION_MODALITIES:
            # Radiographs (or single ultrasound frames) of one series are images side by side, not slices.
            ordered = sorted(cluster, key=lambda h: (h.instance_number is None, h.instance_number or 0, h.path))
            stacks.extend(_Stack([h], note=f"image {i + 1}") for i, h in enumerate(ordered))
        else:
            stacks.extend(_split_repeats(cluster, next(set_ids)))
    for h in members:
        if h.frames > 1 or h.enhanced:
            stacks.extend(_split_frames(h, next(set_ids)))
    split_reason = _split_reason(clusters, stacks) if len(stacks) > 1 else ""
    infos, skipped = [], []
    for i, stack in enumerate(stacks):
        warnings = list(notes)
        if split_reason and stack.set_id is None:
            warnings.append(f"series {uid} split into {len(stacks)} stacks ({split_reason}); this is stack {i + 1}")
        info, dropped = _stack_to_series(stack, uid if i == 0 else f"{uid}.{i + 1}", warnings)
        infos.append(info)
        skipped.extend(dropped)
    return _gather_sets(stacks, infos, split_reason), skipped


def _gather_sets(stacks: list[_Stack], infos: list[SeriesInfo], split_reason: str) -> list[SeriesInfo]:
    """Each 4D set's parts (consecutive stacks with one set id) become one SeriesInfo holding them."""
    out: list[SeriesInfo] = []
    i = 0
    while i < len(stacks):
        set_id = stacks[i].set_id
        j = i + 1
        while set_id is not None and j < len(stacks) and stacks[j].set_id == set_id:
            j += 1
        if set_id is None or j - i < 2:
            out.append(infos[i])
            i = j
            continue
        parts = tuple(infos[i:j])
        parameter = stacks[i].parameter
        first = parts[0]
        note = f"4D set: {len(parts)} stacks of {first.shape_zyx[0]} slices at the same positions, one per {parameter}"
        warnings = [w for w in first.warnings if not w.startswith("series ")]
        others = len(stacks) - (j - i)
        if others:
            warnings.append(f"the series also holds {others} other stack(s) ({split_reason})")
        out.append(
            replace(
                first,
                kind=SET_4D,
                files=tuple(f for p in parts for f in p.files),
                warnings=(note, *warnings),
                parts=parts,
                dimension=parameter,
                part_labels=tuple(s.note for s in stacks[i:j]),
            )
        )
        i = j
    return out


def _geometry_clusters(headers: list[Header]) -> list[list[Header]]:
    """Headers that share orientation (±0.001), size and pixel spacing (±0.1 %), largest cluster first."""
    clusters: list[list[Header]] = []
    for h in headers:
        for cluster in clusters:
            if _same_grid(cluster[0], h):
                cluster.append(h)
                break
        else:
            clusters.append([h])
    clusters.sort(key=lambda c: -len(c))
    return clusters


def _same_grid(a: Header, b: Header) -> bool:
    # Plain Python, not np.allclose: this runs for every file, and numpy's per-call overhead dominated.
    if (a.rows, a.columns) != (b.rows, b.columns):
        return False
    oa, ob = a.geometry.orientation, b.geometry.orientation
    if (oa is None) != (ob is None) or (oa is not None and any(abs(x - y) > 1e-3 for x, y in zip(oa, ob, strict=True))):
        return False
    sa, sb = a.geometry.pixel_spacing, b.geometry.pixel_spacing
    return (sa is None) == (sb is None) and (
        sa is None or all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(sa, sb, strict=True))
    )


def _split_repeats(cluster: list[Header], set_id: int) -> list[_Stack]:
    """One stack, or the parts of a 4D set when positions repeat (split by time point, b-value, echo,
    acquisition, or the k-th repetition of each position in InstanceNumber order)."""
    if len(cluster) < 2 or not all(h.geometry.positions is not None for h in cluster):
        return [_Stack(cluster)]
    along = _along_normal(cluster)
    if not repeats(along):
        return [_Stack(cluster)]
    params = {
        "temporal position": [h.temporal_position for h in cluster],
        "trigger time": [h.trigger_time for h in cluster],
        "b-value": [h.b_value for h in cluster],
        "echo": [h.echo_number for h in cluster],
        "acquisition": [h.acquisition_number for h in cluster],
    }
    split = split_repeats(along, params, [h.instance_number for h in cluster])
    if split is None:
        return [_Stack(cluster)]  # uneven repeats: the duplicates are dropped with a reason
    parameter, groups = split
    return [
        _Stack([cluster[i] for i in members], note=label_of(parameter, value), set_id=set_id, parameter=parameter)
        for value, members in groups
    ]


def _split_frames(h: Header, set_id: int) -> list[_Stack]:
    """A multi-frame file: one stack, or the parts of a 4D set when its frames repeat positions."""
    positions = h.geometry.positions
    if positions is None or len(positions) < 2:
        return [_Stack([h], multiframe=True)]
    o = h.geometry.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    along = positions @ np.cross(o[:3], o[3:])
    if not repeats(along):
        return [_Stack([h], multiframe=True)]
    split = split_repeats(along, h.frame_params)
    if split is None:
        return [_Stack([h], multiframe=True)]
    parameter, groups = split
    return [
        _Stack([h], multiframe=True, note=label_of(parameter, v), frames=tuple(f), set_id=set_id, parameter=parameter)
        for v, f in groups
    ]


def _along_normal(headers: list[Header]) -> np.ndarray:
    o = headers[0].geometry.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    normal = np.cross(o[:3], o[3:])
    return np.array([h.geometry.positions[0] @ normal for h in headers])


def _split_reason(clusters: list[list[Header]], stacks: list[_Stack]) -> str:
    reasons = []
    heads = [c[0] for c in clusters]
    orientations = list(dict.fromkeys(_orientation_name(h.geometry.orientation) for h in heads))
    if len(orientations) > 3:  # name the kinds only, or the line gets unreadable
        kinds = Counter(name.split(" (")[0] for name in orientations)
        orientations = [kind if n == 1 else f"{n} {kind}" for kind, n in kinds.items()]
    if len(orientations) > 1:
        reasons.append(f"orientations differ: {', '.join(orientations)}")
    sizes = {(h.rows, h.columns) for h in heads}
    if len(sizes) > 1:
        reasons.append("sizes differ: " + ", ".join(f"{r}×{c}" for r, c in sorted(sizes)))
    spacings = {tuple(np.round(h.geometry.pixel_spacing, 4)) if h.geometry.pixel_spacing else None for h in heads}
    if len(spacings) > 1:
        reasons.append(
            "pixel spacings differ: " + ", ".join("none" if s is None else f"{s[0]:g}×{s[1]:g} mm" for s in spacings)
        )
    images = sum(1 for s in stacks if s.note.startswith("image "))
    if images:
        reasons.append(f"{images} single images of a projection modality, each a projection of its own")
    multiframe = sum(s.multiframe and s.set_id is None for s in stacks)
    if multiframe:
        reasons.append(f"{multiframe} multi-frame image(s), each its own stack")
    sets = {s.set_id for s in stacks if s.set_id is not None}
    if sets:
        reasons.append(f"{len(sets)} 4D set(s)")
    return "; ".join(reasons) or "stacks differ"


def _orientation_name(orientation) -> str:
    """axial / coronal / sagittal within ~8°, else oblique with its row and column cosines."""
    if orientation is None:
        return "no orientation"
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    axis = int(np.argmax(normal))
    if normal[axis] > 0.99:
        return ("sagittal", "coronal", "axial")[axis]
    row = " ".join(f"{round(v, 2) + 0.0:.2f}" for v in orientation[:3])  # + 0.0: no "-0.00"
    col = " ".join(f"{round(v, 2) + 0.0:.2f}" for v in orientation[3:])
    return f"oblique (row {row}, column {col})"


def _stack_to_series(stack: _Stack, uid: str, warnings: list[str]) -> tuple[SeriesInfo, list[Skipped]]:
    first = stack.headers[0]
    g = first.geometry
    skipped: list[Skipped] = []
    if stack.multiframe:
        frames = list(stack.frames) or list(range(first.frames))
        positions = g.positions[frames] if g.positions is not None else None
        geo = stack_geometry(g.orientation, positions, None, g.fallback_spacing_z, what="frames")
        warnings.extend(g.warnings)
        warnings.extend(geo.warnings)
        if positions is not None and list(geo.order) != sorted(geo.order):
            warnings.append("frames are stored out of slice order; they are sorted along the normal when loaded")
        files = (first.path,)
        depth = len(frames)
    else:
        headers = stack.headers
        geo, headers, dropped = _order_slices(headers)
        skipped.extend(dropped)
        if dropped:
            warnings.append(
                f"duplicate positions: {len(dropped)} file(s) repeat the position of another slice; "
                "the first file at each position is kept, the others are listed as skipped"
            )
        warnings.extend(geo.warnings)
        files = tuple(headers[i].path for i in geo.order)
        depth = len(files)
    kind = classify(
        first.modality,
        depth,
        has_orientation=g.orientation is not None and not g.patient_orientation,
        has_positions=g.positions is not None if stack.multiframe else all(
            h.geometry.positions is not None for h in stack.headers
        ),
        multiframe=stack.multiframe,
        timed=first.timed,
    )
    if g.pixel_spacing is None:
        warnings.append(g.calibration or "no PixelSpacing in the header: lengths in pixels")
    warnings = without_slice_notes(kind, warnings)  # a projection or a cine has no slices to place
    spacing_yx = g.pixel_spacing or (1.0, 1.0)
    info = SeriesInfo(
        uid=uid,
        modality=first.modality,
        description=first.description,
        study=first.study,
        files=files,
        shape_zyx=(depth, first.rows, first.columns),
        spacing_zyx=(geo.spacing_z if kind == VOLUME else 1.0, float(spacing_yx[0]), float(spacing_yx[1])),
        origin_lps=geo.origin_lps,
        direction=geo.direction,
        warnings=tuple(warnings),
        number=first.series_number,
        frames_per_file=first.frames if stack.multiframe else 1,
        kind=kind,
        frames=tuple(stack.frames),
    )
    return info, skipped


def _order_slices(headers: list[Header]) -> tuple[StackGeometry, list[Header], list[Skipped]]:
    """Order single-frame slices; drop files repeating a position (they would stack twice)."""
    g = headers[0].geometry
    with_position = [h for h in headers if h.geometry.positions is not None]
    positions = np.array([h.geometry.positions[0] for h in headers]) if len(with_position) == len(headers) else None
    numbers = [h.instance_number for h in headers]
    fallback = next((h.geometry.fallback_spacing_z for h in headers if h.geometry.fallback_spacing_z), None)
    geo = stack_geometry(g.orientation, positions, numbers, fallback)
    if positions is None and with_position and len(headers) > 1:
        extra = f"{len(headers) - len(with_position)} of {len(headers)} slices have no ImagePositionPatient"
        geo = StackGeometry(geo.order, geo.spacing_z, geo.origin_lps, geo.direction, (extra, *geo.warnings), ())
    if not geo.duplicates:
        return geo, headers, []
    keep_index = [i for i in geo.order if i not in set(geo.duplicates)]
    position_of = {i: n for n, i in enumerate(geo.order)}
    dropped = []
    for i in geo.duplicates:
        twin = geo.order[position_of[i] - 1]
        while twin in geo.duplicates:
            twin = geo.order[position_of[twin] - 1]
        dropped.append(
            Skipped(headers[i].path, f"same position as {os.path.basename(headers[twin].path)} in its series")
        )
    kept = [headers[i] for i in keep_index]
    geo = stack_geometry(g.orientation, positions[keep_index], [numbers[i] for i in keep_index], fallback)
    return geo, kept, dropped


def _made_up_uid(key: tuple, members: list[Header]) -> str:
    """A stable, valid UID (2.25 root) for files without a SeriesInstanceUID."""
    # From the files' own SOPInstanceUIDs (or names), so that the same files read from another
    # mount point or as a relative path get the same uid.
    first = min(h.sop_instance or os.path.basename(h.path) for h in members)
    digest = hashlib.sha1(repr((key, first)).encode()).hexdigest()
    return f"2.25.{int(digest[:30], 16)}"
