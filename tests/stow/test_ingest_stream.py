"""The store's side of STOW-RS: a multipart body ingested without HTTP (Store.ingest_stream)."""

from __future__ import annotations

import io
import os
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

    def instances(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            ds = dcmread(testdata("CT_small.dcm"))
            ds.SOPInstanceUID = generate_uid()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            out.append(buffer.getvalue())
        return out

    @inlineCallbacks
    def test_each_part_is_synced_by_its_writer_and_shares_a_directory(self) -> None:
        """A part is synced once, when complete, in the background while it is parsed (its
        commit waits for that sync and does not reopen it); the parts of a request are stored
        side by side (one directory sync)."""
        from dwdaemon.store import storage as storage_module

        synced, reopened, directories = [], [], []
        real_sync, real_open, real_dir = (storage_module.os.fdatasync, storage_module.os.open,
                                          storage_module._fsync_dir)  # noqa: SLF001
        self.patch(storage_module.os, "fdatasync",
                   lambda fd: (synced.append(fd), real_sync(fd))[1])
        self.patch(storage_module.os, "open",
                   lambda path, *a: (reopened.append(path), real_open(path, *a))[1])
        self.patch(storage_module, "_fsync_dir",
                   lambda d: (directories.append(d), real_dir(d))[1])
        yield self.stream(body(*self.instances(3))).run()
        self.assertEqual([r.status for _, r in self.stored], ["Success"] * 3)
        self.assertEqual(len(synced), 3)
        root = self.store.storage.root + os.sep  # (os.open is patched for every module)
        self.assertEqual([p for p in reopened if str(p).startswith(root)
                          and not os.path.isdir(p)], [])
        files = [name for name, _ in self.store.storage.iter_files()]
        self.assertEqual(len({name[:4] for name in files}), 1, files)
        self.assertEqual(len(directories), len(set(directories)))
        assert_consistent(self, self.store)

    @inlineCallbacks
    def test_full_disk_at_a_part_sync_fails_that_part_only_as_out_of_resources(self) -> None:
        import errno

        from dwdaemon.store import storage as storage_module

        real_sync, calls = storage_module.os.fdatasync, []

        def sync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_sync(fd)

        self.patch(storage_module.os, "fdatasync", sync)
        yield self.stream(body(*self.instances(3))).run()
        self.assertEqual(sorted(o for o, _ in self.stored), [0, 2])
        ((order, _, _, reason, _),) = self.failed
        self.assertEqual((order, reason), (1, sm.OUT_OF_RESOURCES))
        self.assertEqual(self.store.storage.temp_files(), [])
        assert_consistent(self, self.store)

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


class PartMemoryTests(TestCase):
    """A request does not keep its parts once they are handed to the commit."""

    setUp = IngestStreamTests.setUp
    _close = IngestStreamTests._close  # noqa: SLF001
    stream = IngestStreamTests.stream

    @inlineCallbacks
    def test_parts_handed_over_are_not_kept_by_the_request(self) -> None:
        import gc
        import weakref

        from dwdaemon.store import ingest_stream

        sinks: list[Any] = []
        real = ingest_stream.DicomPartSink

        class Tracked(real):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                sinks.append(weakref.ref(self))

        self.patch(ingest_stream, "DicomPartSink", Tracked)
        ds = dcmread(testdata("CT_small.dcm"))
        parts = []
        for _ in range(3 * GROUP):
            ds.SOPInstanceUID = generate_uid()
            out = io.BytesIO()
            ds.save_as(out)
            parts.append(out.getvalue())
        stream = self.stream(body(*parts))
        yield stream.run()
        self.assertEqual(len(self.stored), 3 * GROUP)
        gc.collect()
        self.assertEqual(len(sinks), 3 * GROUP)
        self.assertEqual([ref for ref in sinks if ref() is not None], [])  # stream alive
        self.assertEqual(stream.dicom_sinks, set())
