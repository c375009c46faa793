"""What a ``radlens train`` run was asked to do, fixed once before anything runs.

The CLI builds a :class:`TrainConfig` from its options (``training.cli.train_config``); tests and
benchmarks build one directly. A field left at ``None`` is decided by the plan from the data and
the device (``training.plan.make_plan``).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from radlens.inference.metadata import CROPS, DEFAULT_BLEND, DEFAULT_OVERLAP, is_window_overlap
from radlens.training.errors import TrainingError

TASKS = {"segment": "segmentation", "detect": "detection"}
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class TrainConfig:
    task: str  # a key of TASKS
    dataset: Path
    out: Path
    epochs: int | None = None  # None: 20 on the CPU, 200 on a GPU
    iterations: int | None = None  # per epoch; None: 50 on the CPU, 250 on a GPU
    batch: int | None = None  # None: 2 on the CPU, 4 on a GPU
    patch: tuple[int, int, int] | None = None  # zyx voxels; None: from the data and the device
    spacing: tuple[float, float, float] | None = None  # zyx mm; None: the training images' median
    lr: float = 2e-3
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    channels: tuple[int, ...] | None = None  # per level; None: the task's default network
    res_units: int = 1
    val_every: int = 1
    val_fraction: float = VAL_FRACTION
    mirror_axes: tuple[int, ...] = ()
    overlap: float = DEFAULT_OVERLAP
    blend: str = DEFAULT_BLEND
    clip: tuple[float, float] | None = None  # CT window in HU; None: the foreground's 0.5/99.5 percentiles
    crop: str | None = None  # one of CROPS or "none"; None: "body" for CT
    init: Path | None = None  # a bundle to start from (fine-tuning): its network, input and weights

    def __post_init__(self) -> None:
        """Refuse what no run could use before anything is read or trained."""
        if self.task not in TASKS:
            raise TrainingError(f"radlens train {self.task}: only {' and '.join(TASKS)} are implemented")
        if not is_window_overlap(self.overlap):
            raise TrainingError(f"--overlap {self.overlap}: must be from 0 up to (not including) 1")
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise TrainingError(f"--clip {self.clip[0]:g} {self.clip[1]:g}: the low end must be below the high end")
        if self.crop is not None and self.crop not in (*CROPS, "none"):
            raise TrainingError(f"--crop {self.crop}: must be one of {', '.join(CROPS)} or none")


def command_line() -> str:
    """The command as a user would retype it (recorded in bundles so results can be reproduced)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("radlens", "__main__.py", "cli.py"):
        argv[0] = "radlens"
    return shlex.join(argv)
