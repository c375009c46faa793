"""What every DICOM result shares: the source series it derives from, the model as an algorithm, saving.

Derived objects (SEG, SR, KOS, SC) belong to the source study, reference the source instances and
frame of reference, and say that a machine made them: the algorithm (family Artificial
Intelligence) and RadLens as the device. Headers are read without pixels: highdicom needs only them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radlens.imaging.atomic import atomic_path
from radlens.imaging.volume import Volume
from radlens.inference.errors import DicomResultsError
from radlens.inference.findings import ModelRun

MANUFACTURER = "RadLens"
SOFTWARE_VERSION = "1"
DEVICE_UID = "2.25.203094457206224521744436318262361419531"  # RadLens as an SR observer device
FORMATS = {
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
}
ANONYMOUS = "ANONYMOUS"  # the ID; the name is ANONYMOUS^ (family name only)


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """The headers of a volume's DICOM files, in slice order (``volume.files``)."""

    volume: Volume
    datasets: tuple[Dataset, ...]

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].get("FrameOfReferenceUID", ""))

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def require_dicom(volume: Volume) -> None:
    """Refuse, in one line, a volume that did not come from DICOM files (no headers are read)."""
    if not volume.files:
        name = Path(volume.source).name.lower() if volume.source else ""
        kind = next((k for suffix, k in FORMATS.items() if name.endswith(suffix)), "not from DICOM files")
        raise DicomResultsError(
            volume.source or "volume", f"DICOM results need a DICOM source series: this one is {kind}"
        )


def source_series(volume: Volume) -> SourceSeries:
    """The volume's DICOM headers; a volume that did not come from DICOM is refused in one line."""
    require_dicom(volume)
    try:
        datasets = tuple(pydicom.dcmread(f, stop_before_pixels=True) for f in volume.files)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise DicomResultsError(volume.source, f"cannot read the source DICOM headers: {err}") from None
    if not datasets[0].get("FrameOfReferenceUID"):
        raise DicomResultsError(volume.files[0], "the source series has no FrameOfReferenceUID")
    return SourceSeries(volume, datasets)


def algorithm_sequence(model: ModelRun) -> hd.AlgorithmIdentificationSequence:
    """The model as SEG's AlgorithmIdentificationSequence."""
    return hd.AlgorithmIdentificationSequence(
        name=model.name, version=model.version or "0", family=codes.DCM.ArtificialIntelligence, source=MANUFACTURER
    )


def algorithm_id(model: ModelRun) -> hd.sr.AlgorithmIdentification:
    """The model as SR's TID 4019 algorithm identification."""
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version or "0", family=codes.DCM.ArtificialIntelligence
    )


def device_observer() -> hd.sr.ObserverContext:
    """RadLens as the SR/KOS observer: the content was made by a device, not a person."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name="RadLens AI"
        ),
    )


def anonymize(ds: Dataset) -> None:
    """Patient name and ID replaced, birth date and sex emptied (the study UIDs stay: same study)."""
    ds.PatientName = f"{ANONYMOUS}^"
    ds.PatientID = ANONYMOUS
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    for keyword in ("OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress", "PatientBirthTime"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "RadLens: patient name and ID replaced"


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:64] or "results"


def save(ds: Dataset, path: str | os.PathLike, *, anonymized: bool = False) -> Path:
    """Write one DICOM object atomically (temporary file, then rename)."""
    if anonymized:
        anonymize(ds)
    path = Path(path)
    with atomic_path(path, ".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def finding_code(label: str) -> hd.sr.CodedConcept:
    """A RadLens label as a coded concept: SNOMED where one fits, else RadLens' own scheme."""
    code = FINDING_CODES.get(label.lower())
    if code is not None:
        return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)
    return hd.sr.CodedConcept(safe_name(label)[:16], PRIVATE_SCHEME, label[:64])


def label_of(code) -> str:
    """The label a coded finding type reads back as (the inverse of ``finding_code``)."""
    for label, known in FINDING_CODES.items():
        if str(code.value) == known.value and str(code.scheme_designator) == known.scheme_designator:
            return label
    return str(code.meaning)


PRIVATE_SCHEME = "99RADLENS"
FINDING_CODES = {"nodule": codes.SCT.Nodule, "mass": codes.SCT.Mass, "lesion": codes.SCT.Lesion}


def producer(ds) -> tuple[str, str]:
    """Who made a derived object, (name, version): the algorithm it names, else its software."""
    software = ds.get("SoftwareVersions", "")
    version = str(software if isinstance(software, str) else (software[0] if software else ""))
    for item in ds.get("SegmentSequence", []):
        for algo in item.get("SegmentationAlgorithmIdentificationSequence", []):
            if algo.get("AlgorithmName"):
                return str(algo.AlgorithmName), str(algo.get("AlgorithmVersion", version))
        if item.get("SegmentAlgorithmName"):
            return str(item.SegmentAlgorithmName), version
    for keyword in ("ManufacturerModelName", "Manufacturer"):
        if ds.get(keyword):
            return str(ds.get(keyword)), version
    return f"{ds.get('Modality', 'DICOM')} import", version
