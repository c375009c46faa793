"""A stack of slice positions ordered along the slice normal: its grid, spacing and defects.

Positions decide the order and the spacing; InstanceNumber, SliceThickness and SpacingBetweenSlices
are only fallbacks, and using one says so in a warning. Discovery (:mod:`radlens.imaging.grouping`)
and the loader (:mod:`radlens.imaging.dicom`) share it, so both place the same slices the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StackGeometry:
    """A stack of slices ordered along the normal: the grid it makes and what is wrong with it."""

    order: tuple[int, ...]  # input indices in slice order
    spacing_z: float
    origin_lps: tuple[float, float, float]
    direction: np.ndarray  # columns: row cosine (x), column cosine (y), normal (z)
    warnings: tuple[str, ...]
    duplicates: tuple[int, ...]  # input indices whose position repeats the slice before them in ``order``


MAX_GAP_WARNINGS = 8


def stack_geometry(
    orientation,
    positions,
    instance_numbers=None,
    fallback_spacing_z: float | None = None,
    what: str = "slices",
) -> StackGeometry:
    """Order ``positions`` along ``cross(row, column)`` and measure the spacing from them.

    The spacing is the median gap between distinct positions. Gaps of about k× the median are
    reported as missing slices, other gaps off the median by more than 1 % (and 0.01 mm) as uneven
    spacing, repeated positions as duplicates, in-plane drift as shear. Without positions the order
    falls back to ``instance_numbers`` and the spacing to ``fallback_spacing_z``, with a warning.
    """
    warnings: list[str] = []
    if orientation is None:
        direction = np.eye(3)
    else:
        row = np.asarray(orientation[:3], dtype=np.float64)
        col = np.asarray(orientation[3:], dtype=np.float64)
        row /= np.linalg.norm(row)
        col = col - (col @ row) * row
        col /= np.linalg.norm(col)
        direction = np.column_stack([row, col, np.cross(row, col)])
    n = len(positions) if positions is not None else len(instance_numbers or ())
    if positions is None:
        keys = list(instance_numbers) if instance_numbers is not None else list(range(n))
        order = sorted(range(n), key=lambda i: (keys[i] is None, keys[i] if keys[i] is not None else 0, i))
        if n > 1:
            by = "InstanceNumber" if instance_numbers is not None and any(k is not None for k in keys) else "file order"
            source = "SpacingBetweenSlices/SliceThickness" if fallback_spacing_z else "nothing (1 mm assumed)"
            warnings.append(f"no ImagePositionPatient: {what} ordered by {by}, spacing taken from {source}")
        return StackGeometry(
            tuple(order), float(fallback_spacing_z or 1.0), (0.0, 0.0, 0.0), direction, tuple(warnings), ()
        )

    pos = np.asarray(positions, dtype=np.float64).reshape(n, 3)
    if orientation is None and n > 1:
        warnings.append(f"no ImageOrientationPatient: axial {what} assumed")
    normal = direction[:, 2]
    along = pos @ normal
    tie = list(instance_numbers) if instance_numbers is not None else list(range(n))
    order = sorted(range(n), key=lambda i: (along[i], tie[i] if tie[i] is not None else 0, i))
    d = along[order]
    gaps = np.diff(d)
    duplicate_mask = np.concatenate([[False], gaps < 1e-3])
    duplicates = tuple(int(order[i]) for i in np.flatnonzero(duplicate_mask))
    if duplicates:
        distinct = int((~duplicate_mask).sum())
        warnings.append(
            f"duplicate positions: {len(duplicates)} of {n} {what} repeat a position "
            f"({distinct} distinct positions, e.g. {_fmt_pos(pos[duplicates[0]])} mm)"
        )
    unique = d[~duplicate_mask]
    ugaps = np.diff(unique)
    if len(ugaps):
        spacing = float(np.median(ugaps))
        warnings.extend(_gap_warnings(unique, ugaps, spacing, what))
    else:
        spacing = float(fallback_spacing_z or 1.0)
    drift = pos - pos[order[0]]
    in_plane = drift - np.outer(drift @ normal, normal)
    shear = float(np.max(np.linalg.norm(in_plane, axis=1))) if n > 1 else 0.0
    if shear > 0.1:
        warnings.append(
            f"{what} are sheared: positions drift {shear:.3g} mm in-plane over the stack (gantry tilt?); "
            "the grid assumes no shear"
        )
    origin = tuple(float(v) for v in pos[order[0]])
    return StackGeometry(tuple(order), spacing, origin, direction, tuple(warnings), duplicates)


def _gap_warnings(along: np.ndarray, gaps: np.ndarray, spacing: float, what: str) -> list[str]:
    lines = []
    for i, gap in enumerate(gaps):
        if abs(gap - spacing) <= max(0.01, 0.01 * spacing):
            continue
        k = round(gap / spacing)
        where = f"between positions {along[i]:.2f} and {along[i + 1]:.2f} mm along the normal"
        if k >= 2 and abs(gap - k * spacing) <= 0.1 * spacing:
            lines.append(
                f"missing {what}: gap of {gap:.3g} mm {where} is {k}× the {spacing:.3g} mm spacing ({k - 1} missing)"
            )
        else:
            lines.append(f"uneven spacing: gap of {gap:.3g} mm {where} (median {spacing:.3g} mm)")
    if len(lines) > MAX_GAP_WARNINGS:
        rest = len(lines) - MAX_GAP_WARNINGS
        lines = [*lines[:MAX_GAP_WARNINGS], f"... and {rest} more uneven or missing gaps"]
    return lines


def _fmt_pos(p) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in p) + ")"
