"""Bulk values found by parsing the file: for the rare files whose offsets are not usable
(deflated transfer syntax), and for elements that are not bulk data in the metadata (Orthanc
serves any element's value, e.g. ``bulk/0010,0010``)."""

from __future__ import annotations

from pydicom import dcmread


def read_bulk_by_parsing(path: str, element_path: str) -> bytes:
    """The value bytes of the element at ``element_path`` (``TAG[/index/TAG...]``)."""
    ds = dcmread(path)
    current = ds
    segments = element_path.split("/")
    for position in range(0, len(segments), 2):
        tag = int(segments[position], 16)
        if position + 1 < len(segments):
            current = current[tag].value[int(segments[position + 1])]
            continue
        raw = current.get_item(tag)
        if raw is None:
            raise KeyError(element_path)
        value = raw.value
        if isinstance(value, bytes | bytearray):  # a raw element: the bytes as stored
            return bytes(value)
        value = current[tag].value
        return bytes(value) if not isinstance(value, str) else value.encode()
    raise KeyError(element_path)
