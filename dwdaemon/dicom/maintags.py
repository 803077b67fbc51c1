"""Orthanc's main DICOM tags of each level, and the typed index columns, from DICOM JSON."""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import keyword_for_tag

PATIENT_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
STUDY_TAGS = (
    "StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber",
    "StudyInstanceUID", "RequestedProcedureDescription", "InstitutionName",
    "RequestingPhysician", "ReferringPhysicianName",
)
SERIES_TAGS = (
    "SeriesDate", "SeriesTime", "Modality", "Manufacturer", "StationName", "SeriesDescription",
    "BodyPartExamined", "SequenceName", "ProtocolName", "SeriesNumber", "CardiacNumberOfImages",
    "ImagesInAcquisition", "NumberOfTemporalPositions", "NumberOfSlices", "NumberOfTimeSlices",
    "SeriesInstanceUID", "ImageOrientationPatient", "SeriesType", "OperatorsName",
    "PerformedProcedureStepDescription", "AcquisitionDeviceProcessingDescription",
    "ContrastBolusAgent",
)
INSTANCE_TAGS = (
    "InstanceCreationDate", "InstanceCreationTime", "AcquisitionNumber", "ImageIndex",
    "InstanceNumber", "NumberOfFrames", "TemporalPositionIdentifier", "SOPInstanceUID",
    "ImagePositionPatient", "ImageComments", "ImageOrientationPatient",
)
LEVEL_TAGS = {
    "patients": PATIENT_TAGS,
    "studies": STUDY_TAGS,
    "series": SERIES_TAGS,
    "instances": INSTANCE_TAGS,
}

_TAG_OF: dict[str, str] = {}
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")


def _tag_of(keyword: str) -> str:
    if not _TAG_OF:
        from pydicom.datadict import tag_for_keyword

        for kws in LEVEL_TAGS.values():
            for kw in kws:
                _TAG_OF[kw] = f"{tag_for_keyword(kw):08X}"
    return _TAG_OF[keyword]


def _text(value: Any) -> str:
    """One JSON value as Orthanc shows it in MainDicomTags."""
    if isinstance(value, dict):  # PN
        groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def element_text(dataset: dict[str, Any], keyword_or_tag: str) -> str | None:
    """The value of an element of a DICOM JSON dataset as text (multi-values joined by ``\\``)."""
    tag = keyword_or_tag.upper() if _HEX_TAG.fullmatch(keyword_or_tag) else _tag_of(keyword_or_tag)
    elem = dataset.get(tag)
    if elem is None:
        return None
    values = elem.get("Value")
    if not values:
        return ""
    if elem.get("vr") == "SQ":
        return None
    return "\\".join(_text(v) for v in values)


def main_tags(dataset: dict[str, Any], level: str) -> dict[str, str]:
    """Orthanc's ``MainDicomTags`` of ``level`` for a dataset (present tags only)."""
    out: dict[str, str] = {}
    for kw in LEVEL_TAGS[level]:
        value = element_text(dataset, _tag_of(kw))
        if value is not None:
            out[kw] = value
    return out


def keyword(tag: str) -> str:
    """Keyword of an 8-hex-digit tag, or the tag itself when it has none."""
    return keyword_for_tag(int(tag, 16)) or tag
