"""The storage area: one file per instance, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from typing import BinaryIO

CHUNK = 1 << 20


class StorageFull(OSError):
    """The disk is full (or over quota): nothing was kept."""


class StorageArea:
    """Files under ``root/ab/cd/<uuid>``; temporary files under ``root/.tmp``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.tmp = os.path.join(self.root, ".tmp")

    def open_area(self) -> None:
        os.makedirs(self.tmp, exist_ok=True)

    def path(self, file_uuid: str) -> str:
        """Where the file named ``file_uuid`` lives."""
        return os.path.join(self.root, file_uuid[0:2], file_uuid[2:4], file_uuid)

    def temp_path(self) -> str:
        """A fresh temporary path inside the storage area (same filesystem: rename is atomic)."""
        return os.path.join(self.tmp, uuid.uuid4().hex)

    def new_temp(self) -> tuple[str, BinaryIO]:
        """A new temporary file, open for writing."""
        path = self.temp_path()
        try:
            return path, open(path, "xb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:  # the temporary folder was removed under us: recreate it
            os.makedirs(self.tmp, exist_ok=True)
            return path, open(path, "xb")  # noqa: SIM115

    def commit_temp(self, temp_path: str, sync_dir: bool = True) -> tuple[str, int, str]:
        """Fsync a finished temporary file and move it to its final name.

        Returns ``(file_uuid, size, md5)``.  On ENOSPC/EDQUOT the temporary file is removed and
        :class:`StorageFull` is raised.  With ``sync_dir=False`` the caller must call
        :meth:`sync_dirs` before relying on the rename (group commit).
        """
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(temp_path, "rb+") as fp:
                while chunk := fp.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                fp.flush()
                os.fsync(fp.fileno())
            file_uuid = str(uuid.uuid4())
            final = self.path(file_uuid)
            directory = os.path.dirname(final)
            os.makedirs(directory, exist_ok=True)
            os.rename(temp_path, final)
            if sync_dir:
                _fsync_dir(directory)
        except OSError as exc:
            discard(temp_path)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(exc.errno, "storage area is full") from exc
            raise
        return file_uuid, size, digest.hexdigest()

    def write(self, data: bytes | Iterable[bytes]) -> tuple[str, int, str]:
        """Store ``data`` atomically; returns ``(file_uuid, size, md5)``."""
        path, fp = self.new_temp()
        try:
            with fp:
                if isinstance(data, bytes | bytearray | memoryview):
                    fp.write(data)
                else:
                    for chunk in data:
                        fp.write(chunk)
        except OSError as exc:
            discard(path)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(exc.errno, "storage area is full") from exc
            raise
        return self.commit_temp(path)

    def sync_dirs(self, file_uuids: Iterable[str]) -> None:
        """Fsync the directories holding these files (makes their renames durable)."""
        for directory in {os.path.dirname(self.path(f)) for f in file_uuids}:
            _fsync_dir(directory)

    def remove(self, file_uuid: str) -> None:
        """Remove a stored file (missing files are fine)."""
        discard(self.path(file_uuid))

    def exists(self, file_uuid: str) -> bool:
        return os.path.exists(self.path(file_uuid))

    def iter_files(self) -> Iterable[tuple[str, float]]:
        """``(file_uuid, mtime)`` of every stored file."""
        for top in os.listdir(self.root):
            if top.startswith(".") or len(top) != 2:
                continue
            for sub in os.listdir(os.path.join(self.root, top)):
                directory = os.path.join(self.root, top, sub)
                if not os.path.isdir(directory):
                    continue
                for name in os.listdir(directory):
                    try:
                        yield name, os.stat(os.path.join(directory, name)).st_mtime
                    except FileNotFoundError:
                        continue

    def clean_temp(self) -> int:
        """Remove leftovers of interrupted writes; returns how many."""
        count = 0
        if os.path.isdir(self.tmp):
            for name in os.listdir(self.tmp):
                discard(os.path.join(self.tmp, name))
                count += 1
        return count

    def remove_orphans(self, known: set[str], min_age: float = 0.0) -> list[str]:
        """Remove stored files the index does not know (older than ``min_age`` seconds)."""
        now = time.time()
        removed = []
        for file_uuid, mtime in list(self.iter_files()):
            if file_uuid not in known and now - mtime >= min_age:
                self.remove(file_uuid)
                removed.append(file_uuid)
        return removed

    def free_space(self) -> int:
        return shutil.disk_usage(self.root).free


def discard(path: str) -> None:
    """Remove a file if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
