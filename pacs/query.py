"""What a query asks and what it answers, the same for C-FIND and QIDO-RS.

A ``Query`` is a level and matching keys (DICOM keywords: ``PatientID``, ``PatientName`` with
wildcards, ``StudyDate`` as a date or a range ``YYYYMMDD-YYYYMMDD``, ``ModalitiesInStudy``, ...).
A match comes back as a plain ``{keyword: text}`` dict with the level's return keys, whichever
protocol answered, so the command line and the viewer show both alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radlens.pacs.errors import PacsError

LEVELS = ("patient", "study", "series", "image")
RETURN_KEYS = {
    "patient": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "study": (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    "image": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
# The keys above a level that a hierarchical query must fix (C-FIND's Study Root model).
REQUIRED = {"series": ("StudyInstanceUID",), "image": ("StudyInstanceUID", "SeriesInstanceUID")}

Match = dict[str, str]


@dataclass(frozen=True)
class Query:
    level: str
    keys: dict[str, str] = field(default_factory=dict)  # keyword → value to match (empty values dropped)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise PacsError(f"--level {self.level}", f"must be one of {', '.join(LEVELS)}")
        object.__setattr__(self, "keys", {k: str(v) for k, v in self.keys.items() if v not in (None, "")})
        for key in REQUIRED.get(self.level, ()):
            if not self.keys.get(key):
                raise PacsError(f"a {self.level}-level query", f"needs the {key} it lies under")

    def identifier(self) -> Dataset:
        """The C-FIND identifier: the level, the return keys empty, the matching keys set."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE" if self.level == "image" else self.level.upper()
        for key in RETURN_KEYS[self.level]:
            setattr(ds, key, "")
        for key, value in self.keys.items():
            setattr(ds, key, value)
        return ds


def as_match(ds: Dataset, level: str) -> Match:
    """A C-FIND or QIDO answer as ``{keyword: text}`` over the level's return keys."""
    out = {}
    for key in RETURN_KEYS[level]:
        value = ds.get(key, "")
        if isinstance(value, MultiValue):
            value = "\\".join(str(v) for v in value)
        out[key] = "" if value is None else str(value)
    return out
