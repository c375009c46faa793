"""The engine as a user meets it: `radlens infer`, a detector that finds a nodule, cancel, devices, OOM."""

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference_helpers import (  # noqa: E402
    metadata,
    random_bundles,
    sphere_ct,
)

from radlens.cli import main  # noqa: E402
from radlens.imaging.progress import Cancelled, run_showing, run_to_end  # noqa: E402
from radlens.imaging.volume_io import write_volume  # noqa: E402
from radlens.inference import engine  # noqa: E402
from radlens.inference.bundle import load_bundle, save_bundle  # noqa: E402
from radlens.inference.findings import read_findings  # noqa: E402
from radlens.inference.metadata import Normalization  # noqa: E402
from radlens.inference.networks import build_network  # noqa: E402
from radlens.inference.preprocess import NormalizeIntensity  # noqa: E402


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def test_radlens_infer_writes_findings_whose_masks_sit_on_the_input_grid(tmp_path, capsys):
    det, seg = random_bundles(tmp_path / "models")
    from radlens.imaging.phantom import make_chest_ct

    # A synthetic chest CT on an anisotropic grid unlike the models' 2 mm: masks must still land on it.
    volume = make_chest_ct(3, shape_zyx=(20, 40, 44), spacing_zyx=(2.5, 1.5, 1.5)).volume
    write_volume(volume, tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    rc = main(["infer", str(tmp_path / "ct.nii.gz"), "--out", str(out), "--model", str(det), "--model", str(seg)])
    assert rc == 0
    doc = json.loads((out / "findings.json").read_text())
    assert doc["schema"] == "radlens.findings/1"
    assert [m["name"] for m in doc["models"]] == ["rand-detector", "rand-segmenter"]
    assert all(len(m["sha256"]) == 64 and m["threshold"] == 0.5 for m in doc["models"])
    assert doc["input"]["shape_zyx"] == [20, 40, 44]
    assert all(d["score"] >= 0.05 for d in doc["detections"])
    for d in doc["detections"]:
        z0, y0, x0, z1, y1, x1 = d["box_zyx"]
        assert 0 <= z0 < z1 <= 20 and 0 <= y0 < y1 <= 40 and 0 <= x0 < x1 <= 44

    findings = read_findings(out)
    assert [s.label for s in findings.segmentations] == ["nodule"]
    mask = findings.segmentations[0].mask
    assert mask.shape == volume.shape_zyx
    from radlens.imaging.volume_io import read_volume

    on_disk = read_volume(out / doc["segmentations"][0]["mask"])
    assert on_disk.same_grid(volume)
    voxel_ml = np.prod(volume.spacing_zyx) / 1000
    assert findings.segmentations[0].volume_ml == pytest.approx(mask.sum() * voxel_ml, rel=1e-3)
    assert "rand-segmenter" in capsys.readouterr().out


def test_radlens_infer_names_a_missing_model(tmp_path, capsys):
    write_volume(sphere_ct(), tmp_path / "ct.nii.gz")
    rc = main(["infer", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "o"), "--model", "no-such-model"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("radlens: error: no-such-model: no such model bundle")
    assert not (tmp_path / "o" / "findings.json").exists()


def _train_detector(steps: int = 60):
    """A tiny CenterNet trained here on synthetic spheres (focal loss on a Gaussian heatmap, L1 on size)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    kwargs = {"channels": [8, 16], "features": 8, "num_res_units": 0}
    net = build_network("centernet3d", **kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    norm = NormalizeIntensity(Normalization(kind="ct-clip", clip=(-1000, 400)))
    zz, yy, xx = np.indices((16, 32, 32))
    for _ in range(steps):
        c = (int(rng.integers(4, 12)), int(rng.integers(8, 25)), int(rng.integers(8, 25)))
        x = torch.from_numpy(norm(sphere_ct([c], shape_zyx=(16, 32, 32)).array))[None, None]
        target = torch.from_numpy(
            np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 1.5**2)).astype(np.float32)
        )
        out = net(x)[0]
        p = torch.sigmoid(out[0]).clamp(1e-4, 1 - 1e-4)
        pos = target.eq(1)
        focal = -(torch.log(p) * (1 - p) ** 2)[pos].sum() - (torch.log(1 - p) * p**2 * (1 - target) ** 4)[~pos].sum()
        size = (out[1:4, c[0], c[1], c[2]] - 5.0).abs().mean()  # a 10 mm sphere is 5 voxels of 2 mm
        opt.zero_grad()
        (focal + size).backward()
        opt.step()
    return net, kwargs


def test_a_detector_trained_here_finds_the_nodule(tmp_path):
    net, kwargs = _train_detector()
    save_bundle(tmp_path / "det", net, metadata("sphere-detector", "detection", "centernet3d", kwargs))
    true_centre = (9, 30, 17)
    volume = sphere_ct([true_centre])  # 24×48×48: bigger than the 16×32×32 patches, so windows tile it
    findings = run_to_end(engine.iter_infer(volume, [tmp_path / "det"], device="cpu", threads=2))
    best = max(findings.detections, key=lambda d: d.score)
    z0, y0, x0, z1, y1, x1 = best.box_zyx
    assert z0 <= true_centre[0] < z1 and y0 <= true_centre[1] < y1 and x0 <= true_centre[2] < x1
    assert best.score > 0.5
    assert best.diameter_mm == pytest.approx(10, abs=4)
    np.testing.assert_allclose(best.center_lps, volume.index_to_lps(true_centre), atol=2.5)
    assert findings.models[0].name == "sphere-detector"


def test_each_model_streams_a_preview_of_its_own_findings(tmp_path):
    det, seg = random_bundles(tmp_path)
    steps = []
    final = run_showing(engine.iter_infer(sphere_ct(), [det, seg], device="cpu", threads=2), steps.append)
    assert all(0 <= p.done <= p.total for p in steps)
    previews = [p.preview for p in steps if p.preview is not None]
    assert [[m.name for m in f.models] for f in previews] == [["rand-detector"], ["rand-segmenter"]]
    assert not previews[0].segmentations and not previews[1].detections
    assert [m.name for m in final.models] == ["rand-detector", "rand-segmenter"]
    assert len(final.detections) == len(previews[0].detections)


class _Counting(torch.nn.Module):
    """Wraps a network; counts forward calls and can set an event during a chosen call."""

    def __init__(self, inner, cancel=None, cancel_at=None, oom_on_first=False):
        super().__init__()
        self.inner, self.cancel, self.cancel_at, self.oom = inner, cancel, cancel_at, oom_on_first
        self.calls = 0
        self.batches = []

    def forward(self, x):
        self.calls += 1
        if self.oom:
            self.oom = False
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(x.shape[0])
        if self.cancel is not None and self.calls == self.cancel_at:
            self.cancel.set()  # as if the user pressed Cancel while this window runs
        return self.inner(x)


def test_cancel_stops_within_one_window(tmp_path):
    det, _ = random_bundles(tmp_path)
    bundle = load_bundle(det)
    cancel = threading.Event()
    counting = _Counting(bundle.network, cancel, cancel_at=2)
    image = np.zeros((40, 64, 64), np.float32)  # 3×3×3 windows of 16×32×32
    job = engine.sliding_windows(counting, image, (16, 32, 32), batch=1, cancel=cancel)
    with pytest.raises(Cancelled):
        run_to_end(job)
    assert counting.calls == 2  # the window running when Cancel came finished; no other started


def test_an_out_of_memory_retries_with_a_smaller_batch_and_says_so(tmp_path):
    det, _ = random_bundles(tmp_path)
    net = load_bundle(det).network
    image = np.random.default_rng(0).normal(size=(30, 50, 50)).astype(np.float32)
    expected, _ = run_to_end(engine.sliding_windows(net, image, (16, 32, 32), batch=4))
    counting = _Counting(net, oom_on_first=True)
    messages = []
    output, device = run_showing(
        engine.sliding_windows(counting, image, (16, 32, 32), batch=4), lambda p: messages.append(p.message)
    )
    assert "out of memory: retrying with 2 window(s) per batch" in messages[0]
    assert set(counting.batches) == {2}
    assert device == "cpu"
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5)


def test_an_out_of_memory_at_batch_one_on_the_cpu_is_reported_not_hidden(tmp_path):
    det, _ = random_bundles(tmp_path)
    counting = _Counting(load_bundle(det).network, oom_on_first=True)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_to_end(engine.sliding_windows(counting, np.zeros((16, 32, 32), np.float32), (16, 32, 32), batch=1))


@pytest.mark.parametrize(
    ("cuda", "mps", "asked", "expected"),
    [
        (True, True, "auto", ("cuda", "")),
        (False, True, "auto", ("mps", "")),
        (False, False, "auto", ("cpu", "")),
        (False, False, "cuda", ("cpu", "CUDA is not available here; running on the CPU")),
        (False, False, "cuda:1", ("cpu", "CUDA device 1 is not available here; running on the CPU")),
        (False, False, "mps", ("cpu", "MPS is not available here; running on the CPU")),
        (True, False, "cpu", ("cpu", "")),
    ],
)
def test_gpu_is_chosen_only_when_available(monkeypatch, cuda, mps, asked, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert engine.select_device(asked) == expected


def test_unavailable_gpu_falls_back_to_the_cpu_and_the_run_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    det, _ = random_bundles(tmp_path)
    job = engine.iter_infer(sphere_ct(), [det], device="cuda", threads=2)
    first = next(job)
    assert "CUDA is not available here; running on the CPU" in first.message
    findings = run_to_end(job)
    assert findings.device == "cpu"
    write_volume(sphere_ct(), tmp_path / "ct.nii.gz")
    assert (
        main(
            [
                "infer",
                str(tmp_path / "ct.nii.gz"),
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(det),
                "--device",
                "cuda",
            ]
        )
        == 0
    )
    assert "radlens: warning: CUDA is not available here; running on the CPU" in capsys.readouterr().err


def test_the_cpu_keeps_a_core_for_the_gui(monkeypatch):
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 8)
    assert engine.cpu_threads() == 7
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 1)
    assert engine.cpu_threads() == 1


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_windows_cover_the_image_and_their_weights_add_up(blend):
    grid = engine.WindowGrid.tile((40, 70, 20), (16, 32, 32), overlap=0.25, blend=blend)
    assert grid.shape_zyx == (40, 70, 32)  # padded up to the patch where the image is smaller
    window = np.einsum("i,j,k->ijk", *grid.profiles)
    covered = np.zeros(grid.shape_zyx)
    for z, y, x in grid.starts:
        covered[z : z + 16, y : y + 32, x : x + 32] += window
    np.testing.assert_allclose(covered, np.einsum("i,j,k->ijk", *grid.sums), rtol=1e-5)
    assert covered.min() > 0
    if blend == "constant":
        assert covered.min() >= 1
    else:  # a window's centre weighs most, its edges least (σ = patch/8: e^-8 of the centre)
        for p, w in zip(grid.patch_zyx, grid.profiles, strict=True):
            assert w.argmax() in ((p - 1) // 2, p // 2) and w[0] == pytest.approx(np.exp(-8 * ((p - 1) / p) ** 2))


def test_gaussian_blending_trusts_the_centre_of_each_window():
    """A network that is right in the middle of its window and wrong at the edges: the Gaussian
    blend gives the right answer where a constant blend lets the edges pull it off."""

    class EdgeBiased(torch.nn.Module):
        def forward(self, x):
            edge = torch.zeros_like(x)
            edge[..., :4, :, :] = edge[..., -4:, :, :] = 1.0  # wrong by 1 near the z edges
            return x + edge

    image = np.zeros((64, 16, 16), dtype=np.float32)
    const, _ = run_to_end(engine.sliding_windows(EdgeBiased(), image, (16, 16, 16), overlap=0.5, amp=False))
    gauss, _ = run_to_end(
        engine.sliding_windows(EdgeBiased(), image, (16, 16, 16), overlap=0.5, amp=False, blend="gaussian")
    )
    inner = (slice(None), slice(8, 56))  # away from the image's own ends, every voxel has two windows
    # Each voxel lies in the wrong edge of one window and the good middle of another.
    torch.testing.assert_close(const[inner], torch.full_like(const[inner], 0.5))  # constant: half wrong
    assert float(gauss[inner].abs().mean()) < 0.1


def test_windows_stitch_to_the_network_output_and_reduced_precision_stays_close(tmp_path):
    det, _ = random_bundles(tmp_path)
    net = load_bundle(det).network
    image = np.random.default_rng(1).normal(size=(16, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        direct = net(torch.from_numpy(image)[None, None])[0]
    exact, _ = run_to_end(engine.sliding_windows(net, image, (16, 32, 32), amp=False))
    torch.testing.assert_close(exact, direct)
    fast, _ = run_to_end(engine.sliding_windows(net, image, (16, 32, 32), amp=True))
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, direct, atol=0.1, rtol=0.05)


def test_mirroring_makes_the_output_follow_a_flipped_input(tmp_path):
    """With every axis mirrored, a study read the other way round gives the same result, flipped:
    what test-time mirroring is for. An untrained network on its own is far from that."""
    det, _ = random_bundles(tmp_path)
    net = load_bundle(det).network
    image = np.random.default_rng(2).normal(size=(16, 32, 32)).astype(np.float32)
    flipped = np.ascontiguousarray(image[::-1, :, ::-1])

    def run(img, axes):
        out, _ = run_to_end(engine.sliding_windows(net, img, (16, 32, 32), amp=False, mirror_axes=axes))
        return out

    plain, plain_of_flipped = run(image, ()), run(flipped, ())
    assert not torch.allclose(plain_of_flipped, plain.flip([1, 3]), atol=1e-3)
    mirrored, mirrored_of_flipped = run(image, (0, 1, 2)), run(flipped, (0, 1, 2))
    torch.testing.assert_close(mirrored_of_flipped, mirrored.flip([1, 3]), atol=1e-5, rtol=1e-5)
    # Mirroring x alone is the mean of the two passes.
    with torch.inference_mode():
        x = torch.from_numpy(image)[None, None]
        expected = (net(x) + net(x.flip(4)).flip(4))[0] / 2
    torch.testing.assert_close(run(image, (2,)), expected, atol=1e-5, rtol=1e-5)


def test_radlens_models_lists_the_user_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    random_bundles(tmp_path / "data" / "radlens" / "models")
    (tmp_path / "data" / "radlens" / "models" / "half-copied").mkdir()
    assert main(["models", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert {"rand-detector", "rand-segmenter"} <= set(rows)
    assert rows["rand-detector"]["task"] == "detection" and rows["rand-detector"]["modality"] == "CT"
    assert rows["rand-segmenter"]["path"] == str(tmp_path / "data" / "radlens" / "models" / "seg")
    assert "half-copied: no metadata.json" in err
    assert main(["models"]) == 0
    assert "rand-segmenter" in capsys.readouterr().out


def _confirmed_pair(folder, detector_threshold: float, confirmed_by: str = "rand-detector"):
    """A random detector and a random segmenter confirmed by it, side by side in ``folder``."""
    from inference_helpers import DETECTOR_KWARGS, SEGMENTER_KWARGS

    torch.manual_seed(0)
    det = save_bundle(
        folder / "det",
        build_network("centernet3d", **DETECTOR_KWARGS),
        metadata("rand-detector", "detection", "centernet3d", DETECTOR_KWARGS,
                 thresholds={"score": detector_threshold}),
    )  # fmt: skip
    seg_meta = metadata("rand-segmenter", "segmentation", "unet3d-seg", SEGMENTER_KWARGS)
    network = build_network("unet3d-seg", **SEGMENTER_KWARGS)
    plain = save_bundle(folder / "plain", network, seg_meta)
    confirmed = save_bundle(folder / "seg", network, {**seg_meta, "confirmed_by": confirmed_by})
    return load_bundle(str(det)), load_bundle(str(plain)), load_bundle(str(confirmed))


def test_a_segmenter_confirmed_by_a_detector_keeps_only_what_its_boxes_touch(tmp_path):
    from radlens.imaging.phantom import make_chest_ct

    volume = make_chest_ct(3, shape_zyx=(20, 40, 44), spacing_zyx=(2.5, 1.5, 1.5)).volume
    det, plain, confirmed = _confirmed_pair(tmp_path / "a", detector_threshold=0.5)
    everything = run_to_end(engine.run_bundle(volume, plain)).segmentations[0]
    assert everything.components, "the random segmenter marks something to confirm or drop"
    found = run_to_end(engine.run_bundle(volume, confirmed))
    (seg,) = found.segmentations
    boxes = [d.box_zyx for d in run_to_end(engine.run_bundle(volume, det)).detections if d.score >= 0.5]
    assert found.models[0].warnings == (
        f"outlines only what rand-detector 0.0.1 also found above its threshold ({len(boxes)} boxes)",
    )
    assert not (seg.mask & ~everything.mask).any()
    for c in seg.components:  # each kept component touches a box; each dropped one touches none
        assert any(all(c.box_zyx[i] < b[i + 3] and b[i] < c.box_zyx[i + 3] for i in range(3)) for b in boxes)

    # No box above the detector's threshold: nothing is confirmed.
    _, _, strict = _confirmed_pair(tmp_path / "b", detector_threshold=1.0)
    nothing = run_to_end(engine.run_bundle(volume.with_array(volume.array), strict))
    assert not nothing.segmentations[0].mask.any() and "(0 boxes)" in nothing.models[0].warnings[0]

    # The detector missing: nothing is dropped, and the reader is told.
    _, _, orphan = _confirmed_pair(tmp_path / "c", detector_threshold=0.5, confirmed_by="no-such-detector")
    alone = run_to_end(engine.run_bundle(volume, orphan))
    assert (alone.segmentations[0].mask == everything.mask).all()
    assert alone.models[0].warnings[0].startswith("its components are not checked against no-such-detector")


def test_a_detector_run_beside_the_segmenter_it_confirms_runs_once(tmp_path):
    from radlens.imaging.phantom import make_chest_ct

    volume = make_chest_ct(3, shape_zyx=(20, 40, 44), spacing_zyx=(2.5, 1.5, 1.5)).volume
    det, _, confirmed = _confirmed_pair(tmp_path, detector_threshold=0.5)
    calls = []  # forward passes of any detector network (the segmenter loads its own copy of the bundle)
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, *_: calls.append(1) if type(module) is type(det.network) else None
    )
    try:
        alone = run_to_end(engine.iter_infer(volume.with_array(volume.array), [det], device="cpu"))
        once = len(calls)
        calls.clear()
        both = run_to_end(engine.iter_infer(volume, [confirmed, det], device="cpu"))
    finally:
        hook.remove()
    assert once > 0 and len(calls) == once
    assert [d.box_zyx for d in both.detections] == [d.box_zyx for d in alone.detections]
