"""A real PACS for the tests: Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on free loopback ports.

Each server gets its own temporary storage and configuration and is stopped afterwards. It knows
RadLens' storage SCP (AE title RADLENS on another free port) as a C-MOVE destination, and checks
the called AE title, so a wrong one is rejected as a real PACS would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from radlens.pacs.nodes import LocalAE, Node

DICOMWEB_PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)
START_TIMEOUT_S = 60


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))


def dicomweb_plugin() -> str | None:
    return next((p for p in DICOMWEB_PLUGINS if os.path.isfile(p)), None)


def missing() -> str:
    """Why Orthanc cannot run here ('' when it can)."""
    if orthanc_binary() is None:
        return (
            "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; `make test` does it as root)"
        )
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    folder: Path
    dicom_port: int
    http_port: int
    scp_port: int
    process: subprocess.Popen | None = None

    AET = "ORTHANC"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dimse(self) -> Node:
        return Node("orthanc", self.AET, "127.0.0.1", self.dicom_port)

    @property
    def web(self) -> Node:
        return Node("orthanc-web", url=f"{self.rest}/dicom-web")

    @property
    def local(self) -> LocalAE:
        return LocalAE("RADLENS", "127.0.0.1", self.scp_port, timeout_s=10.0)

    def get(self, path: str):
        with urllib.request.urlopen(self.rest + path, timeout=10) as answer:
            return json.loads(answer.read())

    def start(self) -> Orthanc:
        storage = self.folder / "storage"
        storage.mkdir(parents=True)
        config = {
            "Name": "radlens-test",
            "DicomAet": self.AET,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "Plugins": [dicomweb_plugin()],
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"radlens": ["RADLENS", "127.0.0.1", self.scp_port]},
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
        self.process = subprocess.Popen([orthanc_binary(), str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # a readiness wait, not a measurement
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if "dicom-web" in self.get("/plugins"):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_orthanc(folder: Path) -> Orthanc:
    return Orthanc(Path(folder), free_port(), free_port(), free_port()).start()
