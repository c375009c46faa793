"""The Orthanc the PACS tests talk to: one per test module, started on free loopback ports, stopped after."""

from __future__ import annotations

import pytest
from orthanc_server import missing, start_orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(f"PACS tests need a real PACS: {why}")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()
