"""Compressed pixel data needs only the pylibjpeg plugins; GDCM is an optional fallback.

GDCM aborts the process on some corrupt streams, so it is an extra (``radlens[gdcm]``), not a
dependency; without any decoder for a syntax, the error names the file and the syntax.
"""

from pathlib import Path

import numpy as np
import pytest
import tomllib
from test_test_files import EXPECTED, TEST_FILES

from radlens.imaging import dicom_pixels
from radlens.imaging.errors import UnsupportedError
from radlens.imaging.loading import load

COMPRESSED = [
    "693_J2KI.dcm",  # JPEG 2000
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "JPEGLSNearLossless_16.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "examples_ybr_color.dcm",  # 30 JPEG frames
]


class _Plugins:
    """pydicom's decoder for a syntax as it is when only ``plugins`` of its plugins are installed."""

    def __init__(self, decoder, plugins: tuple[str, ...]):
        self.decoder = decoder
        self.available_plugins = tuple(p for p in decoder.available_plugins if p in plugins)
        self.missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0"] if not plugins else []

    def as_array(self, ds, **kwargs):
        if kwargs.get("decoding_plugin", self.available_plugins[0]) not in self.available_plugins:
            raise AssertionError("a plugin that is not installed was asked")
        return self.decoder.as_array(ds, **kwargs)


def _only(monkeypatch, plugins: tuple[str, ...]) -> None:
    real = dicom_pixels.get_decoder
    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda ts: _Plugins(real(ts), plugins))


@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_files_decode_with_pylibjpeg_alone(name, monkeypatch):
    _only(monkeypatch, ("pylibjpeg",))
    _, shape, dtype, total = EXPECTED[name]
    volume = load(TEST_FILES / name)
    assert (volume.array.shape, volume.array.dtype) == (shape, np.dtype(dtype))
    assert float(np.sum(volume.array, dtype=np.float64)) == pytest.approx(total, rel=1e-6)


def test_without_a_decoder_the_message_names_the_file_and_the_syntax(monkeypatch):
    _only(monkeypatch, ())
    path = TEST_FILES / "JPEG2000.dcm"
    with pytest.raises(UnsupportedError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}: cannot decode JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91): "
        "no decoder for it is installed (not installed: pylibjpeg - requires pylibjpeg>=2.0)"
    )


def test_gdcm_is_an_optional_extra():
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("python-gdcm") for d in project["dependencies"])
    assert [d.split(">")[0] for d in project["optional-dependencies"]["gdcm"]] == ["python-gdcm"]
