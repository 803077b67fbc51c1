"""Bulk values found by parsing the file, for the rare files whose offsets are not usable
(deflated transfer syntax)."""

from __future__ import annotations

from pydicom import dcmread


def read_bulk_by_parsing(path: str, element_path: str) -> bytes:
    """The value bytes of the element at ``element_path`` (``TAG[/index/TAG...]``)."""
    ds = dcmread(path)
    current = ds
    segments = element_path.split("/")
    for position in range(0, len(segments), 2):
        elem = current[int(segments[position], 16)]
        if position + 1 < len(segments):
            current = elem.value[int(segments[position + 1])]
        else:
            value = elem.value
            return bytes(value) if not isinstance(value, str) else value.encode()
    raise KeyError(element_path)
