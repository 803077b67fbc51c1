"""Orthanc's ``DefaultEncoding`` names, their DICOM Specific Character Set terms and codecs.

The default encoding decodes the text of files that have no Specific Character Set (0008,0005)
(PS3.5 6.1.2.2 makes that ISO-IR 6, of which every choice here but the ISO 2022 ones is a
superset). No Twisted here.
"""

from __future__ import annotations

from pydicom.charset import convert_encodings

__all__ = ["ENCODINGS", "canonical_name", "python_codecs"]

#: Orthanc's names -> the Specific Character Set term they stand for ("" = ISO-IR 6).
ENCODINGS: dict[str, str] = {
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Windows1251": "",
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "JapaneseKanji": "ISO 2022 IR 87",
    "Korean": "ISO 2022 IR 149",
    "SimplifiedChinese": "GBK",
}
_BY_LOWER = {name.lower(): name for name in ENCODINGS}


def canonical_name(name: str) -> str | None:
    """Orthanc's spelling of an encoding name (case-insensitive), or None if unknown."""
    return _BY_LOWER.get(name.strip().lower())


def python_codecs(name: str) -> list[str]:
    """The Python codecs pydicom uses for the encoding *name* (a canonical name)."""
    if name == "Windows1251":
        return ["cp1251"]
    if name == "Ascii":
        return ["iso8859"]  # ISO-IR 6 read leniently, as pydicom does by default
    return convert_encodings([ENCODINGS[name]])
