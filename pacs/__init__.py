"""Studies from a PACS and results back to it: DIMSE (pynetdicom) and DICOMweb (dicomweb-client).

Knows nothing of models or Qt; it moves DICOM files. The viewer drives it in the background.
"""
