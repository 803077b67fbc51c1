"""Ingest analysis: parse a DICOM file once, validate it, and compute what the index stores."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from dwdaemon.dicom.encodings import python_codecs
from dwdaemon.dicom.frames import (
    SUBSAMPLED_422,
    FrameLayout,
    encapsulated_layout,
    native_layout,
)
from dwdaemon.dicom.ids import resource_ids
from dwdaemon.dicom.jsonmodel import UNDEFINED_LENGTH, dataset_to_json, dumps
from dwdaemon.dicom.maintags import element_text, main_tags
from dwdaemon.dicom.matching import patient_name_columns
from dwdaemon.store.index.base import InstanceKeys

DEFER_SIZE = 1024
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_LE = "1.2.840.10008.1.2"


class IngestError(ValueError):
    """The input cannot be stored; ``reason`` is the DICOM failure reason (PS3.4 / PS3.18)."""

    def __init__(self, message: str, reason: int = 0xC000, http_status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.http_status = http_status


# Failure reasons used by STOW-RS (PS3.18 Table I.2-3 / PS3.4 Annex B)
REASON_CANNOT_UNDERSTAND = 0xC000
#: Duplicate SOP Instance (PS3.7 C.4.2: another instance already has this SOP Instance UID).
REASON_DUPLICATE_SOP_INSTANCE = 0x0111


@dataclass
class Analysis(InstanceKeys):
    """Everything ingest learns from one file."""

    metadata: dict[str, Any]
    bulk: dict[str, list[Any]]
    frames: FrameLayout
    warnings: list[str] = field(default_factory=list)

    @property
    def patient_tags(self) -> dict[str, str]:
        return main_tags(self.metadata, "patients")

    def study_columns(self) -> dict[str, Any]:
        md = self.metadata
        return {
            "patient_name": element_text(md, "PatientName"),
            "patient_birth_date": element_text(md, "PatientBirthDate"),
            "patient_sex": element_text(md, "PatientSex"),
            "study_date": element_text(md, "StudyDate"),
            "study_time": element_text(md, "StudyTime"),
            "accession_number": element_text(md, "AccessionNumber"),
            "study_id": element_text(md, "StudyID"),
            "study_description": element_text(md, "StudyDescription"),
            "referring_physician_name": element_text(md, "ReferringPhysicianName"),
            **patient_name_columns(md),
        }

    def series_columns(self) -> dict[str, Any]:
        md = self.metadata
        return {
            "modality": element_text(md, "Modality"),
            "series_number": element_text(md, "SeriesNumber"),
            "series_description": element_text(md, "SeriesDescription"),
            "series_date": element_text(md, "SeriesDate"),
            "series_time": element_text(md, "SeriesTime"),
        }


#: Tags of the UIDs every instance must have (read from their raw bytes when possible).
_UID_TAGS = {"SOPInstanceUID": 0x00080018, "SOPClassUID": 0x00080016,
             "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E}


def _required_uid(ds: Any, keyword: str, meta_keyword: str | None = None) -> str:
    """A UID the data set must have; with ``meta_keyword``, the file meta information's
    element stands in for a missing (or empty) one."""
    raw = ds._dict.get(_UID_TAGS[keyword])  # noqa: SLF001
    if isinstance(getattr(raw, "value", None), bytes):
        # As read, not converted yet: the ASCII text (pydicom's conversion and validation
        # cost tens of microseconds per element; the UID check below is the same).
        text = raw.value.decode("ascii", "replace").strip(" \x00")
    else:
        value = ds.get(keyword)
        text = str(value).strip(" \x00") if value is not None else ""
    if not text and meta_keyword is not None:
        meta_value = getattr(ds, "file_meta", {}).get(meta_keyword)
        text = str(meta_value).strip(" \x00") if meta_value is not None else ""
    if not text:
        raise IngestError(f"{keyword} is missing", REASON_CANNOT_UNDERSTAND)
    if not UID(text).is_valid:
        raise IngestError(f"{keyword} {text!r} is not a valid UID", REASON_CANNOT_UNDERSTAND)
    return text


def analyse(path: str, default_encoding: str = "Latin1",
            uids_from_meta: bool = False) -> Analysis:
    """Parse the file at ``path`` once (large values deferred) and compute its index data.

    ``default_encoding`` (Orthanc's ``DefaultEncoding`` name) decodes the text of a file that
    has no Specific Character Set. The stored JSON keeps the file's Specific Character Set
    value (its text is UTF-8; QIDO answers declare ``ISO_IR 192``).
    ``uids_from_meta``: a data set without SOPClassUID or SOPInstanceUID takes them from the
    file meta information (MediaStorageSOPClassUID/InstanceUID), as Orthanc's ``POST
    /instances`` does; the file and its stored DICOM JSON stay as they are. Raises
    :class:`IngestError` for input that is not a complete DICOM instance (whatever
    pydicom raised on it: malformed input is the client's fault, never a 500 or a traceback).
    """
    try:
        return _analyse(path, default_encoding, uids_from_meta)
    except IngestError:
        raise
    except RecursionError:
        raise IngestError("cannot parse DICOM file: sequences nested too deeply") from None
    except Exception as exc:  # pydicom raises many kinds on malformed data
        raise IngestError(f"cannot parse DICOM file: {exc}") from exc


def _analyse(path: str, default_encoding: str, uids_from_meta: bool) -> Analysis:
    size = os.path.getsize(path)
    if size == 0:
        raise IngestError("empty body: not a DICOM file")
    try:
        ds = dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise IngestError(f"not a DICOM file: {exc}") from exc
    # anything else pydicom raises reaches analyse(), which makes it an IngestError
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise IngestError("not a DICOM Part 10 file: no file meta information with a transfer "
                          "syntax")
    transfer_syntax = str(meta.TransferSyntaxUID)
    if "SpecificCharacterSet" not in ds:
        ds._parent_encoding = python_codecs(default_encoding)  # noqa: SLF001
    sop_uid = _required_uid(ds, "SOPInstanceUID",
                            "MediaStorageSOPInstanceUID" if uids_from_meta else None)
    study_uid = _required_uid(ds, "StudyInstanceUID")
    series_uid = _required_uid(ds, "SeriesInstanceUID")
    sop_class = _required_uid(ds, "SOPClassUID",
                              "MediaStorageSOPClassUID" if uids_from_meta else None)
    _check_complete(ds, size, transfer_syntax, path)
    converted = dataset_to_json(ds, utf8_charset=False)
    patient_id = str(ds.get("PatientID", "") or "")
    md = converted.dataset
    frames_count = _json_int(md, "00280008", ds, "NumberOfFrames") or 1
    layout = _frame_layout(path, ds, md, transfer_syntax, frames_count, converted.bulk)
    bulk = {k: v.to_json() for k, v in converted.bulk.items()}
    if transfer_syntax == DEFLATED:
        # Offsets refer to the inflated stream: bulk values must be served by parsing.
        bulk = {k: [-1, *v[1:]] for k, v in bulk.items()}
    return Analysis(
        ids=resource_ids(patient_id, study_uid, series_uid, sop_uid),
        patient_id=patient_id.strip(" \x00"),
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax=transfer_syntax,
        number_of_frames=frames_count if "7FE00010" in converted.bulk else 0,
        rows=_json_int(md, "00280010", ds, "Rows"),
        columns=_json_int(md, "00280011", ds, "Columns"),
        instance_number=element_text(converted.dataset, "InstanceNumber"),
        metadata=converted.dataset,
        bulk=bulk,
        frames=layout,
        warnings=converted.warnings,
    )



def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _json_int(md: dict[str, Any], tag: str, ds: Any, keyword: str) -> int | None:
    """An integer element from the converted DICOM JSON ``md`` (single-valued), else as
    pydicom converts it from ``ds``."""
    element = md.get(tag)
    if element is None:
        return _int(ds.get(keyword)) if keyword in ds else None
    value = element.get("Value")
    if not value:
        return None
    return value[0] if len(value) == 1 and isinstance(value[0], int) else None


def _check_complete(ds: Any, size: int, transfer_syntax: str, path: str) -> None:
    """Refuse truncated uploads.

    A value running past the end of the file, or bytes left after the last element that do not
    form an element, mean the file was cut short. (A cut exactly between two elements cannot be
    told from a shorter file.)
    """
    if transfer_syntax == DEFLATED:
        return
    last_end = 0
    for tag in ds._dict:  # noqa: SLF001
        raw = ds.get_item(tag, keep_deferred=True)
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        if tell is None or length is None:
            last_end = -1  # converted element: position unknown
            continue
        if length == UNDEFINED_LENGTH:
            last_end = -1
            continue
        value = getattr(raw, "value", b"")
        if (value is None and tell + length > size) or (
                isinstance(value, bytes) and len(value) < length):
            raise IngestError(f"truncated file: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
                              f"needs {length} bytes at offset {tell}, file has {size}")
        last_end = tell + length
    if 0 < last_end < size and _has_data_after(path, last_end):
        raise IngestError(f"truncated file: {size - last_end} bytes after the last complete "
                          f"element at offset {last_end} do not form an element")


def _has_data_after(path: str, offset: int) -> bool:
    """Whether non-zero bytes follow ``offset`` (zero padding at the end is tolerated)."""
    with open(path, "rb") as fp:
        fp.seek(offset)
        while chunk := fp.read(65536):
            if chunk.strip(b"\0"):
                return True
    return False


def _frame_layout(path: str, ds: Any, md: dict[str, Any], transfer_syntax: str, frames: int,
                  bulk: dict[str, Any]) -> FrameLayout:
    location = bulk.get("7FE00010")
    if location is None:
        return FrameLayout("none")
    if transfer_syntax == DEFLATED:
        return FrameLayout("unresolved", count=frames)
    rows = _json_int(md, "00280010", ds, "Rows") or 0
    columns = _json_int(md, "00280011", ds, "Columns") or 0
    if location.encapsulated:
        extended = None
        if "ExtendedOffsetTable" in ds:
            import struct

            raw = ds.ExtendedOffsetTable
            extended = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
        with open(path, "rb") as fp:
            try:
                return encapsulated_layout(fp, location.offset, frames, extended,
                                           location.little_endian)
            except ValueError as exc:
                raise IngestError(f"invalid encapsulated pixel data: {exc}") from exc
    samples = _json_int(md, "00280002", ds, "SamplesPerPixel") or 1
    bits = _json_int(md, "00280100", ds, "BitsAllocated") or 0
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).strip() in SUBSAMPLED_422:
        samples = 2  # PS3.3 C.7.6.3.1.2: two Y, one Cb, one Cr per pair of pixels
    if not (rows and columns and bits):
        return FrameLayout("unresolved", count=frames)
    return native_layout(location.offset, location.length, rows, columns, samples, bits, frames,
                         location.little_endian)


def record_fields(analysis: Analysis) -> dict[str, Any]:
    """The index record fields derived from an analysis (file fields are added by the store)."""
    return {
        **{f.name: getattr(analysis, f.name) for f in fields(InstanceKeys)},
        "metadata": dumps(analysis.metadata),
        "bulk": dumps(analysis.bulk),
        "frames": dumps(analysis.frames.to_json()),
        "patient_tags": main_tags(analysis.metadata, "patients"),
        "study_tags": main_tags(analysis.metadata, "studies"),
        "series_tags": main_tags(analysis.metadata, "series"),
        "instance_tags": main_tags(analysis.metadata, "instances"),
        "study_columns": analysis.study_columns(),
        "series_columns": analysis.series_columns(),
    }
