"""A model with a hundred labels (TotalSegmentator's organs): distinct colours, its own colours kept,
a label found by typing, drawn from the model's one label map exactly as its masks one by one, and
findings.json carrying the colours and the label map."""

import itertools
from dataclasses import replace

import numpy as np

from radlens.imaging.volume import Volume, Window
from radlens.inference.findings import Findings, Segmentation, input_block, read_findings, write_findings
from radlens.viewer.findings_panel import LayersPanel
from radlens.viewer.layers import Layer, LayerKey, build_layers, palette_colour
from radlens.viewer.overlays import label_luts, labels_rgba, mask_rgba
from radlens.viewer.state import ViewState

LIVER = (221, 130, 101)  # Slicer's colour for the liver


def organ_findings(n_labels: int = 120, label_map: bool = True):
    """One voxel per organ; with ``label_map``, the model's label map too, as the engine and findings.json give it."""
    volume = Volume(np.zeros((6, 16, 16), np.int16), (2.0, 1.0, 1.0), modality="CT", source="synthetic")
    labels = np.zeros(volume.shape_zyx, np.uint8)
    segs = []
    for value in range(1, n_labels + 1):
        mask = np.zeros(volume.shape_zyx, bool)
        mask[value % 6, value % 16, (value // 16) % 16] = True
        labels[mask] = value
        name = "liver" if value == 5 else f"organ_{value:03d}"
        segs.append(Segmentation("totalseg", name, value, 0.002, (), "", mask, LIVER if value == 5 else None))
    if label_map:
        segs = [replace(s, label_map=labels) for s in segs]
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


def test_a_label_map_is_drawn_as_its_masks_one_by_one_hidden_labels_and_opacity_included():
    """One image for the model's label map shows each label as that label's own mask image would."""
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 50), np.uint8)
    for value in range(1, 13):  # touching blocks, some overlapping earlier ones
        r, c = rng.integers(0, 30), rng.integers(0, 40)
        labels[r : r + rng.integers(3, 12), c : c + rng.integers(3, 12)] = value
    keys = [LayerKey("organs", "segmentation", f"organ {v}") for v in range(1, 13)]
    layers = [
        Layer(k, "1", palette_colour(v), None, opacity=0.25 * (v % 4 + 1), value=v) for v, k in enumerate(keys, 1)
    ]
    hidden = {keys[2], keys[7]}
    rgba, r0, c0 = labels_rgba(labels, *label_luts(layers, lambda k: k not in hidden))
    composite = np.zeros((*labels.shape, 4), np.uint8)
    composite[r0 : r0 + rgba.shape[0], c0 : c0 + rgba.shape[1]] = rgba
    expected = np.zeros_like(composite)
    for layer in layers:
        if layer.key in hidden or (piece := mask_rgba(labels == layer.value, layer.colour)) is None:
            continue
        one, m0, n0 = piece
        alpha = np.round(one[..., 3] * layer.opacity).astype(np.uint8)  # the image item's opacity
        where = one[..., 3] > 0
        region = expected[m0 : m0 + one.shape[0], n0 : n0 + one.shape[1]]
        region[where] = np.concatenate([one[..., :3], alpha[..., None]], axis=-1)[where]
    np.testing.assert_array_equal(composite, expected)
    assert labels_rgba(labels, *label_luts(layers, lambda k: False)) is None


def test_a_hundred_labels_are_one_image_in_each_view_and_a_toggle_takes_one_out(qtbot, tmp_path):
    from radlens.viewer.main_window import MainWindow
    from radlens.viewer.qt import QtCore

    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(1000, 500)
    window.show()
    findings, volume = organ_findings()
    write_findings(findings, tmp_path / "out")
    window.set_volume(volume)
    window.set_findings(read_findings(tmp_path / "out"))  # as the viewer reads it: with the label map
    state = window.study.state
    axial = window.views["axial"]
    state.set_slice("axial", 5)
    window.redraw("slices")
    assert axial.mask_items == {} and len(axial.label_items) == 1
    item, keys = next(iter(axial.label_items.values()))
    assert len(keys) == 120 and item.isVisible()
    liver = np.argwhere(item.image[..., :3].reshape(-1, 3) == LIVER)  # liver: value 5 → slice 5, row 5, column 0
    assert len(liver) > 0
    window.layers_panel.controls["seg:totalseg:liver"].check.setChecked(False)
    assert not (item.image[..., :3].reshape(-1, 3) == LIVER).all(axis=1).any()
    window.layers_panel.controls["seg:totalseg:liver"].check.setChecked(True)
    assert (item.image[..., :3].reshape(-1, 3) == LIVER).all(axis=1).any()
