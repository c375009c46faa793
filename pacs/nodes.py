"""Configured PACS nodes: a small typed configuration read from JSON as data only.

The command line and the viewer share one file, ``pacs.json`` in the user's configuration folder
(``RADLENS_PACS_CONFIG`` or ``--config`` names another)::

    {"local": {"ae_title": "RADLENS", "host": "127.0.0.1", "port": 11112, "timeout_s": 10},
     "nodes": [{"name": "pacs", "ae_title": "ORTHANC", "host": "10.0.0.5", "port": 4242, "retrieve": "move"},
               {"name": "pacs-web", "url": "http://10.0.0.5:8042/dicom-web"}]}

A node speaks DIMSE (AE title, host, port; retrieves with C-GET or C-MOVE) or DICOMweb (a base URL).
``local`` is RadLens' own AE: its title, and where the storage SCP that receives a C-MOVE listens
(the PACS must know it under that title). Anything else in the file is refused by name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from radlens.imaging.atomic import write_json
from radlens.pacs.errors import PacsError

RETRIEVE_METHODS = ("get", "move")
_SPEC = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d+)$")


@dataclass(frozen=True)
class Node:
    """One PACS: DIMSE when it has a host, DICOMweb when it has a URL."""

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""
    retrieve: str = "get"  # DIMSE: C-GET (one association) or C-MOVE (to RadLens' storage SCP)

    @property
    def kind(self) -> str:
        return "dicomweb" if self.url else "dimse"

    @property
    def address(self) -> str:
        return self.url if self.url else f"{self.ae_title}@{self.host}:{self.port}"

    def __str__(self) -> str:
        """What messages call the node: its name and where it is."""
        return self.address if self.name == self.address else f"{self.name} ({self.address})"


@dataclass(frozen=True)
class LocalAE:
    """RadLens as a DICOM application entity."""

    ae_title: str = "RADLENS"
    host: str = "127.0.0.1"  # where the C-MOVE storage SCP listens (the PACS sends there)
    port: int = 11112
    timeout_s: float = 10.0


@dataclass(frozen=True)
class PacsConfig:
    local: LocalAE = field(default_factory=LocalAE)
    nodes: tuple[Node, ...] = ()

    def node(self, spec: str) -> Node:
        """A configured node by name, or an ad-hoc one: ``AET@HOST:PORT`` or an http(s) DICOMweb URL."""
        for n in self.nodes:
            if n.name == spec:
                return n
        if spec.startswith(("http://", "https://")):
            return check_node(Node(spec, url=spec.rstrip("/")), spec)
        m = _SPEC.match(spec)
        if m:
            return check_node(Node(spec, m["aet"], m["host"], int(m["port"])), spec)
        known = ", ".join(n.name for n in self.nodes) or "none configured"
        raise PacsError(spec, f"no such PACS node (configured: {known}; or give AET@HOST:PORT or a DICOMweb URL)")

    def to_json(self) -> dict:
        return {
            "local": asdict(self.local),
            "nodes": [
                {
                    k: v
                    for k, v in asdict(n).items()
                    if (v not in ("", 0) or k == "name") and (k != "retrieve" or n.host)
                }
                for n in self.nodes
            ],
        }

    def with_nodes(self, nodes) -> PacsConfig:
        return replace(self, nodes=tuple(nodes))


def config_path() -> Path:
    """The user's pacs.json (``RADLENS_PACS_CONFIG`` overrides)."""
    env = os.environ.get("RADLENS_PACS_CONFIG")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("radlens")) / "pacs.json"


def read_config(path: str | os.PathLike | None = None) -> PacsConfig:
    """The configuration in ``path`` (default: ``config_path()``); a missing default file is an empty one."""
    explicit = path is not None or "RADLENS_PACS_CONFIG" in os.environ
    path = Path(path) if path is not None else config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise PacsError(path, "no such file") from None
        return PacsConfig()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PacsError(path, f"not a readable JSON file: {err}") from None
    return parse_config(data, str(path))


def write_config(config: PacsConfig, path: str | os.PathLike | None = None) -> Path:
    return write_json(Path(path) if path is not None else config_path(), config.to_json())


def parse_config(data, where: str) -> PacsConfig:
    if not isinstance(data, dict):
        raise PacsError(where, "must hold a JSON object with 'local' and 'nodes'")
    _only(data, {"local", "nodes"}, where)
    local = LocalAE(**_typed(LocalAE, data.get("local") or {}, f"{where}: local"))
    _check_ae_title(local.ae_title, f"{where}: local")
    _check_port(local.port, f"{where}: local")
    if local.timeout_s <= 0:
        raise PacsError(f"{where}: local", f"timeout_s {local.timeout_s:g}: must be positive")
    raw = data.get("nodes") or []
    if not isinstance(raw, list):
        raise PacsError(where, "'nodes' must be a list")
    nodes = []
    for i, item in enumerate(raw, start=1):
        label = f"{where}: node {i}"
        node = Node(**_typed(Node, item, label))
        if not node.name:
            raise PacsError(label, "has no name")
        if node.name in {n.name for n in nodes}:
            raise PacsError(label, f"the name {node.name!r} is used twice")
        nodes.append(check_node(node, f"{where}: node {node.name!r}"))
    return PacsConfig(local, tuple(nodes))


def check_node(node: Node, where: str) -> Node:
    """A node is DIMSE (AE title, host, port) or DICOMweb (an http(s) URL), not both, not neither."""
    if node.url:
        if node.host or node.ae_title or node.port:
            raise PacsError(where, "give either a DICOMweb url or ae_title/host/port, not both")
        if not node.url.startswith(("http://", "https://")):
            raise PacsError(where, f"url {node.url!r}: must start with http:// or https://")
        return node
    if not node.host:
        raise PacsError(where, "needs a host, ae_title and port (DIMSE) or a url (DICOMweb)")
    _check_ae_title(node.ae_title, where)
    _check_port(node.port, where)
    if node.retrieve not in RETRIEVE_METHODS:
        raise PacsError(where, f"retrieve {node.retrieve!r}: must be one of {', '.join(RETRIEVE_METHODS)}")
    return node


def _typed(cls, item, where: str) -> dict:
    """The item's keys for the dataclass ``cls``, each of its declared type; anything else is refused."""
    if not isinstance(item, dict):
        raise PacsError(where, "must be a JSON object")
    types = {f.name: f.type for f in fields(cls)}
    _only(item, set(types), where)
    out = {}
    for key, value in item.items():
        want = types[key]
        if want == "int" and isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
        elif want == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
        elif want == "str" and isinstance(value, str):
            out[key] = value.strip()
        else:
            raise PacsError(where, f"{key} {value!r}: must be {_TYPE_NAMES[want]}")
    return out


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string"}


def _only(item: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise PacsError(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")


def _check_ae_title(title: str, where: str) -> None:
    if not title or len(title) > 16 or "\\" in title or not title.isascii() or not title.isprintable():
        raise PacsError(where, f"AE title {title!r}: 1 to 16 printable ASCII characters, no backslash")


def _check_port(port: int, where: str) -> None:
    if not 0 < port < 65536:
        raise PacsError(where, f"port {port}: must be 1..65535")
