"""Orthanc's ``/instances/{id}/tags`` and ``/content`` views, computed from stored DICOM JSON."""

from __future__ import annotations

import base64
from typing import Any

from dwdaemon.dicom.maintags import keyword

TEXT_BINARY_PREFIX = "data:application/octet-stream;base64,"


def _value_text(elem: dict[str, Any]) -> str:
    """The DICOM string form of a JSON element's values (multi-values joined by ``\\``)."""
    out = []
    for value in elem.get("Value", []):
        if isinstance(value, dict):
            groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
            while groups and not groups[-1]:
                groups.pop()
            out.append("=".join(groups))
        elif isinstance(value, float) and value.is_integer() and elem.get("vr") != "FD" \
                and elem.get("vr") != "FL":
            out.append(str(int(value)))
        else:
            out.append(str(value))
    return "\\".join(out)


def _orthanc_tag(tag: str) -> str:
    return f"{tag[:4].lower()},{tag[4:].lower()}"


def tags_full(dataset: dict[str, Any]) -> dict[str, Any]:
    """Orthanc's full ``/tags`` format: ``{"0010,0010": {Name, Type, Value}}``."""
    out: dict[str, Any] = {}
    for tag, elem in dataset.items():
        name = keyword(tag)
        vr = elem.get("vr")
        if vr == "SQ":
            entry = {"Name": name, "Type": "Sequence",
                     "Value": [tags_full(item) for item in elem.get("Value", [])]}
        elif "BulkDataURI" in elem:
            entry = {"Name": name, "Type": "TooLong", "Value": None}
        elif "InlineBinary" in elem:
            entry = {"Name": name, "Type": "Binary",
                     "Value": TEXT_BINARY_PREFIX + elem["InlineBinary"]}
        elif "Value" not in elem:
            entry = {"Name": name, "Type": "Null", "Value": None}
        else:
            entry = {"Name": name, "Type": "String", "Value": _value_text(elem)}
        out[_orthanc_tag(tag)] = entry
    return out


def tags_simplified(dataset: dict[str, Any], short: bool = False) -> dict[str, Any]:
    """Orthanc's ``?simplify`` (keyword keys) or ``?short`` (tag keys) format."""
    out: dict[str, Any] = {}
    for tag, elem in dataset.items():
        name = _orthanc_tag(tag) if short else keyword(tag)
        vr = elem.get("vr")
        if vr == "SQ":
            out[name] = [tags_simplified(item, short) for item in elem.get("Value", [])]
        elif "BulkDataURI" in elem or "Value" not in elem and "InlineBinary" not in elem:
            out[name] = None
        elif "InlineBinary" in elem:
            out[name] = TEXT_BINARY_PREFIX + elem["InlineBinary"]
        else:
            out[name] = _value_text(elem)
    return out


class ContentError(LookupError):
    """A ``/content`` path that names nothing."""


def _normal_tag(segment: str) -> str:
    cleaned = segment.replace("-", "").replace(",", "").upper()
    if len(cleaned) != 8 or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise ContentError(f"not a tag: {segment!r}")
    return cleaned


def content(dataset: dict[str, Any], segments: list[str]) -> tuple[str, Any]:
    """Resolve a ``/content/...`` path in a dataset.

    Returns ``("list", [...])`` for a dataset or a sequence, ``("text", str)``, ``("binary",
    bytes)``, or ``("bulk", path)`` where ``path`` names a bulk value to read from the file.
    """
    current: Any = dataset
    path: list[str] = []
    for position, segment in enumerate(segments):
        if isinstance(current, dict):
            tag = _normal_tag(segment)
            if tag not in current:
                raise ContentError(f"no element {segment}")
            elem = current[tag]
            path.append(tag)
            if elem.get("vr") == "SQ":
                current = elem.get("Value", [])
                continue
            if position != len(segments) - 1:
                raise ContentError(f"element {segment} is not a sequence")
            if "BulkDataURI" in elem:
                return "bulk", "/".join(path)
            if "InlineBinary" in elem:
                return "binary", base64.b64decode(elem["InlineBinary"])
            return "text", _value_text(elem)
        try:
            index = int(segment)
            current = current[index]
        except (ValueError, IndexError) as exc:
            raise ContentError(f"no item {segment}") from exc
        path.append(str(index))
    if isinstance(current, dict):
        return "list", [f"{t[:4].lower()}-{t[4:].lower()}" for t in current]
    return "list", [str(i) for i in range(len(current))]
