"""The store: atomic files, one-transaction index, recovery after a crash, concurrency."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.store import storage as storage_module
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.ingest import IngestError
from dwdaemon.store.storage import StorageArea, StorageFullError, checksum_text
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from tests.support import read, testdata

CT = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"


def make_store(directory: str, overwrite: bool = False, synchronous: bool = False) -> Store:
    pools = ThreadPools(synchronous=synchronous)
    store = Store(StorageArea(os.path.join(directory, "files")),
                  SqliteIndex(os.path.join(directory, "index")), pools, overwrite=overwrite)
    store.open()
    return store


def assert_consistent(case: TestCase, store: Store) -> int:
    """Every indexed instance has its intact file, and every file is indexed."""
    rows = store.index.fetch_all("SELECT file_uuid, file_size, file_md5 FROM instances")
    files = {name for name, _ in store.storage.iter_files()}
    case.assertEqual({r[0] for r in rows}, files)
    for file_uuid, size, md5 in rows:
        data = read(store.storage.path(file_uuid))
        case.assertEqual(len(data), size)
        case.assertEqual(checksum_text(data), md5)
    return len(rows)


class StoreTests(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.dir = self.mktemp()
        self.store = make_store(self.dir)
        self.addCleanup(self._close)

    def _close(self) -> None:
        self.store.pools.stop()
        self.store.close()

    @inlineCallbacks
    def test_ingest_and_index(self) -> None:
        result = yield self.store.ingest_bytes(read(testdata("CT_small.dcm")))
        self.assertEqual(result.status, "Success")
        self.assertEqual(result.ids.instance, CT)
        row = yield self.store.instance(CT)
        self.assertEqual(read(self.store.file_path(row.file_uuid)),
                         read(testdata("CT_small.dcm")))
        self.assertEqual(json.loads(row.frames)["kind"], "native")
        self.assertEqual(self.store.storage.temp_files(), [])
        self.assertEqual(assert_consistent(self, self.store), 1)

    @inlineCallbacks
    def test_already_stored_keeps_one_copy(self) -> None:
        data = read(testdata("CT_small.dcm"))
        first = yield self.store.ingest_bytes(data)
        second = yield self.store.ingest_bytes(data)
        self.assertEqual((first.status, second.status), ("Success", "AlreadyStored"))
        self.assertEqual(assert_consistent(self, self.store), 1)

    @inlineCallbacks
    def test_concurrent_uploads_of_the_same_instance(self) -> None:
        data = read(testdata("CT_small.dcm"))
        results = yield gatherResults([self.store.ingest_bytes(data) for _ in range(8)])
        self.assertEqual(sorted(r.status for r in results),
                         ["AlreadyStored"] * 7 + ["Success"])
        self.assertEqual(assert_consistent(self, self.store), 1)

    @inlineCallbacks
    def test_overwrite_replaces_the_file(self) -> None:
        self._close()
        self.store = make_store(self.dir, overwrite=True)
        data = read(testdata("CT_small.dcm"))
        yield self.store.ingest_bytes(data)
        changed = data.replace(b"CompressedSamples^CT1", b"CompressedSamples^CT2")
        result = yield self.store.ingest_bytes(changed)
        self.assertEqual(result.status, "Success")
        self.assertTrue(result.overwritten)
        row = yield self.store.instance(CT)
        self.assertEqual(read(self.store.file_path(row.file_uuid)), changed)
        self.assertIn("CompressedSamples^CT2", row.metadata)
        self.assertEqual(assert_consistent(self, self.store), 1)

    @inlineCallbacks
    def test_bad_input_keeps_nothing(self) -> None:
        for data in (b"", os.urandom(1000), read(testdata("CT_small.dcm"))[:5000]):
            with self.assertRaises(IngestError):
                yield self.store.ingest_bytes(data)
        self.assertEqual(self.store.storage.temp_files(), [])
        self.assertEqual(assert_consistent(self, self.store), 0)

    @inlineCallbacks
    def test_index_failure_removes_the_file(self) -> None:
        def broken(*args: object) -> None:
            raise RuntimeError("database went away")

        self.patch(self.store.index, "add_instance", broken)
        with self.assertRaises(RuntimeError):
            yield self.store.ingest_bytes(read(testdata("CT_small.dcm")))
        self.assertEqual(list(self.store.storage.iter_files()), [])

    @inlineCallbacks
    def test_full_disk_keeps_nothing(self) -> None:
        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(storage_module.os, "fsync", no_space)
        self.patch(storage_module.os, "fdatasync", no_space)
        with self.assertRaises(StorageFullError):
            yield self.store.ingest_bytes(read(testdata("CT_small.dcm")))
        self.patch(storage_module.os, "fsync", os.fsync)
        self.patch(storage_module.os, "fdatasync", os.fdatasync)
        self.assertEqual(self.store.storage.temp_files(), [])
        self.assertEqual(list(self.store.storage.iter_files()), [])

    def test_a_file_that_cannot_be_synced_fails_alone_in_its_batch(self) -> None:
        from pydicom import dcmread
        from pydicom.uid import generate_uid

        prepared = []
        for _ in range(3):
            ds = dcmread(testdata("CT_small.dcm"))
            ds.SOPInstanceUID = generate_uid()
            path, fp = self.store.new_temp()
            with fp:
                ds.save_as(fp, enforce_file_format=True)
            prepared.append(self.store.prepare(path))
        # Prepared files stay temporary until their batch commits.
        self.assertEqual(self.store.storage.temp_files(), sorted(p.temp_path for p in prepared))
        self.assertEqual([n for n, _ in self.store.storage.iter_files() if len(n) == 36], [])
        real = storage_module.os.fdatasync
        bad = os.stat(prepared[1].temp_path).st_ino

        def fsync(fd: int) -> None:
            # a regular file: once removed, its inode number may be reused by a new directory
            info = os.fstat(fd)
            if info.st_ino == bad and stat.S_ISREG(info.st_mode):
                raise OSError(errno.EIO, "Input/output error")
            real(fd)

        self.patch(storage_module.os, "fdatasync", fsync)
        # The three files are committed in one group-commit batch.
        results = self.store._add_batch(prepared)  # noqa: SLF001 - white-box: one group-commit batch
        self.assertIsInstance(results[1], OSError)
        self.assertEqual([r.status for i, r in enumerate(results) if i != 1],
                         ["Success", "Success"])
        good = {prepared[0].record.file_uuid, prepared[2].record.file_uuid}
        indexed = {r[0] for r in self.store.index.fetch_all("SELECT file_uuid FROM instances")}
        self.assertEqual(indexed, good)
        self.assertEqual({name for name, _ in self.store.storage.iter_files()}, good)
        self.assertEqual(self.store.storage.temp_files(), [])

    @inlineCallbacks
    def test_delete_removes_rows_and_files_below(self) -> None:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            yield self.store.ingest_bytes(read(testdata(name)))
        row = yield self.store.instance(CT)
        deleted = yield self.store.delete("patients", row.patient_id)
        self.assertTrue(deleted)
        stats = yield self.store.statistics()
        self.assertEqual((stats["patients"], stats["instances"]), (1, 1))
        self.assertEqual(assert_consistent(self, self.store), 1)
        missing = yield self.store.delete("studies", row.study_id)
        self.assertFalse(missing)

    def test_recovery_after_crash_between_file_and_index(self) -> None:
        # A file renamed into place whose index transaction never happened, and a temporary
        # file of an interrupted write: both go at the next start.
        file_uuid, _, _ = self.store.storage.write(read(testdata("CT_small.dcm")))
        with open(self.store.storage.temp_path(), "wb") as fp:
            fp.write(b"half")
        self._close()
        self.store = make_store(self.dir)
        self.assertFalse(self.store.storage.exists(file_uuid))
        self.assertEqual(self.store.storage.temp_files(), [])
        self.assertEqual(assert_consistent(self, self.store), 0)

    @inlineCallbacks
    def test_recovery_after_crash_during_delete(self) -> None:
        yield self.store.ingest_bytes(read(testdata("CT_small.dcm")))
        row = yield self.store.instance(CT)
        # The index transaction of the delete committed, the process died before unlinking.
        self.store.index.delete("instances", CT)
        self.assertTrue(self.store.storage.exists(row.file_uuid))
        self._close()
        self.store = make_store(self.dir)
        self.assertFalse(self.store.storage.exists(row.file_uuid))
        self.assertEqual(assert_consistent(self, self.store), 0)

    def test_killed_process_leaves_a_consistent_store(self) -> None:
        """SIGKILL a process that ingests in a loop; after restart index and files agree."""
        script = textwrap.dedent(f"""
            import os, sys, warnings
            warnings.simplefilter("ignore")
            sys.path.insert(0, {os.getcwd()!r})
            from pydicom import dcmread
            from pydicom.uid import generate_uid
            from dwdaemon.store.index.sqlite import SqliteIndex
            from dwdaemon.store.storage import StorageArea
            from dwdaemon.store.store import Store
            from dwdaemon.store.index.base import InstanceRecord
            from dwdaemon.store.ingest import analyse, record_fields
            from dwdaemon.threads import ThreadPools
            from tests.support import testdata
            store = Store(StorageArea({os.path.join(self.dir, 'files')!r}),
                          SqliteIndex({os.path.join(self.dir, 'index')!r}),
                          ThreadPools(synchronous=True))
            store.open()
            ds = dcmread(testdata("CT_small.dcm"))
            print("ready", flush=True)
            for i in range(100000):
                ds.SOPInstanceUID = generate_uid()
                path, fp = store.new_temp()
                with fp:
                    ds.save_as(fp, enforce_file_format=True)
                analysis = analyse(path)
                file_uuid, size, md5 = store.storage.commit_temp(path)
                store.index.add_instance(InstanceRecord(file_uuid=file_uuid, file_size=size,
                                         file_md5=md5, **record_fields(analysis)), False)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                cwd=os.getcwd())
        self.assertEqual(proc.stdout.readline().strip(), b"ready")
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        self._close()
        self.store = make_store(self.dir)
        count = assert_consistent(self, self.store)
        self.assertGreater(count, 0)
        self.assertEqual(self.store.storage.temp_files(), [])
