"""Pure STOW-RS helpers (PS3.18 10.5): part classification, the response dataset, the HTTP
status, and assembly of a DICOM file from the metadata + bulk data form.

No Twisted here: the store (``dwdaemon.store.ingest_stream``) drives these from a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
)

from dwdaemon.dicom.multipart_reader import parse_content_type

__all__ = [
    "BulkPart",
    "FailedInstance",
    "StoredInstance",
    "StowError",
    "assemble_instance",
    "build_response",
    "classify_part",
    "metadata_datasets",
    "response_status",
]

# -- Failure / warning reasons (PS3.18 Table 10.5.3-2 and PS3.4 Annex GG / C-STORE) ---------

PROCESSING_FAILURE = 0x0110
"""Generic processing failure (e.g. the part could not be stored)."""
SOP_CLASS_NOT_SUPPORTED = 0x0122
"""Referenced SOP Class not supported."""
OUT_OF_RESOURCES = 0xA700
"""Refused: out of resources (disk full, body limit...)."""
DATASET_MISMATCH = 0xA900
"""Error: data set does not match SOP class."""
DUPLICATE_SOP_INSTANCE = 0x0111
"""Duplicate SOP Instance: the SOP Instance UID is already used by another instance."""
CANNOT_UNDERSTAND = 0xC000
"""Error: cannot understand (not DICOM, missing UIDs, bad metadata)."""
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
"""Referenced Transfer Syntax not supported."""

WARNING_COERCION = 0xB000
"""Coercion of data elements."""
WARNING_ELEMENTS_DISCARDED = 0xB006
"""Elements discarded."""
WARNING_SOP_CLASS_MISMATCH = 0xB007
"""Data set does not match SOP class."""

# -- Part classification -------------------------------------------------------------------

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"

#: Default transfer syntax of each compressed bulk media type (PS3.18 Table 8.7.3-2...).
MEDIA_TYPE_TRANSFER_SYNTAX: dict[str, str] = {
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/x-jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/x-dicom-rle": "1.2.840.10008.1.2.5",
    "image/jxl": "1.2.840.10008.1.2.4.112",
    "video/mpeg": "1.2.840.10008.1.2.4.100",
    "video/mpeg2": "1.2.840.10008.1.2.4.100",
    "video/mp4": "1.2.840.10008.1.2.4.102",
    "video/h265": "1.2.840.10008.1.2.4.107",
}


class StowError(ValueError):
    """An instance (or part) cannot be stored; carries a failure reason code."""

    def __init__(self, message: str, reason: int = CANNOT_UNDERSTAND,
                 sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


def classify_part(headers: Mapping[str, str],
                  default_type: str = DICOM) -> tuple[str, dict[str, str]]:
    """Media type and parameters of a part; a part without Content-Type gets the
    multipart body's ``type`` parameter (``default_type``)."""
    media, params = parse_content_type(headers.get("content-type"))
    if not media:
        media, params = parse_content_type(default_type)
    return media, params


# -- Outcomes and the response dataset ------------------------------------------------------

@dataclass(frozen=True)
class StoredInstance:
    """An instance stored (or already present) by this request."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    retrieve_url: str
    warning_reason: int | None = None


@dataclass(frozen=True)
class FailedInstance:
    """A part/instance that could not be stored."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int
    message: str = ""


@dataclass
class StowOutcome:
    """What happened to each part of a request."""

    stored: list[StoredInstance] = field(default_factory=list)
    failed: list[FailedInstance] = field(default_factory=list)


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _us(value: int) -> dict[str, Any]:
    return {"vr": "US", "Value": [value]}


def build_response(stored: Sequence[StoredInstance], failed: Sequence[FailedInstance],
                   study_retrieve_url: str | None) -> dict[str, Any]:
    """The STOW-RS response dataset as DICOM JSON (PS3.18 Table 10.5.3-1, shaped as Orthanc's
    DICOMweb plugin >= 1.19 answers).

    ``SpecificCharacterSet`` (UTF-8) and ``ReferencedSOPSequence`` (empty when nothing was
    stored) are always there; the study ``RetrieveURL`` only when something was stored;
    ``FailedSOPSequence`` only when it has items. A failure becomes an item only when both its
    SOP Class and SOP Instance UIDs are known (both are Type 1 in the item): a part that is not
    DICOM, or lacks either UID, is reported by the status code alone.
    """
    out: dict[str, Any] = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
    if study_retrieve_url and stored:
        out["00081190"] = {"vr": "UR", "Value": [study_retrieve_url]}
    items = [f for f in failed if f.sop_class_uid and f.sop_instance_uid]
    if items:
        out["00081198"] = {"vr": "SQ", "Value": [
            {"00081150": _ui(f.sop_class_uid), "00081155": _ui(f.sop_instance_uid),
             "00081197": _us(f.reason)}
            for f in items
        ]}
    references = []
    for s in stored:
        item: dict[str, Any] = {
            "00081150": _ui(s.sop_class_uid),
            "00081155": _ui(s.sop_instance_uid),
            "00081190": {"vr": "UR", "Value": [s.retrieve_url]},
        }
        if s.warning_reason is not None:
            item["00081196"] = _us(s.warning_reason)
        references.append(item)
    out["00081199"] = {"vr": "SQ", "Value": references} if references else {"vr": "SQ"}
    return out


def response_status(stored: Sequence[StoredInstance], failed: Sequence[FailedInstance]) -> int:
    """HTTP status per PS3.18 10.5.3: 200 all stored, 202 partial or warnings; nothing stored:
    400 when every failure is bad syntax (``CANNOT_UNDERSTAND``), else 409 (a conflict, such
    as an instance of another study or an SOP Instance UID already used, or mixed reasons)."""
    if not stored:
        if failed and all(f.reason == CANNOT_UNDERSTAND for f in failed):
            return 400
        return 409
    if failed or any(s.warning_reason is not None for s in stored):
        return 202
    return 200


def study_url_for(stored: Sequence[StoredInstance], expected_study: str | None,
                  url_of_study: Callable[[str], str]) -> str | None:
    """The study RetrieveURL for the response: the target study, or the only study stored."""
    if expected_study:
        return url_of_study(expected_study)
    studies = {s.study_instance_uid for s in stored}
    if len(studies) == 1:
        return url_of_study(studies.pop())
    return None


# -- Metadata + bulk data form ----------------------------------------------------------------

@dataclass(frozen=True)
class BulkPart:
    """A bulk data part spooled to a file."""

    path: str
    media_type: str
    params: Mapping[str, str]
    location: str = ""

    @property
    def transfer_syntax(self) -> str | None:
        """Transfer syntax implied by the part's media type and parameters (None = native)."""
        ts = self.params.get("transfer-syntax")
        if ts:
            return ts.strip()
        return MEDIA_TYPE_TRANSFER_SYNTAX.get(self.media_type)

    def read(self) -> bytes:
        """The part's bytes."""
        with open(self.path, "rb") as f:
            return f.read()


def metadata_datasets(media_type: str, data: bytes) -> list[dict[str, Any]]:
    """The DICOM JSON datasets held by a metadata part (JSON array/object, or one XML doc)."""
    if media_type == DICOM_JSON:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise StowError(f"metadata part is not valid JSON: {e}") from e
        except RecursionError as e:
            raise StowError("metadata part is not usable JSON: nested too deeply") from e
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
            raise StowError("metadata part must hold a DICOM JSON dataset or an array of them")
        return doc
    if media_type == DICOM_XML:
        from dwdaemon.dicom.xmlmodel import xml_to_dataset_json

        try:
            return [xml_to_dataset_json(data)]
        except (ValueError, RecursionError) as e:
            raise StowError(f"metadata part is not valid DICOM XML: {e}") from e
    raise StowError(f"not a metadata media type: {media_type}")


class BulkIndex:
    """Finds the bulk parts a BulkDataURI names (by Content-Location, or ``cid:`` Content-ID)."""

    def __init__(self) -> None:
        self._by_location: dict[str, list[BulkPart]] = {}
        self._by_id: dict[str, list[BulkPart]] = {}

    def add(self, headers: Mapping[str, str], part: BulkPart) -> None:
        """Register a part with its headers."""
        loc = headers.get("content-location", "").strip()
        if loc:
            self._by_location.setdefault(loc, []).append(part)
        cid = headers.get("content-id", "").strip().strip("<>")
        if cid:
            self._by_id.setdefault(cid, []).append(part)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_location.values()) + sum(
            len(v) for v in self._by_id.values())

    def paths(self) -> set[str]:
        """Every spooled file path (for clean-up)."""
        out = set()
        for group in (self._by_location, self._by_id):
            for parts in group.values():
                out.update(p.path for p in parts)
        return out

    def find(self, uri: str) -> list[BulkPart]:
        """Parts for ``uri``; exact match first, then tolerant suffix match."""
        uri = uri.strip()
        if uri.lower().startswith("cid:"):
            return self._by_id.get(uri[4:].strip("<>"), [])
        found = self._by_location.get(uri)
        if found:
            return found
        for loc, parts in self._by_location.items():
            if loc.endswith("/" + uri.lstrip("/")) or uri.endswith("/" + loc.lstrip("/")):
                return parts
        return []


_PIXEL_DATA = "7FE00010"
_META_KEYS = ("00020010",)
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                 "1.2.840.10008.1.2.1.99"}


def first_text(ds: Mapping[str, Any], tag: str) -> str:
    """The first value of ``tag`` as text ("" when absent or not a DICOM JSON attribute)."""
    attr = ds.get(tag) if isinstance(ds, Mapping) else None
    value = attr.get("Value") if isinstance(attr, Mapping) else None
    if not isinstance(value, list) or not value:
        return ""
    v = value[0]
    return str(v).strip() if isinstance(v, (str, int, float)) else ""


#: The former private name, for branches written before it became public.
_text = first_text


def assemble_instance(dataset_json: dict[str, Any], bulk: BulkIndex, out: IO[bytes]) -> Dataset:
    """Write a DICOM Part 10 file to ``out`` from a metadata dataset and its bulk parts.

    BulkDataURIs are resolved against ``bulk``; pixel data in a compressed media type (or
    with a compressed ``transfer-syntax``) is encapsulated, one fragment per frame part.
    Raises :class:`StowError` (with the instance's UIDs) when the metadata is unusable.
    """
    sop_class = first_text(dataset_json, "00080016")
    sop_inst = first_text(dataset_json, "00080018")

    def fail(msg: str, reason: int = CANNOT_UNDERSTAND) -> StowError:
        return StowError(msg, reason, sop_class, sop_inst)

    if not sop_class or not sop_inst:
        raise fail("metadata dataset lacks SOPClassUID or SOPInstanceUID")
    data = dict(dataset_json)
    meta_ts = first_text(data, "00020010") or None
    for key in list(data):
        if key.upper().startswith("0002"):
            del data[key]

    pixel = data.pop(_PIXEL_DATA, None) or data.pop(_PIXEL_DATA.lower(), None)
    pixel_parts: list[BulkPart] = []
    pixel_inline: dict[str, Any] | None = None
    if pixel is not None and not isinstance(pixel, Mapping):
        raise fail("PixelData (7FE00010) is not a DICOM JSON attribute object")
    if pixel is not None:
        uri = pixel.get("BulkDataURI")
        if uri:
            pixel_parts = bulk.find(uri)
            if not pixel_parts:
                raise fail(f"no bulk data part for the pixel data URI {uri!r}")
        else:
            pixel_inline = pixel

    missing: list[str] = []

    def handler(tag: str, vr: str, uri: str) -> bytes:
        parts = bulk.find(uri)
        if not parts:
            missing.append(uri)
            return b""
        return b"".join(p.read() for p in parts)

    try:
        ds = Dataset.from_json(data, bulk_data_uri_handler=handler)
    except Exception as e:  # pydicom raises many kinds on bad JSON
        raise fail(f"invalid DICOM JSON metadata: {e}") from e
    if missing:
        raise fail(f"no bulk data part for {missing[0]!r}")

    ts = meta_ts
    if pixel_parts:
        part_ts = {p.transfer_syntax for p in pixel_parts}
        if len(part_ts) > 1:
            raise fail("pixel data parts have different transfer syntaxes",
                       TRANSFER_SYNTAX_NOT_SUPPORTED)
        pts = part_ts.pop()
        if pts:
            ts = pts
        elif ts is None or ts not in _UNCOMPRESSED:
            ts = ExplicitVRLittleEndian
        if ts in _UNCOMPRESSED:
            vr = pixel.get("vr", "OW") if pixel else "OW"
            ds.add_new(0x7FE00010, vr if vr in ("OB", "OW") else "OW",
                       b"".join(p.read() for p in pixel_parts))
        else:
            frames = [p.read() for p in pixel_parts]
            ds.add_new(0x7FE00010, "OB", encapsulate(frames))
            ds["PixelData"].is_undefined_length = True
    elif pixel_inline is not None:
        try:
            px = Dataset.from_json({_PIXEL_DATA: pixel_inline})
        except Exception as e:
            raise fail(f"invalid pixel data: {e}") from e
        ds[0x7FE00010] = px[0x7FE00010]
    if ts is None:
        ts = ExplicitVRLittleEndian
    try:
        uid = UID(ts)
        if not uid.is_valid:
            raise ValueError(ts)
    except Exception as e:
        raise fail(f"invalid transfer syntax {ts!r}", TRANSFER_SYNTAX_NOT_SUPPORTED) from e

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_inst
    meta.TransferSyntaxUID = uid
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DWDAEMON"
    ds.file_meta = meta
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as e:
        raise fail(f"cannot encode the instance: {e}") from e
    return ds


def remove_quietly(paths: Iterable[str]) -> None:
    """Delete temp files, ignoring those already gone."""
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)
