"""PACS nodes: the JSON the command line and the viewer share, read as data, every mistake named in one line."""

from __future__ import annotations

import json

import pytest

from radlens.cli import main
from radlens.pacs.errors import PacsError
from radlens.pacs.nodes import LocalAE, Node, PacsConfig, read_config, write_config

GOOD = {
    "local": {"ae_title": "WS1", "port": 11113, "timeout_s": 5},
    "nodes": [
        {"name": "pacs", "ae_title": "ORTHANC", "host": "10.0.0.5", "port": 4242, "retrieve": "move"},
        {"name": "web", "url": "https://pacs.example.org/dicom-web"},
    ],
}


def _write(tmp_path, data) -> str:
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_a_config_reads_into_typed_nodes_and_writes_back_the_same(tmp_path):
    config = read_config(_write(tmp_path, GOOD))
    assert config.local == LocalAE("WS1", "127.0.0.1", 11113, 5.0)
    pacs, web = config.nodes
    assert (pacs.kind, pacs.address, pacs.retrieve) == ("dimse", "ORTHANC@10.0.0.5:4242", "move")
    assert (web.kind, str(web)) == ("dicomweb", "web (https://pacs.example.org/dicom-web)")
    again = read_config(write_config(config, tmp_path / "copy.json"))
    assert again == config


def test_nodes_by_name_or_ad_hoc_and_an_unknown_name_lists_the_known_ones():
    config = PacsConfig(nodes=(Node("pacs", "ORTHANC", "h", 104),))
    assert config.node("pacs").host == "h"
    assert config.node("STORE1@192.168.1.2:11112") == Node("STORE1@192.168.1.2:11112", "STORE1", "192.168.1.2", 11112)
    assert config.node("http://h:8042/dicom-web/").url == "http://h:8042/dicom-web"
    with pytest.raises(PacsError) as err:
        config.node("archive")
    assert str(err.value).startswith("archive: no such PACS node (configured: pacs;")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nodes": [{"name": "a", "ae_title": "X", "host": "h", "port": 0}]}, "node 'a': port 0: must be 1..65535"),
        ({"nodes": [{"name": "a", "ae_title": "X" * 17, "host": "h", "port": 1}]}, "AE title 'XXXXXXXXXXXXXXXXX'"),
        (
            {"nodes": [{"name": "a", "host": "h", "port": "104", "ae_title": "X"}]},
            "node 1: port '104': must be an integer",
        ),
        ({"nodes": [{"name": "a", "url": "ftp://x"}]}, "url 'ftp://x': must start with http:// or https://"),
        ({"nodes": [{"name": "a", "url": "http://x", "host": "h"}]}, "give either a DICOMweb url or ae_title/host"),
        ({"nodes": [{"name": "a", "ae_title": "X", "host": "h", "port": 1, "retrieve": "ftp"}]}, "retrieve 'ftp'"),
        ({"nodes": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}, "'a' is used twice"),
        ({"nodes": [{"name": "a", "url": "http://x", "password": "p"}]}, "unknown key(s) password"),
        ({"remote": 1}, "unknown key(s) remote (known: local, nodes)"),
    ],
)
def test_a_bad_config_is_refused_naming_the_file_the_node_and_the_reason(tmp_path, change, message):
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(PacsError) as err:
        read_config(path)
    assert str(err.value).startswith(path) and message in str(err.value) and "\n" not in str(err.value)


def test_radlens_pacs_nodes_lists_them_and_an_unreadable_file_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    assert main(["pacs", "nodes", "--config", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}: RadLens is WS1, C-MOVE to 127.0.0.1:11113",
        "  pacs: ORTHANC@10.0.0.5:4242 (DIMSE, retrieve by C-MOVE)",
        "  web: https://pacs.example.org/dicom-web (DICOMweb)",
    ]
    (tmp_path / "bad.json").write_text("{nodes: ")
    assert main(["pacs", "echo", "pacs", "--config", str(tmp_path / "bad.json")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"radlens: error: {tmp_path / 'bad.json'}: not a readable JSON file:")


def test_no_config_file_means_no_nodes_but_ad_hoc_ones_still_work(tmp_path, monkeypatch):
    monkeypatch.setattr("radlens.pacs.nodes.config_path", lambda: tmp_path / "absent.json")
    monkeypatch.delenv("RADLENS_PACS_CONFIG", raising=False)
    config = read_config()
    assert config.nodes == () and config.local == LocalAE()
    assert config.node("A@h:1").kind == "dimse"
