"""The store's side of STOW-RS: a multipart body ingested without HTTP (Store.ingest_stream)."""

from __future__ import annotations

import io
import warnings
from typing import Any

from pydicom import dcmread
from pydicom.uid import generate_uid
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.dicom import stow_model as sm
from dwdaemon.store.ingest_stream import GROUP, MultipartError
from tests.core.test_store import assert_consistent, make_store
from tests.support import read, testdata

BOUNDARY = "stream-test"


def body(*parts: bytes, close: bool = True) -> io.BytesIO:
    out = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                   + p + b"\r\n" for p in parts)
    if close:
        out += b"--" + BOUNDARY.encode() + b"--\r\n"
    return io.BytesIO(out)


class IngestStreamTests(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.store = make_store(self.mktemp())
        self.addCleanup(self._close)
        self.stored: list[tuple[int, Any]] = []
        self.failed: list[tuple[int, str, str, int, str]] = []

    def _close(self) -> None:
        self.store.pools.stop()
        self.store.close()

    def stream(self, data: io.BytesIO, expected_study: str | None = None) -> Any:
        return self.store.ingest_stream(
            data, BOUNDARY, sm.DICOM, expected_study,
            lambda order, result: self.stored.append((order, result)),
            lambda *failure: self.failed.append(failure))

    @inlineCallbacks
    def test_parts_stored_and_refused(self) -> None:
        ct = read(testdata("CT_small.dcm"))
        stream = self.stream(body(ct, b"not DICOM"))
        malformed = yield stream.run()
        self.assertIsNone(malformed)
        self.assertEqual(stream.order, 2)
        self.assertEqual([(o, r.status) for o, r in self.stored], [(0, "Success")])
        ((order, _, _, reason, _),) = self.failed
        self.assertEqual((order, reason), (1, sm.CANNOT_UNDERSTAND))
        self.assertEqual(self.store.storage.temp_files(), [])
        stats = yield self.store.statistics()
        self.assertEqual(stats["instances"], 1)

    @inlineCallbacks
    def test_other_study_refused_and_removed(self) -> None:
        stream = self.stream(body(read(testdata("CT_small.dcm"))), expected_study="1.2.3")
        yield stream.run()
        self.assertEqual(self.stored, [])
        ((_, sop_class, sop_uid, reason, message),) = self.failed
        self.assertEqual(reason, sm.PROCESSING_FAILURE)
        self.assertTrue(sop_uid)
        self.assertIn("not 1.2.3", message)
        self.assertEqual(self.store.storage.temp_files(), [])

    @inlineCallbacks
    def test_truncated_body_stores_nothing(self) -> None:
        stream = self.stream(body(read(testdata("CT_small.dcm")), close=False))
        with self.assertRaises(MultipartError):
            yield stream.run()
        self.assertEqual((self.stored, self.failed), ([], []))
        self.assertEqual(self.store.storage.temp_files(), [])

    @inlineCallbacks
    def test_parts_committed_in_groups(self) -> None:
        """The parts of a body are committed a group at a time (one index transaction per
        group, not per part), each stored alone, in order, with its file."""
        ds = dcmread(testdata("CT_small.dcm"))
        parts = []
        for _ in range(2 * GROUP + 1):
            ds.SOPInstanceUID = generate_uid()
            out = io.BytesIO()
            ds.save_as(out)
            parts.append(out.getvalue())
        batches: list[int] = []  # sizes of the group-commit batches (one db_write each)
        db_write = self.store.pools.db_write

        def counting(fn: Any, batch: Any = None, *args: Any) -> Any:
            if isinstance(batch, list):
                batches.append(len(batch))
            return db_write(fn, *([] if batch is None else [batch]), *args)

        self.patch(self.store.pools, "db_write", counting)
        stream = self.stream(body(*parts))
        yield stream.run()
        self.assertEqual(self.failed, [])
        self.assertEqual(sorted(o for o, _ in self.stored), list(range(len(parts))))
        self.assertEqual(sum(batches), len(parts))
        self.assertLessEqual(len(batches), 3)
        self.assertEqual(self.store.storage.temp_files(), [])
        self.assertEqual(assert_consistent(self, self.store), len(parts))
