"""DICOM JSON model (PS3.18 F) built once at ingest, with bulk values left out.

Bulk values (large binary elements, and Pixel Data always) are replaced by a ``BulkDataURI``
placeholder ``dwd-bulk:<path>``; ``<path>`` names the element (``7FE00010``, or
``00540016/0/00181072`` inside sequences, items 0-based).  The served JSON replaces the placeholder
by the instance's URL, ``/bulk/`` and the path in Orthanc's URL form (lower case, items 1-based:
``00540016/1/00181072``; see :func:`resolve_bulk_uris`).  Where each bulk value
lies in the file is recorded so that it can be served by slicing the file.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from dwdaemon.dicom.fastjson import plain_codec, raw_to_json

BULK_PLACEHOLDER = "dwd-bulk:"
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
#: Binary values longer than this many bytes become BulkDataURIs; shorter ones are inlined.
#: 0: every non-empty binary value is a BulkDataURI, as Orthanc writes metadata
#: (its test_issue_195 reads a 2-byte UN value through its BulkDataURI).
BULK_THRESHOLD = 0
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class BulkLocation:
    """Where a bulk value lies in the stored file."""

    offset: int
    length: int
    vr: str
    little_endian: bool = True
    encapsulated: bool = False

    def to_json(self) -> list[Any]:
        return [self.offset, self.length, self.vr, self.little_endian, self.encapsulated]

    @classmethod
    def from_json(cls, value: list[Any]) -> BulkLocation:
        return cls(*value)


@dataclass
class JsonResult:
    """The JSON model of a dataset and the file locations of its bulk values."""

    dataset: dict[str, Any]
    bulk: dict[str, BulkLocation] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _tag_key(tag: int) -> str:
    return f"{tag:08X}"


def _is_bulk(tag: int, vr: str, length: int | None) -> bool:
    if tag in PIXEL_DATA_TAGS:
        return True
    return vr in BINARY_VRS and length is not None and length > BULK_THRESHOLD


def dataset_to_json(ds: Dataset, *, prefix: str = "", result: JsonResult | None = None,
                    utf8_charset: bool = True, base: int = 0) -> JsonResult:
    """Convert ``ds`` (read with ``defer_size``) to the DICOM JSON model.

    Values are never loaded when deferred: bulk elements keep their file offsets. Text is decoded
    with the dataset's Specific Character Set; the output declares ``ISO_IR 192`` (UTF-8).
    """
    result = result if result is not None else JsonResult({})
    out = result.dataset if not prefix else {}
    try:
        codec = plain_codec(ds._character_set)  # noqa: SLF001
    except Exception:  # unknown character set: pydicom decides per element
        codec = None
    for tag in sorted(ds._dict.keys()):  # noqa: SLF001 - raw access keeps deferred values unread
        tag = int(tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0:  # file meta and group lengths
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        key = _tag_key(tag)
        path = f"{prefix}{key}"
        if isinstance(raw, RawDataElement):
            vr = raw.VR or _dictionary_vr(tag)
            length = raw.length
            if not raw.VR and vr == "UN" and raw.value is not None:
                vr = ds[tag].VR  # implicit VR: private dictionaries (pydicom's, Dictionary)
            is_bulk = tag in PIXEL_DATA_TAGS or _is_bulk(
                tag, vr, length if length != UNDEFINED_LENGTH else None)
            if is_bulk and (raw.value is None or tag in PIXEL_DATA_TAGS
                            or length != UNDEFINED_LENGTH):
                if length == UNDEFINED_LENGTH:
                    actual = len(raw.value) if raw.value is not None else 0
                    encapsulated = True
                else:
                    actual, encapsulated = length, False
                if vr in ("OB or OW", "US or OW"):
                    vr = "OW" if not encapsulated else "OB"
                result.bulk[path] = BulkLocation(raw.value_tell + base, actual, vr,
                                                 raw.is_little_endian, encapsulated)
                out[key] = {"vr": vr, "BulkDataURI": BULK_PLACEHOLDER + path}
                continue
            if raw.value is not None and vr != "SQ" and vr in FAST_VRS:
                fast = _fast(vr, raw, codec)
                if fast is not None:
                    out[key] = fast
                    continue
        # Items of a defined-length sequence are parsed from its value bytes: their offsets
        # are relative to the sequence value, which starts at ``raw.value_tell``.
        nested_base = base
        if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
            nested_base = base + raw.value_tell
        elem = ds[tag]
        out_elem = _element_to_json(elem, path, result, nested_base)
        if out_elem is not None:
            out[key] = out_elem
    if not prefix and "00080005" in out:
        if utf8_charset:
            out["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
        else:  # the file's terms; an empty first one (ISO-IR 6 before ISO 2022) left out
            terms = [t for t in out["00080005"].get("Value", []) if t]
            out["00080005"] = {"vr": "CS", "Value": terms} if terms else {"vr": "CS"}
    return result if not prefix else JsonResult(out, result.bulk, result.warnings)


FAST_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO", "UC", "IS", "DS",
                      "ST", "LT", "UT", "UR", "PN", "AT", "US", "SS", "UL", "SL", "FL", "FD",
                      "SV", "UV", "OB", "OD", "OF", "OL", "OV", "OW"})


def _fast(vr: str, raw: RawDataElement, codec: str | None) -> dict[str, Any] | None:
    """pydicom-equal JSON straight from the raw bytes, or None (see :mod:`fastjson`)."""
    value = raw.value
    if vr in BINARY_VRS:
        if not value:
            return {"vr": vr}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    try:
        return raw_to_json(vr, value, raw.is_little_endian, codec)
    except (UnicodeDecodeError, ValueError, struct.error):
        return None


def _element_to_json(elem: DataElement, path: str, result: JsonResult,
                     base: int = 0) -> dict[str, Any] | None:
    vr = elem.VR
    if vr == "SQ":
        items = []
        for index, item in enumerate(elem.value or []):
            sub = dataset_to_json(item, prefix=f"{path}/{index}/", result=result, base=base)
            items.append(sub.dataset)
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if vr in BINARY_VRS and not elem.is_empty:
        value = elem.value
        if isinstance(value, bytes | bytearray) and len(value) > BULK_THRESHOLD:
            # A loaded (not deferred) bulk value, e.g. in a sequence: keep its location if known.
            tell = getattr(elem, "file_tell", None)
            if tell is not None:
                result.bulk[path] = BulkLocation(tell, len(value), vr)
                return {"vr": vr, "BulkDataURI": BULK_PLACEHOLDER + path}
    try:
        data = elem.to_json_dict(None, 0)
    except Exception as exc:  # malformed value (e.g. a DS that is not a number)
        result.warnings.append(f"{path}: value not representable in JSON ({exc}); left empty")
        return {"vr": vr}
    if vr in ("OB or OW", "US or OW", "US or SS", "US or SS or OW"):
        data["vr"] = "OW" if "InlineBinary" in data else "US"
    if vr == "PN":
        _complete_groups(data)
    return data


_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _complete_groups(data: dict[str, Any]) -> None:
    """Names with several component groups get all three keys, empty ones as ``""`` (as
    Orthanc writes them: ``Wang^XiaoDong=王^小东`` has ``"Phonetic": ""``)."""
    values = data.get("Value")
    if not values:
        return
    for index, name in enumerate(values):
        if isinstance(name, dict) and len(name) > 1 or (
                isinstance(name, dict) and name and "Alphabetic" not in name):
            values[index] = {group: name.get(group, "") for group in _PN_GROUPS}


_PLACEHOLDER_RE = re.compile('"' + BULK_PLACEHOLDER + '([0-9A-Fa-f/]+)"')
_TAG_RE = re.compile(r"[0-9A-F]{8}")


def public_bulk_path(stored: str) -> str:
    """The URL form of a stored bulk path, as Orthanc writes it: lower-case tags and 1-based
    item numbers (``00400555/0/00420011`` -> ``00400555/1/00420011``, ``7FE00010`` ->
    ``7fe00010``)."""
    segments = stored.split("/")
    for i in range(1, len(segments), 2):
        segments[i] = str(int(segments[i]) + 1)
    return "/".join(segments).lower()


def stored_bulk_path(public: str) -> str | None:
    """The stored bulk path of a URL's ``TAG[/item/TAG...]`` (tags in any case, with or without
    a comma, items 1-based); None when malformed."""
    segments = public.strip("/").split("/")
    if not segments or len(segments) % 2 == 0:
        return None
    out = []
    for i, segment in enumerate(segments):
        if i % 2 == 0:
            tag = segment.replace(",", "").upper()
            if not _TAG_RE.fullmatch(tag):
                return None
            out.append(tag)
        else:
            if not segment.isdigit() or int(segment) < 1:
                return None
            out.append(str(int(segment) - 1))
    return "/".join(out)


def resolve_bulk_uris(json_text: str, instance_url: str) -> str:
    """Replace bulk placeholders in stored JSON text by absolute URIs under ``instance_url``."""
    if BULK_PLACEHOLDER not in json_text:
        return json_text
    base = '"' + instance_url.rstrip("/") + "/bulk/"
    return _PLACEHOLDER_RE.sub(lambda m: base + public_bulk_path(m.group(1)) + '"', json_text)


def dumps(dataset: dict[str, Any]) -> str:
    """Compact, UTF-8-safe JSON text of a dataset (orjson: NaN and infinite FD/FL values
    become ``null``, as JSON has no such numbers; integers beyond 64 bits fall back to the
    standard library)."""
    try:
        return orjson.dumps(dataset).decode("utf-8")
    except TypeError:
        return json.dumps(dataset, ensure_ascii=False, separators=(",", ":"))
