"""PS3.19 Native DICOM Model XML <-> PS3.18 F DICOM JSON.

Pure functions, no Twisted:

- :func:`dataset_json_to_xml` turns one DICOM JSON dataset (a ``dict`` keyed by
  8-hex-digit tags) into a UTF-8 ``NativeDicomModel`` document;
- :func:`xml_to_dataset_json` parses such a document back into DICOM JSON.

The mapping is lossless for everything DICOM JSON can express: every value
representation, multi-valued attributes with empty values (``null`` in JSON,
a missing ``number`` in XML), person names with their alphabetic,
ideographic and phonetic groups (components kept even when empty, so
``"A^^C"`` survives), sequences with empty items, ``InlineBinary`` and
``BulkDataURI``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import keyword_for_tag

__all__ = [
    "NATIVE_DICOM_NS",
    "XmlModelError",
    "dataset_json_to_xml",
    "xml_to_dataset_json",
]

#: Namespace of the Native DICOM Model (PS3.19 A.1.6).
NATIVE_DICOM_NS = "http://dicom.nema.org/PS3.19/models/NativeDICOM"

_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_INT_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
# Characters XML 1.0 cannot carry, even as character references.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class XmlModelError(ValueError):
    """The XML document is not a valid Native DICOM Model dataset."""


# --------------------------------------------------------------------------
# JSON -> XML
# --------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Escape *text* for XML character data and attribute values."""
    if _XML_INVALID.search(text):
        text = _XML_INVALID.sub("", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")  # XML parsers fold CR/CRLF into LF otherwise
    )


def _escape_attr(text: str) -> str:
    """Escape *text* for an attribute value (whitespace kept verbatim)."""
    return _escape(text).replace("\n", "&#10;").replace("\t", "&#9;")


def _number_text(value: Any) -> str:
    """Render a JSON number (or numeric string) as DICOM text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # shortest exact form; keeps "1.0" a float
    return str(value)


def _private_creator(dataset: Mapping[str, Any], tag: str) -> str | None:
    """Return the private creator of a private data element, if any."""
    group = int(tag[:4], 16)
    element = int(tag[4:], 16)
    if not group % 2 or element < 0x1000:
        return None
    creator = dataset.get(f"{tag[:4]}00{tag[4:6]}".upper())
    if not isinstance(creator, Mapping):
        return None
    values = creator.get("Value")
    if values and isinstance(values[0], str):
        return values[0]
    return None


def _keyword(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16))
    except Exception:  # pragma: no cover - defensive, pydicom accepts any int
        return ""


def _write_person_name(out: list[str], number: int, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):  # tolerate a bare string (alphabetic group)
        value = {"Alphabetic": value}
    out.append(f'<PersonName number="{number}">')
    for group in _PN_GROUPS:
        text = value.get(group)
        if not text:  # absent or empty group (JSON keeps "" for Orthanc's shape)
            continue
        out.append(f"<{group}>")
        for name, part in zip(_PN_COMPONENTS, text.split("^")[:5], strict=False):
            if part:
                out.append(f"<{name}>{_escape(part)}</{name}>")
            else:
                out.append(f"<{name}/>")
        out.append(f"</{group}>")
    out.append("</PersonName>")


def _write_dataset(out: list[str], dataset: Mapping[str, Any]) -> None:
    for tag in sorted(dataset, key=str.upper):
        element = dataset[tag]
        if not _TAG_RE.match(tag):
            raise XmlModelError(f"invalid tag {tag!r}")
        tag = tag.upper()
        vr = element.get("vr", "UN")
        attrs = [f'tag="{tag}"', f'vr="{_escape_attr(vr)}"']
        keyword = _keyword(tag)
        if keyword:
            attrs.append(f'keyword="{keyword}"')
        creator = _private_creator(dataset, tag)
        if creator is not None:
            attrs.append(f'privateCreator="{_escape_attr(creator)}"')
        head = "<DicomAttribute " + " ".join(attrs)
        if "Value" in element:
            values = element["Value"] or []
            out.append(head + ">")
            if vr == "SQ":
                for number, item in enumerate(values, 1):
                    if item is None:
                        continue
                    out.append(f'<Item number="{number}">')
                    _write_dataset(out, item)
                    out.append("</Item>")
            elif vr == "PN":
                for number, value in enumerate(values, 1):
                    _write_person_name(out, number, value)
            else:
                for number, value in enumerate(values, 1):
                    if value is None:
                        continue
                    text = _escape(value) if isinstance(value, str) else _number_text(value)
                    out.append(f'<Value number="{number}">{text}</Value>')
            out.append("</DicomAttribute>")
        elif "BulkDataURI" in element:
            uri = _escape_attr(str(element["BulkDataURI"]))
            out.append(f'{head}><BulkData uri="{uri}"/></DicomAttribute>')
        elif "InlineBinary" in element:
            data = _escape(str(element["InlineBinary"]))
            out.append(f"{head}><InlineBinary>{data}</InlineBinary></DicomAttribute>")
        else:
            out.append(head + "/>")


def dataset_json_to_xml(dataset: Mapping[str, Any]) -> bytes:
    """Render one DICOM JSON dataset as a PS3.19 ``NativeDicomModel`` document.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        DICOM JSON object (PS3.18 F), keyed by 8-hex-digit tags.

    Returns
    -------
    bytes
        The UTF-8 encoded XML document, with its XML declaration.
    """
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<NativeDicomModel xmlns="{NATIVE_DICOM_NS}" xml:space="preserve">',
    ]
    _write_dataset(out, dataset)
    out.append("</NativeDicomModel>\n")
    return "".join(out).encode("utf-8")


def datasets_json_to_xml(datasets: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Render several datasets, one XML document each (multipart bodies)."""
    return [dataset_json_to_xml(d) for d in datasets]


# --------------------------------------------------------------------------
# XML -> JSON
# --------------------------------------------------------------------------


def _local(name: str) -> str:
    """Strip an ElementTree ``{namespace}`` prefix."""
    return name.rsplit("}", 1)[-1]


def _number(node: ET.Element, what: str) -> int:
    raw = node.get("number")
    if raw is None:
        raise XmlModelError(f"<{what}> without a number attribute")
    try:
        number = int(raw)
    except ValueError:
        raise XmlModelError(f"<{what}> has a non-numeric number {raw!r}") from None
    if number < 1:
        raise XmlModelError(f"<{what}> number must be >= 1, got {raw!r}")
    return number


def _place(values: list[Any], number: int, value: Any) -> None:
    """Put *value* at 1-based *number*, padding gaps with ``None``."""
    while len(values) < number:
        values.append(None)
    values[number - 1] = value


def _parse_scalar(vr: str, text: str, tag: str) -> Any:
    if vr in _INT_VRS:
        try:
            return int(text.strip())
        except ValueError:
            raise XmlModelError(f"attribute {tag}: {text!r} is not an integer ({vr})") from None
    if vr in _FLOAT_VRS or vr == "DS":
        stripped = text.strip()
        if vr == "DS" and re.fullmatch(r"[+-]?\d+", stripped):
            return int(stripped)
        try:
            return float(stripped)
        except ValueError:
            raise XmlModelError(f"attribute {tag}: {text!r} is not a number ({vr})") from None
    return text


def _parse_person_name(node: ET.Element) -> dict[str, str]:
    value: dict[str, str] = {}
    for group in node:
        name = _local(group.tag)
        if name not in _PN_GROUPS:
            raise XmlModelError(f"unexpected <{name}> in <PersonName>")
        parts: dict[str, str] = {}
        for component in group:
            cname = _local(component.tag)
            if cname not in _PN_COMPONENTS:
                raise XmlModelError(f"unexpected <{cname}> in <{name}>")
            parts[cname] = component.text or ""
        last = max((_PN_COMPONENTS.index(c) for c in parts), default=-1)
        value[name] = "^".join(parts.get(c, "") for c in _PN_COMPONENTS[: last + 1])
    return value


def _parse_attribute(node: ET.Element) -> tuple[str, dict[str, Any]]:
    tag = node.get("tag")
    if tag is None or not _TAG_RE.match(tag):
        raise XmlModelError(f"<DicomAttribute> with invalid tag {tag!r}")
    tag = tag.upper()
    vr = node.get("vr") or "UN"
    element: dict[str, Any] = {"vr": vr}
    values: list[Any] = []
    has_values = False
    for child in node:
        name = _local(child.tag)
        if name == "Value":
            has_values = True
            _place(values, _number(child, name), _parse_scalar(vr, child.text or "", tag))
        elif name == "PersonName":
            has_values = True
            _place(values, _number(child, name), _parse_person_name(child))
        elif name == "Item":
            has_values = True
            _place(values, _number(child, name), _parse_dataset(child))
        elif name == "BulkData":
            uri = child.get("uri") or child.get("URI") or child.get("uuid")
            if uri is None:
                raise XmlModelError(f"attribute {tag}: <BulkData> without uri")
            element["BulkDataURI"] = uri
        elif name == "InlineBinary":
            element["InlineBinary"] = "".join((child.text or "").split())
        else:
            raise XmlModelError(f"attribute {tag}: unexpected <{name}>")
    if has_values:
        if vr == "SQ":
            values = [{} if v is None else v for v in values]
        element["Value"] = values
    return tag, element


def _parse_dataset(node: ET.Element) -> dict[str, Any]:
    dataset: dict[str, Any] = {}
    for child in node:
        name = _local(child.tag)
        if name != "DicomAttribute":
            raise XmlModelError(f"unexpected <{name}> in dataset")
        tag, element = _parse_attribute(child)
        dataset[tag] = element
    return dict(sorted(dataset.items()))


def xml_to_dataset_json(document: bytes | str) -> dict[str, Any]:
    """Parse a PS3.19 ``NativeDicomModel`` document into DICOM JSON.

    Parameters
    ----------
    document : bytes or str
        The XML document (with or without the PS3.19 namespace).

    Returns
    -------
    dict
        DICOM JSON object keyed by upper-case 8-hex-digit tags, sorted.

    Raises
    ------
    XmlModelError
        If the document is not well-formed or not a Native DICOM Model.
    """
    if isinstance(document, str):
        document = document.encode("utf-8")
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise XmlModelError("DTDs and entity declarations are not accepted")
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise XmlModelError(f"malformed XML: {exc}") from None
    if _local(root.tag) != "NativeDicomModel":
        raise XmlModelError(f"root element is <{_local(root.tag)}>, not <NativeDicomModel>")
    return _parse_dataset(root)
