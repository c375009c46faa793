"""The one place RadLens opens a pickle: a foreign model's weights, once, at import, weights-only.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers and refuses any other class,
so a checkpoint that would run code on unpickling is refused instead (the file and the reason in
one line). numpy's scalar and dtype types are allowed too: nnU-Net's training log stores numpy
floats in every checkpoint, and rebuilding them runs nothing.
"""

from __future__ import annotations

import os
import pickle

from radlens.inference.errors import BundleError


def load_weights_only(path: str | os.PathLike):
    import numpy as np
    import torch

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed = [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(path, f"refused: not loadable as weights only ({first[:200]})") from None
    except OSError as err:
        raise BundleError(path, f"cannot read: {err.strerror or err}") from None
