"""Jobs for the models' process in the tests: plain module functions (a spawned process imports them
by name), and no Qt here, so the process does not load it."""

import os
import time

from radlens.imaging.progress import Progress, check_cancel


def pid(cancel):
    """The process it ran in."""
    yield Progress(0, 1, "where am I")
    return os.getpid()


def slow(n: int, tag: str, cancel):
    for i in range(n):
        check_cancel(cancel, tag)
        time.sleep(0.02)
        yield Progress(i, n, tag)
    return tag
