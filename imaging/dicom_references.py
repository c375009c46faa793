"""What a derived DICOM object (SEG, SR, KOS, RTSTRUCT) says it was derived from.

Shared by the reader of other tools' results (inference) and the PACS send, which refuses results
whose source series the PACS does not hold.
"""

from __future__ import annotations

DERIVED_MODALITIES = ("SEG", "SR", "KO", "RTSTRUCT", "PR")


def referenced_series(ds) -> set[str]:
    """The series UIDs a SEG, SR, KOS or RTSTRUCT references (its source series)."""
    uids = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            uids |= {str(s.SeriesInstanceUID) for s in study.get("ReferencedSeriesSequence", [])}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            uids |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])}
    return uids
