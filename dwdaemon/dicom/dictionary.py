"""Orthanc's ``Dictionary`` configuration: additional and private tags made known to pydicom
(VRs of implicit-VR files, names) and to QIDO-RS (keys, ``includefield``, VR for matching).

Registration is process-wide, as pydicom's dictionaries are. No Twisted here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.datadict import add_dict_entries, add_private_dict_entries

from dwdaemon.config import DictionaryEntry

__all__ = ["private_vr", "register", "tag_for_name"]

#: Tags (8 upper-case hex digits) of private Dictionary entries -> their VR.
_PRIVATE_VRS: dict[str, str] = {}
#: Names of Dictionary entries (as configured, and as a keyword without spaces) -> tag.
_NAMES: dict[str, str] = {}


def _vm(entry: DictionaryEntry) -> str:
    if entry.max_vm == 0:
        return f"{entry.min_vm}-n"
    if entry.max_vm == entry.min_vm:
        return str(entry.min_vm)
    return f"{entry.min_vm}-{entry.max_vm}"


def keyword_of(name: str) -> str:
    """A keyword-like spelling of a name (``Abnormality score`` -> ``AbnormalityScore``)."""
    words = re.split(r"[^0-9A-Za-z]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def register(entries: Iterable[DictionaryEntry], default_private_creator: str = "") -> None:
    """Make the configured tags known (pydicom dictionaries and this module's tables).

    Private tags (odd group, element >= 0x1000) are registered under their creator, or
    ``default_private_creator`` when they name none; private creator elements (gggg,00xx) are
    LO by definition and need no entry.
    """
    public: dict[int, tuple[str, str, str, str, str]] = {}
    private: dict[str, dict[int, tuple[str, str, str, str]]] = {}
    for entry in entries:
        tag = f"{entry.tag:08X}"
        group, element = entry.tag >> 16, entry.tag & 0xFFFF
        keyword = keyword_of(entry.name)
        _NAMES[entry.name] = tag
        if keyword:
            _NAMES[keyword] = tag
        if group % 2 == 1:
            _PRIVATE_VRS[tag] = entry.vr
            creator = entry.private_creator or default_private_creator
            if element >= 0x1000 and creator:
                private.setdefault(creator, {})[entry.tag] = (entry.vr, _vm(entry), entry.name,
                                                              "")
            continue
        public[entry.tag] = (entry.vr, _vm(entry), entry.name, "", keyword or f"Tag{tag}")
    if public:
        add_dict_entries(public)
    for creator, items in private.items():
        add_private_dict_entries(creator, items)


def private_vr(tag: str) -> str | None:
    """The configured VR of a private tag (8 hex digits), None if not configured."""
    return _PRIVATE_VRS.get(tag.upper())


def tag_for_name(name: str) -> str | None:
    """The tag of a configured name or keyword, None if not configured."""
    return _NAMES.get(name)
