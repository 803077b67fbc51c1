"""Small synthetic DICOM instances for the QIDO-RS tests."""

from __future__ import annotations

import io
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def instance(sop_uid: str, study_uid: str, series_uid: str, *, sop_class: str = CT_IMAGE,
             charset: str = "ISO_IR 192", **attributes: Any) -> bytes:
    """A Part 10 file (explicit VR little endian, no pixel data) with the given attributes."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    for keyword, value in attributes.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = []
            for item in value:
                sub = Dataset()
                for k, v in item.items():
                    setattr(sub, k, v)
                items.append(sub)
            value = Sequence(items)
        setattr(ds, keyword, value)
    if "Rows" in ds:  # a tiny 8-bit monochrome image
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(ds.Rows * ds.Columns)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


STUDY_A = "1.2.826.0.1.3680043.8.498.1"
STUDY_B = "1.2.826.0.1.3680043.8.498.2"
STUDY_C = "1.2.826.0.1.3680043.8.498.3"
SERIES_A1 = STUDY_A + ".1"
SERIES_A2 = STUDY_A + ".2"
SERIES_B1 = STUDY_B + ".1"
SERIES_C1 = STUDY_C + ".1"


def corpus() -> list[bytes]:
    """Three studies, four series, nine instances with varied attributes."""
    a = {"PatientName": "Müller^José", "PatientID": "PID1", "PatientBirthDate": "19700101",
         "PatientSex": "M", "StudyDate": "20240115", "StudyTime": "093015",
         "AccessionNumber": "ACC1", "StudyID": "S1", "StudyDescription": "Brain MRI",
         "ReferringPhysicianName": "Ref^Doc", "PatientComments": "note x",
         "ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2.840.10008.3.1.2.3.1",
                                      "ReferencedSOPInstanceUID": "1.2.3.4"}]}
    b = {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう", "PatientID": "PID2",
         "StudyDate": "20230601", "StudyTime": "140000", "AccessionNumber": "ACC2",
         "StudyDescription": "Abdomen CT"}
    c = {"PatientName": "DOE^JOHN", "PatientID": "PID3", "StudyDate": "20240201",
         "StudyTime": "2300", "AccessionNumber": "ACC3", "StudyDescription": "Chest [CT] 50%"}
    files = []
    for n in range(1, 4):
        files.append(instance(f"{SERIES_A1}.{n}", STUDY_A, SERIES_A1, sop_class=MR_IMAGE,
                              Modality="MR", SeriesNumber=1, SeriesDescription="T1 axial",
                              InstanceNumber=n, Rows=4, Columns=4, SliceThickness="2.5",
                              **a))
    files.append(instance(f"{SERIES_A2}.1", STUDY_A, SERIES_A2, sop_class=BASIC_TEXT_SR,
                          Modality="SR", SeriesNumber=2, InstanceNumber=1, **a))
    for n in range(1, 3):
        files.append(instance(f"{SERIES_B1}.{n}", STUDY_B, SERIES_B1, Modality="CT",
                              SeriesNumber=1, InstanceNumber=n, **b))
    files.append(instance(f"{SERIES_C1}.1", STUDY_C, SERIES_C1, Modality="CT", SeriesNumber=3,
                          InstanceNumber=1, SeriesDate="20240202", **c))
    return files
