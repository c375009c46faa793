"""A model folder's colour table gives its labels their usual colours."""

import json

from radlens.inference.colours import read_colour_table


def test_a_slicer_colour_table_is_matched_by_name_then_by_value(tmp_path):
    (tmp_path / "GenericAnatomyColors.ctbl").write_text(
        "# Color table file\n# 3 values\n0 background 0 0 0 0\n1 Liver 221 130 101 255\n2 kidney 185 102 83 255\n"
    )
    assert read_colour_table(tmp_path, ["liver", "spleen"]) == {"liver": [221, 130, 101]}
    assert read_colour_table(tmp_path, ["organ_a", "organ_b"]) == {
        "organ_a": [221, 130, 101],
        "organ_b": [185, 102, 83],
    }


def test_a_json_colour_file_in_configs_and_a_broken_one_ignored(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "colors.json").write_text(json.dumps({"spleen": [157, 108, 162], "1": [1, 2]}))
    (tmp_path / "colours.txt").write_bytes(b"\xff\xfe not text")
    assert read_colour_table(tmp_path, ["spleen"]) == {"spleen": [157, 108, 162]}
    assert read_colour_table(tmp_path / "nowhere", ["spleen"]) == {}
