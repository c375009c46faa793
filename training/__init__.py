"""Labelled-folder datasets, training loops, metrics and evaluation (reuses inference's networks)."""
