"""A segmenter whose components a detector confirms (``confirmed_by`` in its metadata).

Why: a segmenter trained on one generator's nodules outlined some thirty vessels and specks per scan
of another; the two-stage detector, which sees every blob and rejects most, is the better judge of
which of them is a nodule. A component is kept when it touches one of that detector's boxes above the
detector's threshold. The detector's boxes are kept per volume, so the two run side by side (in the
viewer, ``radlens infer``) cost one detector run.
"""

from __future__ import annotations

import threading
import weakref

from radlens.imaging.volume import Volume
from radlens.inference import applicability
from radlens.inference.bundle import LoadedBundle, find_bundle, load_bundle
from radlens.inference.errors import BundleError

_DETECTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DETECTED_LOCK = threading.Lock()


def known_detections(volume: Volume, bundle: LoadedBundle):
    """The boxes this detector found on this very volume already (all of them, above the floor), or None."""
    with _DETECTED_LOCK:
        return _DETECTED.get(volume, {}).get(_key(bundle))


def remember_detections(volume: Volume, bundle: LoadedBundle, detections) -> None:
    """Keep a detector's boxes on this volume for the segmenters it confirms (dropped with the volume)."""
    with _DETECTED_LOCK:
        _DETECTED.setdefault(volume, {})[_key(bundle)] = tuple(detections)


def _key(bundle: LoadedBundle) -> tuple:
    """What a detector's boxes depend on: its weights and how it is run (not its recorded figures)."""
    meta = bundle.metadata
    return bundle.sha256, meta.pipeline, meta.scoring, repr(meta.input), repr(meta.applicability), meta.labels


def confirming_boxes(volume: Volume, bundle: LoadedBundle, device, cancel, amp: bool):
    """The boxes, above its threshold, of the detector a segmenter's components must touch
    (``confirmed_by``; looked for beside the segmenter first), and the note that says so; a generator
    (the detector's progress). When that detector is missing or does not run on this series: None
    (nothing is dropped) and a warning."""
    name = bundle.metadata.confirmed_by
    try:
        detector = load_bundle(find_bundle(name, dirs=(bundle.info.path.parent,)))
    except BundleError as err:
        return None, (f"its components are not checked against {name}: {err}",)
    from radlens.inference.engine import run_bundle

    found = yield from run_bundle(volume, detector, device=device, cancel=cancel, amp=amp)
    if any(w.startswith(applicability.REFUSED) for w in found.models[0].warnings):
        return None, (f"its components are not checked against {name}, which does not run on this series",)
    threshold = detector.info.threshold if detector.info.threshold is not None else 0.5
    boxes = [d.box_zyx for d in found.detections if d.score >= threshold]
    note = (
        f"outlines only what {detector.name} {detector.info.version} also found above its threshold "
        f"({len(boxes)} box{'es' if len(boxes) != 1 else ''})"
    )
    return boxes, (note,)
