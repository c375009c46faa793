"""``radlens train`` on a terminal: a tqdm bar per epoch (loss, then the validation metric), one line
per epoch when stderr is not a terminal; in a distributed run only rank 0 speaks."""

from __future__ import annotations

import sys

from radlens.imaging.progress import Progress, run_showing
from radlens.training import distributed
from radlens.training.config import TrainConfig
from radlens.training.train import train


class EpochBars:
    """A training job's Progress on stderr: per epoch, a bar on a terminal, else the epoch's line."""

    def __init__(self, show_bar: bool):
        self.show_bar = show_bar
        self.bar = None

    def __call__(self, p: Progress) -> None:
        if not isinstance(p.preview, dict):
            return
        if "epoch_report" in p.preview:
            r = p.preview["epoch_report"]
            metric = "-" if r["metric"] is None else f"{r['metric']:.4f}"
            if self.bar is not None:
                self.bar.set_postfix_str(f"loss {r['loss']:.4f} val {metric}")
                self.close()
            else:
                text = f"epoch {r['epoch']}: loss {r['loss']:.4f} val {metric}{' (best)' if r['best'] else ''}"
                print(text, file=sys.stderr, flush=True)
        elif self.show_bar:
            from tqdm import tqdm

            if self.bar is None:
                self.bar = tqdm(total=p.total, desc=f"epoch {p.preview['epoch']}", dynamic_ncols=True)
            self.bar.n = p.done
            self.bar.set_postfix_str(f"loss {p.preview['loss']:.4f}", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_messages(p: Progress) -> None:
    """A job's Progress on stderr, a line per message: for trainings that report steps, not epochs."""
    if p.message:
        print(p.message, file=sys.stderr, flush=True)


def train_command(config: TrainConfig) -> int:
    _, rank, _ = distributed.ranks()
    main = rank == 0
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if main else (lambda s: None)
    bars = EpochBars(show_bar=main and sys.stderr.isatty())
    try:
        out = run_showing(train(config, log=log), bars if main else (lambda p: None))
    finally:
        bars.close()
    if main:
        print(f"bundle written: {out}", file=sys.stderr)
    return 0
