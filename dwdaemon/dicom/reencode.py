"""Streamed re-encoding of native instances as Explicit VR Little Endian (pure; no Twisted).

PS3.18 8.7.3 (Table 8.7.3-2) leaves Implicit VR Little Endian and Explicit VR Big Endian out of
Web Services: an instance stored in one of them is sent as Explicit VR Little Endian even with
``transfer-syntax=*``. Only the elements before Pixel Data are parsed and re-written; the
pixel values are then copied from the stored file chunk by chunk (byte-swapped for big endian
words), so memory holds the header and one chunk whatever the size of the instance.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator

import numpy as np
from pydicom import uid

__all__ = ["RESTFUL_NATIVE", "needs_explicit_le", "explicit_le_chunks"]

IMPLICIT_LE = uid.ImplicitVRLittleEndian
EXPLICIT_LE = uid.ExplicitVRLittleEndian
BIG_ENDIAN = uid.ExplicitVRBigEndian
#: Stored syntaxes that Web Services never send (converted to Explicit VR Little Endian).
RESTFUL_NATIVE = frozenset({IMPLICIT_LE, BIG_ENDIAN})
CHUNK = 1 << 20
_SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def needs_explicit_le(stored_syntax: str) -> bool:
    """Whether ``transfer-syntax=*`` must still convert an instance stored in this syntax."""
    return stored_syntax in RESTFUL_NATIVE


def _header(path: str, stored_syntax: str) -> tuple[bytes, int]:
    """Part 10 bytes up to (not including) Pixel Data, and BitsAllocated."""
    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, stop_before_pixels=True)
        for elem in ds.iterall():  # convert raw elements while the stored encoding applies
            width = _SWAP.get(elem.VR)
            if (stored_syntax == BIG_ENDIAN and width and isinstance(elem.value, bytes)
                    and len(elem.value) % width == 0):
                elem.value = np.frombuffer(elem.value, f">u{width}").astype(
                    f"<u{width}").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        out = io.BytesIO()
        dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    return out.getvalue(), int(ds.get("BitsAllocated", 8) or 8)


def explicit_le_chunks(path: str, stored_syntax: str, pixel_offset: int, pixel_length: int,
                       pixel_vr: str, chunk: int = CHUNK) -> Iterator[bytes]:
    """The instance at ``path`` as an Explicit VR Little Endian Part 10 file, in chunks.

    ``pixel_offset``/``pixel_length`` locate the native Pixel Data value in the stored file
    (as recorded at ingest); ``pixel_length`` < 0 means there is no Pixel Data.
    """
    header, bits = _header(path, stored_syntax)
    yield header
    if pixel_length < 0:
        return
    vr = pixel_vr if pixel_vr in ("OB", "OW") else ("OW" if bits > 8 else "OB")
    width = 0
    if stored_syntax == BIG_ENDIAN and vr == "OW":
        width = bits // 8 if bits in (32, 64) else 2
    yield struct.pack("<HH2sHL", 0x7FE0, 0x0010, vr.encode(), 0, pixel_length)
    step = max(8, chunk - chunk % 8)
    with open(path, "rb") as fp:
        fp.seek(pixel_offset)
        left = pixel_length
        while left > 0:
            data = fp.read(min(step, left))
            if not data:
                raise OSError(f"{path}: pixel data shorter than its stored length")
            left -= len(data)
            if width and len(data) % width == 0:
                data = np.frombuffer(data, f">u{width}").astype(f"<u{width}").tobytes()
            yield data
