"""Orthanc identifiers: SHA-1 of the DICOM identifiers of a resource and its parents."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

LEVELS = ("patients", "studies", "series", "instances")


def orthanc_hash(*parts: str) -> str:
    """Hash ``parts`` joined by ``|`` the way Orthanc does.

    The SHA-1 hex digest is cut into five groups of eight lowercase characters joined by ``-``.
    """
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def _clean(value: object) -> str:
    """Strip DICOM padding (spaces and NULs) from an identifier."""
    if value is None:
        return ""
    return str(value).strip(" \x00")


@dataclass(frozen=True)
class ResourceIds:
    """The four Orthanc identifiers of an instance and its parents."""

    patient: str
    study: str
    series: str
    instance: str


def resource_ids(patient_id: object, study_uid: object, series_uid: object,
                 sop_uid: object) -> ResourceIds:
    """Compute the Orthanc identifiers of an instance; a missing PatientID is ``""``."""
    p, st, se, so = _clean(patient_id), _clean(study_uid), _clean(series_uid), _clean(sop_uid)
    return ResourceIds(
        patient=orthanc_hash(p),
        study=orthanc_hash(p, st),
        series=orthanc_hash(p, st, se),
        instance=orthanc_hash(p, st, se, so),
    )


def looks_like_orthanc_id(value: str) -> bool:
    """Whether ``value`` has the shape of an Orthanc identifier."""
    parts = value.split("-")
    return len(parts) == 5 and all(
        len(p) == 8 and all(c in "0123456789abcdef" for c in p) for p in parts
    )
