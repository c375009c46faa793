"""Key images as a Key Object Selection, annotated screenshots as Secondary Capture (highdicom).

The screenshot carries its annotations in its pixels, so it says so (BurnedInAnnotation YES); with
``anonymize`` neither object names the patient. Both belong to the source study.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from radlens.inference.dicom_source import MANUFACTURER, SourceSeries, device_observer, save


def write_key_images(
    source: SourceSeries,
    slices: list[int],
    path: str | os.PathLike,
    *,
    series_number: int,
    description: str,
    anonymize: bool = False,
) -> Path:
    """A KOS ("Of Interest") citing the source slices at ``slices`` (z indices)."""
    chosen = [source.datasets[z] for z in sorted(set(slices))]
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=chosen,
        content=hd.ko.KeyObjectSelection(
            document_title=codes.DCM.OfInterest,
            referenced_objects=chosen,
            observer_device_context=device_observer(),
            description=description[:1024],
        ),
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="AI key images (machine-generated)",
    )
    return save(kos, path, anonymized=anonymize)


def write_screenshot(
    rgb: np.ndarray,
    source: SourceSeries,
    path: str | os.PathLike,
    *,
    series_number: int,
    description: str,
    source_slice: int | None = None,
    anonymize: bool = False,
) -> Path:
    """An RGB (rows, columns, 3) uint8 rendering as Secondary Capture in the source study."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    ref = source.datasets[source_slice if source_slice is not None else len(source.datasets) // 2]
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),
        series_description="AI annotated screenshot (machine-generated)",
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = ""  # unknown (type 2C in General Series; a screenshot shows no paired organ)
    sc.ImageComments = description[:10240]
    if not description.isascii():  # the legend's "·" and "—": UTF-8 for every text of the object
        sc.SpecificCharacterSet = "ISO_IR 192"
    sc.ConversionType = "SYN"
    if source_slice is not None:  # the slice it shows
        item = Dataset()
        item.ReferencedSOPClassUID = ref.SOPClassUID
        item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        sc.SourceImageSequence = [item]
    return save(sc, path, anonymized=anonymize)
