"""A model with a hundred labels (TotalSegmentator's organs): distinct colours, its own colours kept,
a label found by typing, and findings.json carrying the colours."""

import itertools

import numpy as np

from radlens.imaging.volume import Volume, Window
from radlens.inference.findings import Findings, Segmentation, input_block, read_findings, write_findings
from radlens.viewer.findings_panel import LayersPanel
from radlens.viewer.layers import build_layers
from radlens.viewer.state import ViewState

LIVER = (221, 130, 101)  # Slicer's colour for the liver


def organ_findings(n_labels: int = 120):
    volume = Volume(np.zeros((6, 16, 16), np.int16), (2.0, 1.0, 1.0), modality="CT", source="synthetic")
    segs = []
    for value in range(1, n_labels + 1):
        mask = np.zeros(volume.shape_zyx, bool)
        mask[value % 6, value % 16, (value // 16) % 16] = True
        name = "liver" if value == 5 else f"organ_{value:03d}"
        segs.append(Segmentation("totalseg", name, value, 0.002, (), "", mask, LIVER if value == 5 else None))
    return Findings(input_block(volume), segmentations=tuple(segs)), volume


def test_each_of_a_hundred_labels_gets_its_own_colour_and_the_models_own_is_kept():
    findings, volume = organ_findings()
    layers = build_layers(findings, volume)
    colours = [layer.colour for layer in layers]
    assert len(layers) == 120
    assert colours[4] == LIVER
    neighbours = [a != b for a, b in itertools.pairwise(colours)]
    assert all(neighbours) and len(set(colours)) >= 100


def test_typing_in_the_layers_panel_finds_a_label(qtbot):
    findings, volume = organ_findings()
    state = ViewState.for_volume(volume, Window(400, 40))
    state.set_findings(findings, volume)
    panel = LayersPanel()
    qtbot.addWidget(panel)
    panel.set_state(state)
    panel.show()
    qtbot.keyClicks(panel.search, "LIV")
    shown = [str(k) for k, c in panel.controls.items() if c.isVisible()]
    assert shown == ["seg:totalseg:liver"]
    panel.controls["seg:totalseg:liver"].opacity.setValue(20)
    assert state.layers["seg:totalseg:liver"].opacity == 0.2
    panel.search.clear()
    assert sum(c.isVisible() for c in panel.controls.values()) == 120


def test_findings_json_keeps_a_labels_colour(tmp_path):
    findings, _volume = organ_findings(6)
    write_findings(findings, tmp_path)
    back = read_findings(tmp_path)
    assert [s.colour for s in back.segmentations] == [None, None, None, None, LIVER, None]
