"""Fast DICOM JSON values straight from raw element bytes, for the common cases.

pydicom's element conversion costs tens of microseconds per element, which dominates ingest.
This converts the frequent VRs of datasets in a single-byte or UTF-8 character set directly;
anything else (ISO 2022 character sets, multi-group person names, ambiguous VRs, odd values)
returns ``None`` and takes pydicom's path. The output equals pydicom's ``to_json_dict``.
"""

from __future__ import annotations

import struct
from typing import Any

BINARY_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d",
                  "SV": "q", "UV": "Q"}
#: pydicom's codec names of the character sets handled here
PLAIN_ENCODINGS = {"iso8859": "latin-1", "latin_1": "latin-1", "UTF8": "utf-8",
                   "utf_8": "utf-8", "utf-8": "utf-8"}


def plain_codec(encodings: Any) -> str | None:
    """The Python codec when the dataset uses one simple character set, else None."""
    if not encodings:
        return "latin-1"
    if isinstance(encodings, str):
        encodings = [encodings]
    if len(encodings) != 1:
        return None
    return PLAIN_ENCODINGS.get(encodings[0])


def raw_to_json(vr: str, value: bytes, little_endian: bool, codec: str | None
                ) -> dict[str, Any] | None:
    """The JSON element for a raw value, or None when pydicom must convert it."""
    if not value:
        return {"vr": vr}
    endian = "<" if little_endian else ">"
    if vr in BINARY_NUMBERS:
        fmt = BINARY_NUMBERS[vr]
        size = struct.calcsize("<" + fmt)
        if len(value) % size:
            return None
        numbers = struct.unpack(f"{endian}{len(value) // size}{fmt}", value)
        if vr in ("FL", "FD"):
            numbers = tuple(float(n) for n in numbers)
        return {"vr": vr, "Value": list(numbers)}
    if vr == "AT":
        if len(value) % 4:
            return None
        pairs = struct.unpack(f"{endian}{len(value) // 2}H", value)
        return {"vr": vr, "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}"
                                    for i in range(0, len(pairs), 2)]}
    if codec is None:
        return None
    if vr in ("AS", "CS", "DA", "DT", "TM", "UI", "AE"):
        text = value.decode("ascii")
        parts = text.rstrip(" \0").split("\\")
        if vr == "AE":
            parts = [p.strip() for p in text.split("\\")]
        return _strings(vr, parts)
    if vr in ("SH", "LO", "UC"):
        parts = [p.rstrip("\0 ") for p in value.decode(codec).split("\\")]
        return _strings(vr, parts)
    if vr in ("IS", "DS"):
        parts = value.decode("ascii").strip().split("\\")
        try:
            numbers = [int(p) if vr == "IS" else float(p) for p in parts]
        except ValueError:
            return None
        return {"vr": vr, "Value": numbers}
    if vr in ("ST", "LT", "UT"):
        text = value.decode(codec).rstrip("\0 ")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    if vr == "UR":
        text = value.decode("ascii").rstrip()
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    if vr == "PN":
        text = value.rstrip(b"\x00 ").decode(codec)
        if "=" in text:
            return None
        parts = text.split("\\")
        if len(parts) == 1 and parts[0] == "":
            return {"vr": vr}
        return {"vr": vr, "Value": [{"Alphabetic": p} for p in parts]}
    return None


def _strings(vr: str, parts: list[str]) -> dict[str, Any]:
    if len(parts) == 1 and parts[0] == "":
        return {"vr": vr}
    return {"vr": vr, "Value": parts}
