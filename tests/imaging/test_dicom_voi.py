"""Modality LUT Sequence, VOI LUT Sequence and VOILUTFunction: read as pydicom's pixels module reads them.

A Modality LUT changes the voxel values (stored → modality values); a VOI LUT, by table or by
window function, only changes how they are shown, so it travels on the Volume to the display
(:mod:`radlens.imaging.windowing`). Each case runs with the DICOM fast path on and off.
"""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import write_stack
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from radlens.imaging import dicom_native
from radlens.imaging.loading import load
from radlens.imaging.volume import Window
from radlens.imaging.windowing import apply_voi_table, apply_window, default_window


@pytest.fixture(params=[True, False], ids=["fast", "pydicom"])
def fast(request, monkeypatch):
    monkeypatch.setattr(dicom_native, "FAST", request.param)


def _unsigned(path: Path, values: np.ndarray) -> pydicom.Dataset:
    """The slice at ``path`` rewritten as 12-bit unsigned stored values ``values``."""
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PixelData = values.astype("<u2").tobytes()
    return ds


def _lut_item(first: int, data: np.ndarray, bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first, bits]
    item.LUTData = np.asarray(data, dtype="<u2").tobytes()
    return item


def _with_modality_lut(paths: list[Path]) -> list[pydicom.Dataset]:
    """Each slice's stored values through a non-linear table (squares), no rescale."""
    out = []
    for k, path in enumerate(paths):
        stored = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 3 + k) % 40
        ds = _unsigned(path, stored)
        del ds.RescaleSlope, ds.RescaleIntercept
        item = _lut_item(0, np.arange(40) ** 2)
        item.ModalityLUTType = "HU"
        ds.ModalityLUTSequence = Sequence([item])
        ds.save_as(path, enforce_file_format=True)
        out.append(ds)
    return out


@pytest.mark.parametrize("slices", [1, 3], ids=["one file", "stack"])
def test_a_modality_lut_sequence_gives_modality_values(tmp_path, fast, slices):
    _, paths = write_stack(tmp_path, [float(z) for z in range(slices)])
    datasets = _with_modality_lut(paths)
    out = load(tmp_path)
    expected = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets])
    assert not np.array_equal(expected, np.stack([ds.pixel_array for ds in datasets]))  # the table matters
    np.testing.assert_array_equal(out.array, expected)


def test_a_voi_lut_sequence_travels_to_the_display(tmp_path, fast):
    _, (path,) = write_stack(tmp_path, [0.0])
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60
    ds = _unsigned(path, stored)
    del ds.RescaleSlope, ds.RescaleIntercept
    table = (np.sqrt(np.arange(4096) / 4095) * 255).astype(int)  # a gamma curve: no window can say it
    item = _lut_item(100, table[100:3900], bits=8)
    item.LUTExplanation = "GAMMA"
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    out = load(path)
    np.testing.assert_array_equal(out.array[0], stored)  # a VOI LUT leaves the values alone
    (lut,) = out.voi_luts
    assert (lut.first, lut.bits, lut.explanation) == (100, 8, "GAMMA")
    shown = apply_voi_table(out.array[0], lut)
    np.testing.assert_array_equal(shown, apply_voi_lut(stored, ds).astype(np.uint8))  # 8-bit table: as is
    assert default_window(out).low == 100  # a display that can only window gets the table's range


def test_voi_lut_function_sigmoid_is_carried_with_the_window(tmp_path, fast):
    _, (path,) = write_stack(tmp_path, [0.0])
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60
    ds = _unsigned(path, stored)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 1800, 1500, "SIGMOID"
    ds.save_as(path, enforce_file_format=True)
    out = load(path)
    (window,) = out.windows
    assert (window.width, window.level, window.function) == (1500, 1800, "SIGMOID")
    reference = apply_voi_lut(stored.astype(np.float64), ds)  # on 0 .. 2**BitsStored - 1
    shown = apply_window(out.array[0], window).astype(int)
    assert np.abs(shown - reference * 255 / 4095).max() <= 1
    assert not np.array_equal(shown, apply_window(out.array[0], Window(1500, 1800)))
