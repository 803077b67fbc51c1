"""DICOM ingest of mutated files: truncated, bit-flipped, wrong lengths, deep nesting."""

from __future__ import annotations

import os
import struct
import tempfile

from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.store.ingest import IngestError, analyse
from tests.fuzz.support import PROFILE, counted

FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm",
         "SC_rgb_jpeg_dcmtk.dcm", "rtplan.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"]


def _read(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None
    with open(path, "rb") as f:
        return f.read()


ORIGINALS = {name: _read(name) for name in FILES}


def nested(depth: int) -> bytes:
    """CT_small with a sequence nested ``depth`` deep (undefined lengths), built as bytes."""
    data = ORIGINALS["CT_small.dcm"]
    meta_end = 144 + struct.unpack("<I", data[140:144])[0]
    seq = struct.pack("<HH", 0x0008, 0x1199) + b"SQ\0\0" + b"\xff" * 4
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    leaf = struct.pack("<HH", 0x0010, 0x0020) + b"LO" + struct.pack("<H", 2) + b"x "
    element = (seq + item) * depth + leaf + (item_end + seq_end) * depth
    # (0008,1199) goes before the first element of the data set: (0008,xxxx) > 0008,1199 is
    # out of order, which a reader must survive too.
    return data[:meta_end] + element + data[meta_end:]


class IngestPropertyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dwd-fuzz-")

    def tearDown(self) -> None:
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def check(self, data: bytes) -> None:
        """A complete instance is analysed; anything else is an IngestError."""
        path = os.path.join(self.dir, "f.dcm")
        with open(path, "wb") as f:
            f.write(data)
        try:
            analysis = analyse(path)
        except IngestError as exc:
            self.assertTrue(str(exc))
            return
        self.assertTrue(analysis.sop_uid)

    @PROFILE
    @given(st.sampled_from(FILES), st.data())
    @counted
    def test_mutated_files(self, name: str, data: st.DataObject) -> None:
        body = bytearray(ORIGINALS[name])
        for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
            op = data.draw(st.sampled_from(["truncate", "flip", "length", "insert", "delete"]))
            at = data.draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))
            if op == "truncate":
                del body[at:]
            elif op == "flip" and body:
                body[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
            elif op == "length" and at + 4 <= len(body):
                # a 16- or 32-bit length field gets a random value
                value = data.draw(st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 3]))
                body[at:at + 4] = struct.pack("<I", value)
            elif op == "insert":
                body[at:at] = data.draw(st.binary(min_size=1, max_size=16))
            else:
                del body[at:at + data.draw(st.integers(min_value=1, max_value=64))]
        self.check(bytes(body))

    @PROFILE
    @given(st.binary(max_size=600))
    @counted
    def test_random_bytes_after_a_preamble(self, tail: bytes) -> None:
        self.check(b"\0" * 128 + b"DICM" + tail)

    @PROFILE
    @given(st.integers(min_value=1, max_value=20000))
    @counted
    def test_deep_nesting(self, depth: int) -> None:
        self.check(nested(depth))
