"""The storage area: temporary files hashed while written, commits, directories."""

from __future__ import annotations

import hashlib
import os
import shutil

from twisted.trial.unittest import TestCase

from dwdaemon.store.storage import StorageArea, temp_prefix


class TempFileTests(TestCase):
    def setUp(self) -> None:
        self.area = StorageArea(self.mktemp())
        self.area.open_area()

    def test_digest_is_md5_of_what_was_written(self) -> None:
        data = os.urandom(300_000)
        path, fp = self.area.new_temp()
        with fp:
            fp.write(data[:1000])
            fp.write(memoryview(data)[1000:])
        self.assertEqual(fp.digest(), (len(data), hashlib.md5(data).hexdigest()))
        file_uuid, size, md5 = self.area.commit_temp(path, digest=fp.digest())
        self.assertEqual((size, md5), (len(data), hashlib.md5(data).hexdigest()))
        with open(self.area.path(file_uuid), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertFalse(os.path.exists(path))

    def test_clean_temp_of_removes_one_process_files_only(self) -> None:
        """A dead worker's temporary files (named after its pid) go; others' stay."""
        mine, fp = self.area.new_temp()
        fp.close()
        self.assertTrue(os.path.basename(mine).startswith(temp_prefix(os.getpid())))
        dead = os.path.join(self.area.tmp, temp_prefix(4242424) + "abc")
        other = os.path.join(self.area.tmp, temp_prefix(42424240) + "abc")  # pid prefix of it
        for path in (dead, other):
            with open(path, "wb") as f:
                f.write(b"partial")
        self.assertEqual(self.area.clean_temp_of(4242424), 1)
        self.assertEqual(sorted(os.listdir(self.area.tmp)),
                         sorted(os.path.basename(p) for p in (mine, other)))

    def test_seek_voids_the_running_digest(self) -> None:
        path, fp = self.area.new_temp()
        with fp:
            fp.write(b"abcdef")
            fp.seek(0)
            fp.write(b"X")
        self.assertIsNone(fp.digest())
        _, size, md5 = self.area.commit_temp(path, digest=fp.digest())
        self.assertEqual((size, md5), (6, hashlib.md5(b"Xbcdef").hexdigest()))

    def test_digest_of_another_size_is_not_trusted(self) -> None:
        path, fp = self.area.new_temp()
        with fp:
            fp.write(b"12345")
        _, size, md5 = self.area.commit_temp(path, digest=(3, "0" * 32))
        self.assertEqual((size, md5), (5, hashlib.md5(b"12345").hexdigest()))

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
