"""Every file of the image test data that installed packages ship opens, or fails in one clean line.

The corpus (issue 21): pydicom's test files, pydicom-data (the dev extra), nibabel's test data (NIfTI
1 and 2, 4D, MGH, MINC 1 and 2, PAR/REC, AFNI, Analyze, and its DICOM files) and pynetdicom's. A file
opens when it scans into series and every series loads (a DICOMDIR: all its series; a 4D set: its
first and last part). Files listed in :data:`FAILS` are deliberately broken or no image at all
(reports, plans, tractography, headers without their data): each must fail with one line that names
the file and starts with the reason given here. Every other file must open; a file added by a
package upgrade fails the count until it is looked at. Run it as a report with
``pytest tests/imaging/test_corpus.py -q -rA -k counts``.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from pathlib import Path

import data_store  # the pydicom-data package
import nibabel
import pydicom
import pynetdicom
import pytest

from radlens.imaging import load, scan
from radlens.imaging.errors import ImagingError

ROOTS = {
    "pydicom": Path(pydicom.__file__).parent / "data" / "test_files",
    "pydicom-data": Path(data_store.__file__).parent / "data",
    "nibabel": Path(nibabel.__file__).parent / "tests" / "data",
    "nibabel-nicom": Path(nibabel.__file__).parent / "nicom" / "tests" / "data",
    "pynetdicom": Path(pynetdicom.__file__).parent / "tests" / "dicom_files",
}
NOT_DICOM = "not a DICOM file"
# name pattern → the start of its one-line reason: deliberately broken files and files that hold no image
FAILS = {
    # pydicom: documents, plans, structures and waveforms, headers without pixels, broken streams
    "pydicom/*.txt": NOT_DICOM, "pydicom/*.json": NOT_DICOM, "pydicom/*.dump": NOT_DICOM,
    "pydicom/crayons.icc": NOT_DICOM, "pydicom/dicomdirtests/*README*": NOT_DICOM,
    "pydicom/ExplVR_*EndNoMeta.dcm": "no image (SOP class RT Ion Plan Storage",
    "pydicom/rtplan*.dcm": "no image (SOP class RT Plan Storage",
    "pydicom/rtstruct.dcm": "no image (SOP class RT Structure Set Storage",
    "pydicom/reportsi*.dcm": "no image (SOP class Basic Text SR Storage",
    "pydicom/test-SR.dcm": "no image (SOP class Comprehensive SR Storage",
    "pydicom/waveform_ecg.dcm": "no image (SOP class 12-lead ECG Waveform Storage",
    "pydicom/UN_sequence.dcm": "no image (SOP class CT Image Storage / modality none)",  # no pixel data
    "pydicom/priv_SQ.dcm": "no image (SOP class MR Image Storage / modality none)",
    "pydicom/no_meta_group_length.dcm": "no image (SOP class RT Image Storage / modality none)",
    "pydicom/empty_charset_LEI.dcm": NOT_DICOM, "pydicom/meta_missing_tsyntax.dcm": NOT_DICOM,
    "pydicom/nested_priv_SQ.dcm": NOT_DICOM, "pydicom/no_meta.dcm": NOT_DICOM,  # data sets without an image
    "pydicom/JPEG-lossy.dcm": "cannot decode pixel data (JPEG Extended",  # a 12-bit stream libjpeg finds broken
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode pixel data (JPEG 2000",
    "pydicom/MR_truncated.dcm": "truncated: pixel data needs 8192 bytes",
    "pydicom/badVR.dcm": "invalid NumberOfFrames '1A'",
    "pydicom/dicomdirtests/DICOMDIR-empty.dcm": "no images found",
    "pydicom/dicomdirtests/TINY_ALPHA/*/IM*": "no image (SOP class CT Image Storage",  # headers without pixels
    "pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR": "no images found",
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": "no pixel data (truncated file?)",
    # nibabel: tractography, surfaces, scripts, headers shipped without their data, broken headers
    "nibabel/*.tck": NOT_DICOM, "nibabel/*.trk": NOT_DICOM, "nibabel/*.m": NOT_DICOM, "nibabel/*.py": NOT_DICOM,
    "nibabel/*.rst": NOT_DICOM, "nibabel/.gitignore": NOT_DICOM, "nibabel/tinypet.v": NOT_DICOM,
    "nibabel/*.PAR": "a header without its data: ",
    "nibabel/*.hdr": "a header without its data: ",
    "nibabel/ADC_Map.PAR": "cannot read volume: Header inconsistency",
    "nibabel/phantom_truncated.PAR": "cannot read volume: Header inconsistency",
    "nibabel/bad_*+orig.HEAD": "cannot read volume: ",
    "nibabel/row_major.dconn.nii": "a CIFTI-2 matrix (brain-ordinate data), not an image on a grid",
    "nibabel-nicom/*.bin": NOT_DICOM, "nibabel-nicom/*.bin.gz": NOT_DICOM, "nibabel-nicom/*.txt": NOT_DICOM,
    "nibabel-nicom/csa_slice_norm.dcm": "no pixel data (the file ends after 13400 bytes; truncated?)",
}  # fmt: skip
# Files that open although a pattern above names their kind (a PAR with its REC, a BRIK's HEAD).
OPENS = {"nibabel/phantom_EPI_asc_CLEAR_2_1.PAR", "nibabel/phantom_varscale.PAR"}
# Data files that belong to a header beside them: opened through it, not on their own.
DATA_FILES = {"nibabel/phantom_EPI_asc_CLEAR_2_1.REC", "nibabel/phantom_varscale.REC", "nibabel/phantom_truncated.REC",
              "nibabel/example4d+orig.BRIK.gz", "nibabel/scaled+tlrc.BRIK"}  # fmt: skip
OPEN_COUNT = {"pydicom": 96, "pydicom-data": 67, "nibabel": 24, "nibabel-nicom": 7, "pynetdicom": 6}


def _corpus() -> dict[str, Path]:
    files = {}
    for root_name, root in ROOTS.items():
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py":
                files[f"{root_name}/{p.relative_to(root)}"] = p
    return files


CORPUS = _corpus()


def _expected_failure(name: str) -> str | None:
    if name in OPENS or name in DATA_FILES:
        return None
    hits = [reason for pattern, reason in FAILS.items() if fnmatch.fnmatchcase(name, pattern)]
    return hits[-1] if hits else None  # the most specific pattern is listed last


def open_file(path: Path) -> list[str]:
    """Scan ``path`` and load every series it holds (first and last part of a 4D set): their kinds."""
    kinds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for series in scan(path):
            for part in {series.parts[0], series.parts[-1]} if series.parts else {series}:
                volume = load(part)
                assert volume.array.size > 0
            kinds.append(series.kind)
    return kinds


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", [n for n in CORPUS if n not in DATA_FILES])
def test_each_file_opens_or_fails_in_one_line(name):
    path, reason = CORPUS[name], _expected_failure(name)
    if reason is None:
        assert open_file(path)
        return
    with pytest.raises(ImagingError) as caught:
        open_file(path)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{os.fspath(path)}: {reason}")


def test_counts():
    """How many of each package's files open; the rest are in FAILS with their reason."""
    opens = {root: 0 for root in ROOTS}
    for name in CORPUS:
        if name not in DATA_FILES and _expected_failure(name) is None:
            opens[name.split("/")[0]] += 1
    print(f"corpus: {len(CORPUS)} files, {sum(opens.values())} open: {opens}")
    assert opens == OPEN_COUNT
    assert all(any(fnmatch.fnmatchcase(n, p) for n in CORPUS) for p in FAILS), "a FAILS pattern matches no file"
