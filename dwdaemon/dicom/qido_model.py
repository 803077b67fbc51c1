"""QIDO-RS answers: default return attributes per level (PS3.18 10.6.3.3), includefield, and
the response datasets built from an instance's stored DICOM JSON plus computed attributes.

No Twisted here.  Levels are named as the URL resources: ``studies``, ``series``, ``instances``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import tag_for_keyword

from .jsonmodel import public_bulk_path
from .matching import Query
from .mediatypes import parse_accept

__all__ = [
    "DEFAULT_TAGS",
    "LEVELS",
    "build_response",
    "level_of",
    "return_tags",
]

LEVELS = ("studies", "series", "instances")


def _tags(*keywords: str) -> tuple[str, ...]:
    return tuple(f"{tag_for_keyword(k):08X}" for k in keywords)


SPECIFIC_CHARACTER_SET = "00080005"
RETRIEVE_URL = "00081190"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"

#: PS3.18 Table 10.6.3-3 (plus StudyDescription and SOPClassesInStudy, which viewers list).
STUDY_DEFAULTS = _tags(
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
    "ModalitiesInStudy", "SOPClassesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC",
    "RetrieveURL", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
#: PS3.18 Table 10.6.3-4.
SERIES_DEFAULTS = _tags(
    "SpecificCharacterSet", "Modality", "TimezoneOffsetFromUTC", "SeriesDescription",
    "RetrieveURL", "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "RequestAttributesSequence", "InstanceAvailability",
)
#: PS3.18 Table 10.6.3-5.
INSTANCE_DEFAULTS = _tags(
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability",
    "TimezoneOffsetFromUTC", "RetrieveURL", "InstanceNumber", "Rows", "Columns",
    "BitsAllocated", "NumberOfFrames",
)
DEFAULT_TAGS = {"studies": STUDY_DEFAULTS, "series": SERIES_DEFAULTS,
                "instances": INSTANCE_DEFAULTS}

#: Study-level attributes besides group 0010 (Patient, Patient Study and General Study modules).
STUDY_LEVEL = frozenset(_tags(
    "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence",
    "ModalitiesInStudy", "SOPClassesInStudy", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "StudyDescription", "ProcedureCodeSequence", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "ReferencedStudySequence", "StudyInstanceUID", "StudyID",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "RequestingPhysician",
    "RequestedProcedureDescription", "RequestedProcedureID",
    "ReasonForPerformedProcedureCodeSequence",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "Occupation",
    "AdditionalPatientHistory", "StudyIDIssuer", "ReasonForStudy", "StudyComments",
    "StudyStatusID", "StudyPriorityID", "RequestedProcedureCodeSequence",
    "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "PatientAge", "PatientSize", "PatientWeight", "MedicalAlerts", "Allergies",
    "SmokingStatus", "PregnancyStatus", "LastMenstrualDate", "PatientState",
))
#: Series-level attributes (General Series, General Equipment, Frame of Reference modules...).
SERIES_LEVEL = frozenset(_tags(
    "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate", "SeriesTime",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "ProtocolName",
    "SeriesDescription", "SeriesDescriptionCodeSequence", "OperatorsName",
    "OperatorIdentificationSequence", "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence", "BodyPartExamined", "PatientPosition", "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries", "RequestAttributesSequence", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "PerformedProcedureStepDescription", "PerformedProtocolCodeSequence",
    "CommentsOnThePerformedProcedureStep",
    "AnatomicalOrientationType", "NumberOfSeriesRelatedInstances", "Manufacturer",
    "InstitutionName", "InstitutionAddress", "StationName", "InstitutionalDepartmentName",
    "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions", "SpatialResolution",
    "DateOfLastCalibration", "TimeOfLastCalibration", "PixelPaddingValue",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "SeriesType",
))
COMPUTED_STUDY = frozenset(_tags(
    "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
))
COMPUTED_SERIES = frozenset(_tags("NumberOfSeriesRelatedInstances"))


def level_of(tag: str) -> str:
    """The QIDO level (``studies``, ``series``, ``instances``) an attribute belongs to."""
    if tag[:4] == "0010" or tag in STUDY_LEVEL:
        return "studies"
    if tag in SERIES_LEVEL:
        return "series"
    return "instances"


def answer_levels(level: str, *, study_given: bool = False,
                  series_given: bool = False) -> tuple[str, ...]:
    """The levels whose attributes an answer carries: the level asked and its parents.

    PS3.18 10.6.3.3.2/3 require the parents' attributes when the target resource is all series
    (all instances), whatever the query keys; with the study (series) in the path they are not
    required but allowed, and Orthanc returns them there too, so they are always returned.
    ``study_given``/``series_given`` are kept for callers and do not change the answer.
    """
    del study_given, series_given
    return LEVELS[:LEVELS.index(level) + 1]


def private_creator_of(tag: str) -> str | None:
    """The Private Creator element (gggg,00xx) of a private data element, else None."""
    group, element = int(tag[:4], 16), int(tag[4:], 16)
    if group % 2 == 0 or group <= 7 or element < 0x1000:
        return None
    return f"{group:04X}00{element >> 8:02X}"


def return_tags(level: str, query: Query, *, study_given: bool = False,
                series_given: bool = False) -> tuple[list[str], tuple[str, ...]]:
    """The tags an answer returns, and the levels ``includefield=all`` spans.

    Returns the ordered list of explicit tags (defaults of each answered level, the UIDs of the
    parents, the includefield tags and the matching keys) and the tuple of answered levels.
    """
    levels = answer_levels(level, study_given=study_given, series_given=series_given)
    wanted: dict[str, None] = {}
    for lvl in levels:
        for tag in DEFAULT_TAGS[lvl]:
            wanted.setdefault(tag, None)
    if level in ("series", "instances"):
        wanted.setdefault(STUDY_UID, None)
    if level == "instances":
        wanted.setdefault(SERIES_UID, None)
    for tag in query.includefields:
        wanted.setdefault(tag, None)
        creator = private_creator_of(tag)
        if creator is not None:  # PS3.18 10.6.3.3: a private element comes with its creator
            wanted.setdefault(creator, None)
    for tag in query.matching_tags():
        wanted.setdefault(tag, None)
    return list(wanted), levels


def _resolve_bulk(element: Any, placeholder: str, base: str) -> Any:
    """A copy of *element* with ``BulkDataURI`` placeholders resolved (others returned as is)."""
    if not isinstance(element, dict):
        return element
    uri = element.get("BulkDataURI")
    if isinstance(uri, str) and uri.startswith(placeholder):
        return {**element, "BulkDataURI": base + public_bulk_path(uri[len(placeholder):])}
    if element.get("vr") == "SQ" and element.get("Value"):
        items = [
            {tag: _resolve_bulk(sub, placeholder, base) for tag, sub in item.items()}
            if isinstance(item, dict) else item
            for item in element["Value"]
        ]
        return {**element, "Value": items}
    return element


def build_response(
    dataset: Mapping[str, Any] | None,
    computed: Mapping[str, Any],
    tags: Iterable[str],
    *,
    include_levels: Iterable[str] = (),
    bulk: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One answer dataset (DICOM JSON, sorted by tag).

    Parameters
    ----------
    dataset : Mapping or None
        Stored DICOM JSON of a representative instance of the answer (any instance of the study
        for a study answer, of the series for a series answer, the instance itself otherwise).
    computed : Mapping
        Computed elements (``ModalitiesInStudy``, ``RetrieveURL``, counts...), DICOM JSON elements
        keyed by tag; they win over stored ones.
    tags : iterable of str
        The tags to return (see :func:`return_tags`); absent ones are left out.
    include_levels : iterable of str
        Levels for ``includefield=all``: every stored attribute of these levels is returned.
    bulk : (placeholder, base) or None
        Rewrite ``BulkDataURI`` values starting with ``placeholder`` to start with ``base``.
    """
    dataset = dataset or {}
    out: dict[str, Any] = {}
    levels = set(include_levels)
    if levels:
        for tag, element in dataset.items():
            if tag[4:] == "0000" or tag[:4] in ("0002", "FFFE"):
                continue
            if level_of(tag) in levels:
                out[tag] = element
    for tag in tags:
        if tag in computed:
            out[tag] = computed[tag]
        elif tag in dataset:
            out[tag] = dataset[tag]
    for tag, element in computed.items():
        if tag in out or not levels:
            continue
        if level_of(tag) in levels or tag in (SPECIFIC_CHARACTER_SET, RETRIEVE_URL):
            out[tag] = element
    if SPECIFIC_CHARACTER_SET in out:
        out[SPECIFIC_CHARACTER_SET] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    if bulk is not None:
        return {tag: _resolve_bulk(out[tag], bulk[0], bulk[1]) for tag in sorted(out)}
    return {tag: out[tag] for tag in sorted(out)}


# -- answer negotiation -----------------------------------------------------------------------

JSON = "application/dicom+json"
XML = "application/dicom+xml"
_JSON_TYPES = frozenset({JSON, "application/json", "*/*", "*", "application/*"})


def answer_media_type(header: bytes | str | None) -> str | None:
    """``application/dicom+json`` or ``application/dicom+xml`` (multipart) for an Accept
    header; None when neither is acceptable. Raises :class:`AcceptError` when malformed."""
    ranges = parse_accept(header)
    if not ranges:
        return JSON
    for media_range in ranges:
        mtype = media_range.media_type.lower()
        if mtype in _JSON_TYPES:
            return JSON
        if mtype == XML:
            return XML
        if mtype in ("multipart/related", "multipart/*"):
            part = media_range.params.get("type", XML).lower()
            if part == XML:
                return XML
    return None
