"""Errors of the PACS package, one line each: the node (or file) and the reason."""

from __future__ import annotations

from radlens.imaging.errors import RadlensError


class PacsError(RadlensError):
    """A node that cannot be reached or refuses, a bad node configuration, a retrieve or send that failed."""

    def __init__(self, what: object, reason: str):
        self.what = str(what)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.what}: {self.reason}")
