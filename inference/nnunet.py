"""nnU-Net v2's own inference, step for step, for models imported from an nnU-Net results folder.

Why a module of its own: an nnU-Net model only works on input prepared exactly as nnU-Net's
predictor prepares it, and its label maps only match nnU-Net's when the logits go back the same way:
transpose → crop to the non-zero box → normalise (CT: clip to the training foreground's 0.5/99.5
percentiles, then its mean and std; otherwise z-score) → resample (order 3 in-plane, order 0 along
a strongly anisotropic axis) → sliding windows at half-patch steps blended with a Gaussian (σ =
patch/8), mirrored over the checkpoint's axes, folds averaged, summed in float16 → logits resampled back (order 1)
before the argmax → pasted into the crop → transposed back. The references are nnunetv2's
``preprocessing/preprocessors/default_preprocessor.py``, ``preprocessing/resampling/default_resampling.py``,
``inference/sliding_window_prediction.py`` and ``inference/export_prediction.py``. Parity with
``nnUNetPredictor`` (Dice ≥ 0.99 per label) is the contract; tests/inference/test_nnunet_parity.py
checks it on a model nnU-Net itself trains. numpy and scipy only at import; torch inside the run.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from radlens.imaging.progress import Progress
from radlens.imaging.volume import Volume
from radlens.inference.errors import BundleError

NORMALIZATIONS = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization")
RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"
CONFIGURATIONS = ("2d", "3d_fullres")
ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD
TILE_STEP = 0.5  # nnUNetPredictor's default tile_step_size
INTENSITY_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")


@dataclass(frozen=True)
class Resampling:
    """One of the plans' ``resampling_fn_*_kwargs``: spline order in-plane, along the low-resolution axis."""

    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None

    @classmethod
    def from_json(cls, block, where) -> Resampling:
        block = dict(block or {})
        block.pop("is_seg", None)
        unknown = sorted(set(block) - {"order", "order_z", "force_separate_z"})
        if unknown:
            raise BundleError(where, f"resampling has unknown field(s): {', '.join(unknown)}")
        order, order_z = block.get("order", 3), block.get("order_z", 0)
        if order not in range(6) or order_z not in range(6):
            raise BundleError(where, f"resampling orders must be 0-5, not {order!r} / {order_z!r}")
        force = block.get("force_separate_z")
        if force not in (None, True, False):
            raise BundleError(where, f"force_separate_z must be true, false or null, not {force!r}")
        return cls(int(order), int(order_z), force)


@dataclass(frozen=True)
class NnunetPlan:
    """What the predictor needs from plans.json, dataset.json and the checkpoint, as typed data."""

    configuration: str
    transpose_forward: tuple[int, int, int]
    spacing: tuple[float, ...]  # the configuration's spacing, transposed: 3 numbers (3d) or 2 (2d)
    patch_size: tuple[int, ...]
    normalization: str
    use_mask_for_norm: bool
    intensity: dict  # the training foreground's mean, std and 0.5 / 99.5 percentiles (CT)
    data_resampling: Resampling
    probability_resampling: Resampling
    mirror_axes: tuple[int, ...]  # the network's axes, as the checkpoint's inference_allowed_mirroring_axes

    @property
    def is_2d(self) -> bool:
        return len(self.patch_size) == 2

    @property
    def transpose_backward(self) -> tuple[int, int, int]:
        return tuple(int(i) for i in np.argsort(self.transpose_forward))

    @classmethod
    def from_json(cls, block, where: object = "nnunet") -> NnunetPlan:
        if not isinstance(block, dict):
            raise BundleError(where, "the nnunet block must be a JSON object")
        try:
            configuration = str(block["configuration"])
            transpose = tuple(int(i) for i in block["transpose_forward"])
            spacing = tuple(float(s) for s in block["spacing"])
            patch = tuple(int(p) for p in block["patch_size"])
            norm = str(block["normalization"])
            mirror = tuple(int(a) for a in block.get("mirror_axes") or ())
            intensity = {k: float(v) for k, v in dict(block.get("intensity") or {}).items()}
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(where, f"the nnunet block is incomplete or malformed: {err}") from None
        if configuration not in CONFIGURATIONS:
            raise BundleError(
                where, f"nnU-Net configuration {configuration!r} is not supported yet (supported: 2d, 3d_fullres)"
            )
        if sorted(transpose) != [0, 1, 2]:
            raise BundleError(where, f"transpose_forward {transpose} is not a permutation of the three axes")
        if len(patch) not in (2, 3) or len(spacing) != len(patch) or min(patch) < 1 or min(spacing) <= 0:
            raise BundleError(where, f"patch_size {patch} and spacing {spacing} must be 2 or 3 positive numbers each")
        if norm not in NORMALIZATIONS:
            raise BundleError(
                where, f"normalization {norm!r} is not supported (supported: {', '.join(NORMALIZATIONS)})"
            )
        if norm == "CTNormalization" and any(k not in intensity for k in INTENSITY_KEYS):
            raise BundleError(
                where, "CTNormalization needs the foreground intensity properties " + ", ".join(INTENSITY_KEYS)
            )
        if any(a not in range(len(patch)) for a in mirror):
            raise BundleError(where, f"mirror_axes {mirror} do not fit a {len(patch)}D network")
        return cls(
            configuration,
            transpose,
            spacing,
            patch,
            norm,
            bool(block.get("use_mask_for_norm", False)),
            intensity,
            Resampling.from_json(block.get("data_resampling"), where),
            Resampling.from_json(block.get("probability_resampling"), where),
            mirror,
        )

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("transpose_forward", "spacing", "patch_size", "mirror_axes"):
            out[key] = list(out[key])
        return out


# -- nnU-Net's resampling (default_resampling.py), on scipy alone ------------------------------------


def resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    """``skimage.transform.resize(image, shape, order, mode="edge", anti_aliasing=False)``, as nnU-Net calls it:
    scipy's zoom on the voxel grid (``grid_mode``), edges repeated, the result clipped to the input's range."""
    shape = tuple(int(s) for s in shape)
    if tuple(image.shape) == shape:
        return image.astype(np.float32, copy=True)
    zoom = [n / o for n, o in zip(shape, image.shape, strict=True)]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True, output=np.float32)
    if order > 0:
        np.clip(out, image.min(), image.max(), out=out)
    return out


def separate_axis(current_spacing, new_spacing, force: bool | None) -> int | None:
    """The axis nnU-Net resamples on its own (order_z), or None: ``determine_do_sep_z_and_axis``."""

    def lowres_axes(spacing):
        spacing = np.asarray(spacing, dtype=np.float64)
        return np.flatnonzero(spacing.max() / spacing == 1)

    def anisotropic(spacing):
        return max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD

    if force is not None:
        axes = lowres_axes(current_spacing) if force else None
    elif anisotropic(current_spacing):
        axes = lowres_axes(current_spacing)
    elif anisotropic(new_spacing):
        axes = lowres_axes(new_spacing)
    else:
        axes = None
    return int(axes[0]) if axes is not None and len(axes) == 1 else None


def resample(data: np.ndarray, new_shape, current_spacing, new_spacing, how: Resampling) -> np.ndarray:
    """(C, Z, Y, X) float data onto ``new_shape``: ``resample_data_or_seg_to_shape`` for images and logits."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    axis = separate_axis(current_spacing, new_spacing, how.force_separate_z)
    out = np.empty((data.shape[0], *new_shape), dtype=np.float32)
    for c in range(data.shape[0]):
        if axis is None:
            out[c] = resize(data[c], new_shape, how.order)
            continue
        plane = [s for a, s in enumerate(new_shape) if a != axis]
        slices = [resize(np.take(data[c], i, axis=axis), plane, how.order) for i in range(data.shape[1 + axis])]
        stacked = np.stack(slices, axis=axis)
        if stacked.shape[axis] == new_shape[axis]:
            out[c] = stacked
            continue
        # Along the low-resolution axis: map_coordinates at the voxel centres (align_corners=False).
        scale = stacked.shape[axis] / new_shape[axis]
        coords = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in new_shape], indexing="ij")
        coords = [scale * (g + 0.5) - 0.5 if a == axis else g for a, g in enumerate(coords)]
        out[c] = ndimage.map_coordinates(stacked, np.stack(coords), order=how.order_z, mode="nearest")
    return out


def new_shape_for(shape, current_spacing, new_spacing) -> tuple[int, ...]:
    """``compute_new_shape``: the voxel count that keeps the extent at the new spacing."""
    return tuple(round(c / n * s) for s, c, n in zip(shape, current_spacing, new_spacing, strict=True))


# -- preprocessing and its inverse ---------------------------------------------------------------


def nonzero_box(image: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """``crop_to_nonzero``: the box of the non-zero voxels (holes filled) and that mask inside the box."""
    mask = ndimage.binary_fill_holes(image != 0)
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        box = tuple(slice(0, 0) for _ in image.shape)
        return box, mask[box]
    return found[0], mask[found[0]]


def normalize(image: np.ndarray, inside: np.ndarray, plan: NnunetPlan) -> np.ndarray:
    """The plans' normalisation scheme (default_normalization_schemes.py) on a float32 image, in place."""
    eps = 1e-8
    if plan.normalization == "CTNormalization":
        p = plan.intensity
        np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
        image -= p["mean"]
        image /= max(p["std"], eps)
    elif plan.normalization == "ZScoreNormalization":
        if plan.use_mask_for_norm:
            values = image[inside]
            image[inside] = (values - values.mean()) / max(float(values.std()), eps)
        else:
            image -= image.mean()
            image /= max(float(image.std()), eps)
    elif plan.normalization == "RescaleTo01Normalization":
        image -= image.min()
        image /= max(float(image.max()), eps)
    return image


@dataclass(frozen=True)
class Prepared:
    """An input prepared as nnU-Net prepares it, and what mapping its logits back needs."""

    image: np.ndarray  # (Z, Y, X) float32 on the model grid, in transposed axis order, padded to the patch
    unpad: tuple[slice, slice, slice]
    shape_before_crop: tuple[int, int, int]  # transposed axis order
    box: tuple[slice, slice, slice]
    shape_after_crop: tuple[int, int, int]
    spacing: tuple[float, float, float]  # the input's, transposed
    model_spacing: tuple[float, float, float]


def prepare(volume: Volume, plan: NnunetPlan) -> Prepared:
    """``DefaultPreprocessor.run_case_npy`` for one channel, then the predictor's padding to the patch."""
    t = plan.transpose_forward
    data = np.transpose(np.asarray(volume.array, dtype=np.float32), t)
    spacing = tuple(float(volume.spacing_zyx[i]) for i in t)
    shape_before = data.shape
    box, inside = nonzero_box(data)
    data = np.ascontiguousarray(data[box])
    model_spacing = plan.spacing if not plan.is_2d else (spacing[0], *plan.spacing)
    shape = new_shape_for(data.shape, spacing, model_spacing)
    data = normalize(data, inside, plan)
    image = resample(data[None], shape, spacing, model_spacing, plan.data_resampling)[0]
    patch = (1, *plan.patch_size) if plan.is_2d else plan.patch_size
    image, unpad = pad_to_patch(image, patch)
    return Prepared(image, unpad, shape_before, box, data.shape, spacing, tuple(model_spacing))


def pad_to_patch(image: np.ndarray, patch) -> tuple[np.ndarray, tuple[slice, ...]]:
    """``pad_nd_image``: zeros around an image smaller than the patch, the content centred (odd extra after)."""
    pads = [(max(0, p - s) // 2, max(0, p - s) - max(0, p - s) // 2) for s, p in zip(image.shape, patch, strict=True)]
    if not any(a or b for a, b in pads):
        return image, tuple(slice(None) for _ in image.shape)
    unpad = tuple(slice(a, a + s) for (a, _), s in zip(pads, image.shape, strict=True))
    return np.pad(image, pads, mode="constant", constant_values=0), unpad


def window_starts(size: int, patch: int, step: float = TILE_STEP) -> list[int]:
    """``compute_steps_for_sliding_window`` along one axis: evenly spread, first and last flush with the ends."""
    n = math.ceil((size - patch) / (patch * step)) + 1
    if n <= 1:
        return [0]
    stride = (size - patch) / (n - 1)
    return [int(np.round(stride * i)) for i in range(n)]


def gaussian_profile(patch: int) -> np.ndarray:
    """One axis of ``compute_gaussian`` (σ = patch/8, peak at patch // 2); the 3D weight is their product."""
    offset = np.arange(patch, dtype=np.float64) - patch // 2
    return np.exp(-0.5 * (offset / (patch / 8.0)) ** 2).astype(np.float32)


def to_labels(logits, prepared: Prepared, plan: NnunetPlan, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``convert_predicted_logits_to_segmentation_with_correct_shape``: (label map, max probability × 255)
    on the input grid, in the input's axis order."""
    import torch

    logits = np.asarray(logits[(slice(None), *prepared.unpad)], dtype=np.float32)
    logits = resample(
        logits, prepared.shape_after_crop, prepared.model_spacing, prepared.spacing, plan.probability_resampling
    )
    probs = torch.softmax(torch.from_numpy(logits), dim=0)
    del logits
    best, labels = probs.max(dim=0)
    dtype = np.uint8 if n_classes <= 256 else np.uint16
    label_map = np.zeros(prepared.shape_before_crop, dtype=dtype)
    confidence = np.zeros(prepared.shape_before_crop, dtype=np.uint8)
    label_map[prepared.box] = labels.numpy().astype(dtype)
    confidence[prepared.box] = np.round(best.numpy() * 255).astype(np.uint8)
    back = plan.transpose_backward
    return np.transpose(label_map, back), np.transpose(confidence, back)


def run(
    network,
    volume: Volume,
    plan: NnunetPlan,
    n_classes: int,
    *,
    device: str = "cpu",
    cancel: threading.Event | None = None,
    what: str = "model",
    amp: bool = True,
    batch: int | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, str]]:
    """The whole prediction on one volume: yields window progress, returns (label map, confidence, device)."""
    from radlens.inference.engine import WindowGrid, sliding_windows

    prepared = prepare(volume, plan)
    patch = (1, *plan.patch_size) if plan.is_2d else plan.patch_size
    starts = [window_starts(s, p) for s, p in zip(prepared.image.shape, patch, strict=True)]
    if plan.is_2d:
        starts[0] = list(range(prepared.image.shape[0]))  # every slice, as the predictor's 2D loop
    profiles = [gaussian_profile(p) for p in patch]
    grid = WindowGrid.from_starts(prepared.image.shape, patch, starts, profiles)
    offset = 1 if plan.is_2d else 0  # a 2D network's axes are the image's y and x
    output, used = yield from sliding_windows(
        network,
        prepared.image,
        patch,
        device=device,
        cancel=cancel,
        what=what,
        amp=amp,
        batch=batch or (16 if plan.is_2d else None),
        mirror_axes=[a + offset for a in plan.mirror_axes],
        blend="gaussian",
        grid=grid,
        half_sums=True,
    )
    labels, confidence = to_labels(output, prepared, plan, n_classes)
    return labels, confidence, used
