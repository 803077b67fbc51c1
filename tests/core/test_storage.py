"""The storage area: temporary files hashed while written, commits, directories."""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import TestCase

from dwdaemon.store.storage import (
    StorageArea,
    checksum_text,
    new_file_uuid,
    temp_prefix,
    temp_suffix,
)


class TempFileTests(TestCase):
    def setUp(self) -> None:
        self.area = StorageArea(self.mktemp())
        self.area.open_area()

    def test_digest_is_the_checksum_of_what_was_written(self) -> None:
        data = os.urandom(300_000)
        path, fp = self.area.new_temp()
        with fp:
            fp.write(data[:1000])
            fp.write(memoryview(data)[1000:])
        self.assertEqual(fp.digest(), (len(data), checksum_text(data)))
        file_uuid, size, md5 = self.area.commit_temp(path, digest=fp.digest())
        self.assertEqual((size, md5), (len(data), checksum_text(data)))
        with open(self.area.path(file_uuid), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertFalse(os.path.exists(path))

    def dropped_while_storing(self, area: StorageArea, sizes: list[int],
                              background: bool = False) -> list[list[str]]:
        """Store files of ``sizes`` bytes through ``area`` (synced by their writer, in the
        background with ``background``, or by the commit for odd ones) and return, after
        each, the stored files dropped from the page cache so far."""
        from concurrent.futures import ThreadPoolExecutor

        from dwdaemon.store import storage as storage_module

        dropped: list[str] = []
        real_advise = os.posix_fadvise

        def advise(fd: int, offset: int, length: int, advice: int) -> None:
            if advice == os.POSIX_FADV_DONTNEED:
                dropped.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_advise(fd, offset, length, advice)

        self.patch(storage_module.os, "posix_fadvise", advise)
        pool = ThreadPoolExecutor(1) if background else None
        self.addCleanup(lambda: pool and pool.shutdown())
        out = []
        for i, size in enumerate(sizes):
            path, fp = area.new_temp()
            fp.write(os.urandom(size))
            file_uuid = area.temp_uuid(path)
            if i % 2:
                fp.close()  # synced by the commit
            else:
                fp.close(sync=True, background=pool)
            area.install_temp(path, file_uuid, synced=fp.synced)
            out.append([os.path.basename(p) for p in dropped])
            self.assertTrue(os.path.exists(area.path(file_uuid)))
        return out

    def test_only_the_most_recent_stored_files_stay_in_the_page_cache(self) -> None:
        """RecentlyStoredCacheSize: once synced, a new file joins the window of recent files;
        the oldest leave the page cache while the window is over its size (data on disk)."""
        area = StorageArea(self.mktemp(), recent_cache_bytes=250_000)
        for background in (False, True):
            steps = self.dropped_while_storing(area, [100_000] * 5, background)
            names = [name for name, _ in area.iter_files()]
            self.assertEqual([len(s) for s in steps], [0, 0, 1, 2, 3] if not background
                             else [1, 2, 3, 4, 5])  # the window is full by then
            self.assertTrue(set(steps[-1]) <= set(names), (steps, names))
        unlimited = StorageArea(self.mktemp())  # 0: no limit, nothing dropped
        self.assertEqual(self.dropped_while_storing(unlimited, [100_000] * 4)[-1], [])

    def test_clean_temp_of_removes_one_process_files_only(self) -> None:
        """A dead worker's temporary files (named after its pid) go; others' stay."""
        mine, fp = self.area.new_temp()
        fp.close()
        self.assertTrue(mine.endswith(temp_suffix(os.getpid())))
        dead = self.area.temp_path().replace(temp_suffix(os.getpid()), temp_suffix(4242424))
        other = self.area.temp_path().replace(temp_suffix(os.getpid()), temp_suffix(14242424))
        legacy_dead = os.path.join(self.area.tmp, temp_prefix(4242424) + "abc")
        legacy_other = os.path.join(self.area.tmp, temp_prefix(42424240) + "abc")
        for path in (dead, other, legacy_dead, legacy_other):
            with open(path, "wb") as f:
                f.write(b"partial")
        self.assertEqual(self.area.clean_temp_of(4242424), 2)
        self.assertEqual(self.area.temp_files(), sorted([mine, other, legacy_other]))

    def test_new_files_share_a_directory_by_runs_across_threads(self) -> None:
        """Consecutive new files of a process (any thread, any request) share a directory by
        runs of SHARED_DIRECTORY; their names stay distinct UUIDs."""
        from concurrent.futures import ThreadPoolExecutor

        from dwdaemon.store.storage import SHARED_DIRECTORY

        with ThreadPoolExecutor(4) as pool:
            first = list(pool.map(lambda _: self.area.new_file_uuid(), range(SHARED_DIRECTORY)))
        second = [self.area.new_file_uuid() for _ in range(SHARED_DIRECTORY)]
        self.assertEqual(len({u[:4] for u in first}), 1)
        self.assertEqual(len({u[:4] for u in second}), 1)
        self.assertEqual(len(set(first + second)), 2 * SHARED_DIRECTORY)
        path, fp = self.area.new_temp()
        fp.close()
        self.assertNotEqual(self.area.temp_uuid(path)[:4], second[0][:4])  # a new run

    def test_temporary_file_is_written_beside_its_final_name(self) -> None:
        """No shared temporary folder: the rename that commits stays in one directory, and
        runs of files can share a directory (one directory sync)."""
        file_uuid = new_file_uuid("abcd")
        self.assertEqual(file_uuid[:4], "abcd")
        self.assertNotEqual(new_file_uuid("abcd"), file_uuid)
        path, fp = self.area.new_temp(file_uuid)
        with fp:
            fp.write(b"data")
        self.assertEqual(os.path.dirname(path), os.path.dirname(self.area.path(file_uuid)))
        self.assertEqual(self.area.temp_uuid(path), file_uuid)
        self.assertTrue(self.area.is_temp(path))
        self.assertFalse(self.area.is_temp(self.area.path(file_uuid)))
        self.area.sync_dir(self.area.install_temp(path, file_uuid))
        self.assertEqual(self.area.temp_files(), [])
        with open(self.area.path(file_uuid), "rb") as f:
            self.assertEqual(f.read(), b"data")

    def test_seek_voids_the_running_digest(self) -> None:
        path, fp = self.area.new_temp()
        with fp:
            fp.write(b"abcdef")
            fp.seek(0)
            fp.write(b"X")
        self.assertIsNone(fp.digest())
        _, size, md5 = self.area.commit_temp(path, digest=fp.digest())
        self.assertEqual((size, md5), (6, checksum_text(b"Xbcdef")))

    def test_digest_of_another_size_is_not_trusted(self) -> None:
        path, fp = self.area.new_temp()
        with fp:
            fp.write(b"12345")
        _, size, md5 = self.area.commit_temp(path, digest=(3, "0" * 32))
        self.assertEqual((size, md5), (5, checksum_text(b"12345")))

    def test_commit_recreates_a_removed_directory(self) -> None:
        first = self.area.write(b"one")[0]
        shutil.rmtree(os.path.dirname(self.area.path(first)))
        # Same two-level directory as the first file, known to exist from before.
        self.area._dirs.add(os.path.dirname(self.area.path(first)))  # noqa: SLF001 - white-box: the area's known directories
        path, fp = self.area.new_temp()
        with fp:
            fp.write(b"two")
        original = self.area.path
        self.patch(self.area, "path", lambda uuid: original(first[:4] + uuid[4:]))
        file_uuid, _, _ = self.area.commit_temp(path, digest=fp.digest())
        with open(self.area.path(file_uuid), "rb") as f:
            self.assertEqual(f.read(), b"two")
