"""The error training, evaluation and ensembling raise for what a user can act on."""

from __future__ import annotations

from radlens.imaging.errors import RadlensError


class TrainingError(RadlensError):
    """Training stopped for a reason the user can act on (NaN loss, bad options, no checkpoint)."""
