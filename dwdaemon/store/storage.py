"""The storage area: one file per instance, written atomically (temp file, fsync, rename).

A temporary file is created in the directory of its final name (``ab/cd/<uuid>.<host>-<pid>.tmp``)
and renamed in place once synced. One shared temporary folder would put every new inode of the
daemon in one inode group, and ext4 without a journal then scans past every recently deleted
inode of that group on each create (measured: 0.65 ms per create, against 0.07 ms in the final
directories, which spread over the groups). The legacy ``.tmp`` folder is still cleaned.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

CHUNK = 1 << 20

#: How the index names a stored file's checksum: XXH3 (128 bits) of its content. Files stored
#: before 2026-12-04 have their MD5 (32 hex digits, no prefix), still verified as such. The
#: checksum only detects damage to stored files (``dwdaemon verify``, ETags): XXH3 does that as
#: well as MD5 (neither resists a forger) at a hundredth of its cost (512 KB: 0.004 ms against
#: 0.57 ms, measured here; MD5 was 15% of the CPU of a STOW-RS instance).
CHECKSUM_PREFIX = "xxh3-128:"

#: Threads of a process syncing finished temporary files (:meth:`StorageArea.background_sync`).
SYNC_THREADS = 2

#: New files of a process share a directory by runs of this many (see
#: :meth:`StorageArea.new_file_uuid`).
SHARED_DIRECTORY = 32

#: This host's name in temporary file names (a storage area may be shared by several hosts).
_HOST = socket.gethostname().replace(os.sep, "_") or "host"


def temp_prefix(pid: int) -> str:
    """The start of every temporary file name of process ``pid`` on this host in the legacy
    ``.tmp`` folder (still cleaned)."""
    return f"{_HOST}-{pid}-"


def temp_suffix(pid: int) -> str:
    """The end of every temporary file name of process ``pid`` on this host, so that the
    parent of worker processes can remove the temporary files of a worker that died."""
    return f".{_HOST}-{pid}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether a file name of the storage area is a temporary file (never an instance)."""
    return name.endswith(".tmp") or ".tmp." in name


def new_file_uuid(prefix: str = "") -> str:
    """A random (version 4) UUID; its first hex digits are ``prefix`` when one is given (files
    of one batch share a directory, so one directory sync covers them)."""
    digits = uuid.uuid4().hex
    if prefix:
        digits = prefix + digits[len(prefix):]
    return str(uuid.UUID(hex=digits))


class StorageFullError(OSError):
    """The disk is full (or over quota): nothing was kept."""


class TempFile:
    """A temporary file being filled: counts and checksums what is written.

    Commit it with ``commit_temp(path, digest=temp.digest())`` so the file is not read back
    to hash it (XXH3-128, :data:`CHECKSUM_PREFIX`). A writer that seeks
    (pydicom patching a length) makes the running hash void: :meth:`digest` is then ``None``.
    """

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.size = 0
        self._sum: Any = new_checksum()
        #: Its content reached the disk (:meth:`close` with ``sync``): the commit skips it;
        #: or a :class:`~concurrent.futures.Future` of that sync (``close(background=...)``).
        self.synced: bool | Future[None] = False
        self._handed_off = False

    def write(self, data: bytes | memoryview) -> int:
        written = self.fp.write(data)
        if self._sum is not None:
            self._sum.update(data)
            self.size += len(data)
        return written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._sum = None
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        return self.fp.tell()

    def flush(self) -> None:
        self.fp.flush()

    def close(self, sync: bool = False, background: Executor | None = None) -> None:
        """Close; with ``sync`` the data is flushed to the disk first (fdatasync), so the
        commit does not reopen the file to sync it. With ``background`` the sync (and the
        close) run there while the caller goes on: :attr:`synced` is then the Future the
        commit waits for (its error is the sync's)."""
        if self._handed_off:
            return
        if sync and not self.fp.closed:
            self.fp.flush()
            if background is not None:
                self._handed_off = True
                self.synced = background.submit(_sync_and_close, self.fp)
                return
            os.fdatasync(self.fp.fileno())
            self.synced = True
        self.fp.close()

    def digest(self) -> tuple[int, str] | None:
        """``(size, checksum)`` of what was written (:func:`checksum_text`), or ``None``
        after a seek."""
        if self._sum is None:
            return None
        return self.size, CHECKSUM_PREFIX + self._sum.hexdigest()

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StorageArea:
    """Files under ``root/ab/cd/<uuid>``, each first written as a temporary file beside it.

    ``recent_cache_bytes`` (``RecentlyStoredCacheSize``): the newly stored files of this
    process stay in the OS page cache up to this many bytes, the most recent ones; older
    ones are dropped from it (0: no limit, the OS decides). See :meth:`_recently_stored`.
    """

    def __init__(self, root: str, recent_cache_bytes: int = 0) -> None:
        self.root = os.path.abspath(root)
        self.recent_cache_bytes = recent_cache_bytes
        self._recent: deque[tuple[str, int]] = deque()
        self._recent_total = 0
        self.tmp = os.path.join(self.root, ".tmp")
        #: Directories known to exist (saves a mkdir per stored file).
        self._dirs: set[str] = set()
        self._lock = threading.Lock()
        self._run_prefix = ""
        self._run_left = 0
        self._syncer: ThreadPoolExecutor | None = None

    def _recently_stored(self, final_path: str) -> None:
        """A new file is stored (synced and renamed to ``final_path``): it joins the window of
        recent files; the oldest ones leave the page cache while the window is over
        ``recent_cache_bytes`` (thread-safe).

        Ingest writes each instance once; a viewer or a pipeline often reads the newest at
        once, older ones seldom. Keeping every stored file would let ingest push the index
        and the instances being read out of the cache; and on virtual machines that hand free
        memory back to their host (free page reporting, balloons: these machines) each new
        page of cache costs a fault on the host, while pages dropped from the cache are
        reused warm. Measured here with 512 KB files and fdatasync: 0.94 ms to write a file
        into new cache pages, 0.08 ms into recycled ones (CPU 1.07 against 0.19 ms)."""
        try:
            size = os.stat(final_path).st_size
        except OSError:  # advice only: never fails the store
            return
        with self._lock:
            self._recent.append((final_path, size))
            self._recent_total += size
            old: list[str] = []
            while self._recent_total > self.recent_cache_bytes and len(self._recent) > 1:
                path, old_size = self._recent.popleft()
                self._recent_total -= old_size
                old.append(path)
        for path in old:
            drop_from_cache(path)

    def background_sync(self) -> Executor:
        """Threads that sync finished temporary files while their writer goes on (a STOW
        part is synced while it is parsed: the two waits overlap instead of adding up)."""
        with self._lock:
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(SYNC_THREADS, "dwdaemon-sync")
            return self._syncer

    def new_file_uuid(self) -> str:
        """The name of a new stored file. Consecutive new files of this process share their
        directory by runs of :data:`SHARED_DIRECTORY` (their first four hex digits), whatever
        request they come from: a directory is created once per run instead of once per file
        in a young area, and a group commit of concurrent requests syncs one directory
        instead of one per file. The other 118 bits stay random (thread-safe)."""
        with self._lock:
            if self._run_left <= 0:
                self._run_prefix, self._run_left = uuid.uuid4().hex[:4], SHARED_DIRECTORY
            self._run_left -= 1
            prefix = self._run_prefix
        return new_file_uuid(prefix)

    def open_area(self) -> None:
        os.makedirs(self.tmp, exist_ok=True)

    def path(self, file_uuid: str) -> str:
        """Where the file named ``file_uuid`` lives."""
        return os.path.join(self.root, file_uuid[0:2], file_uuid[2:4], file_uuid)

    def temp_path(self, file_uuid: str | None = None) -> str:
        """A fresh temporary path in the directory of the final name of ``file_uuid`` (a new
        one when not given; the directory is created): the rename that commits it stays in
        one directory."""
        file_uuid = file_uuid or self.new_file_uuid()
        directory = self._directory(file_uuid)
        return os.path.join(directory, file_uuid + temp_suffix(os.getpid()))

    def new_temp(self, file_uuid: str | None = None) -> tuple[str, TempFile]:
        """A new temporary file for the stored file ``file_uuid`` (a new one when not given),
        open for writing (it hashes what is written)."""
        path = self.temp_path(file_uuid)
        try:
            fp = open(path, "xb")  # noqa: SIM115 - the TempFile owns it (closed at commit/discard)
        except FileNotFoundError:  # the directory was removed under us: create it again
            self._dirs.discard(os.path.dirname(path))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fp = open(path, "xb")  # noqa: SIM115 - as above
        return path, TempFile(fp)

    def is_temp(self, path: str) -> bool:
        """Whether ``path`` is a temporary file of this area (its own files can be renamed
        into place; others are copied first)."""
        directory, name = os.path.split(path)
        if directory == self.tmp:
            return True
        return is_temp_name(name) and os.path.dirname(os.path.dirname(directory)) == self.root

    def temp_uuid(self, path: str) -> str | None:
        """The stored file name a temporary file was made for (``None`` for legacy names)."""
        directory, name = os.path.split(path)
        if directory == self.tmp or not is_temp_name(name):
            return None
        file_uuid = name.split(".", 1)[0]
        return file_uuid if self.path(file_uuid) == os.path.join(directory, file_uuid) else None

    def _directory(self, file_uuid: str) -> str:
        """The directory of ``file_uuid``'s final name, created if needed (cached)."""
        directory = os.path.join(self.root, file_uuid[0:2], file_uuid[2:4])
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)
        return directory

    def commit_temp(self, temp_path: str, sync_dir: bool = True,
                    digest: tuple[int, str] | None = None) -> tuple[str, int, str]:
        """Fsync a finished temporary file and move it to its final name.

        Returns ``(file_uuid, size, md5)``.  ``digest`` is the ``(size, md5)`` a
        :class:`TempFile` computed while the file was written (see :meth:`measure_temp`).  On
        ENOSPC/EDQUOT the temporary file is removed and :class:`StorageFullError` is raised.  With
        ``sync_dir=False`` the caller must call :meth:`sync_dir` before relying on the rename.
        """
        size, md5 = self.measure_temp(temp_path, digest)
        file_uuid = self.temp_uuid(temp_path) or self.new_file_uuid()
        directory = self.install_temp(temp_path, file_uuid)
        if sync_dir:
            _fsync_dir(directory)
        return file_uuid, size, md5

    def measure_temp(self, temp_path: str, digest: tuple[int, str] | None = None
                     ) -> tuple[int, str]:
        """``(size, md5)`` of a temporary file: ``digest`` (from its :class:`TempFile`) when
        the size on disk agrees, else read back and hashed."""
        try:
            if digest is not None and os.stat(temp_path).st_size == digest[0]:
                return digest
            with open(temp_path, "rb") as fp:
                return file_checksum(fp)
        except OSError:
            discard(temp_path)
            raise

    def install_temp(self, temp_path: str, file_uuid: str,
                     synced: bool | Future[None] = False) -> str:
        """Sync a temporary file (unless its writer did: ``synced``, or a Future of that sync
        to wait for), then rename it to the final name of ``file_uuid``.

        Returns the directory to sync (:meth:`sync_dir`) before the rename is durable.  On
        failure the temporary file is removed (:class:`StorageFullError` for ENOSPC/EDQUOT).
        """
        try:
            if isinstance(synced, Future):
                synced.result()  # raises the sync's OSError
            elif not synced:
                fd = os.open(temp_path, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            directory = self._rename(temp_path, file_uuid)
            if self.recent_cache_bytes > 0:
                self._recently_stored(self.path(file_uuid))
            return directory
        except OSError as exc:
            discard(temp_path)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError(exc.errno, "storage area is full") from exc
            raise

    def _rename(self, temp_path: str, file_uuid: str) -> str:
        """Move ``temp_path`` to the final name of ``file_uuid``; returns its directory."""
        final = self.path(file_uuid)
        directory = os.path.dirname(final)
        if os.path.dirname(temp_path) != directory:
            self._directory(file_uuid)
        try:
            os.rename(temp_path, final)
        except FileNotFoundError:
            if not os.path.exists(temp_path):
                raise
            # The directory was removed under us: create it again.
            self._dirs.discard(directory)
            os.makedirs(directory, exist_ok=True)
            os.rename(temp_path, final)
        return directory

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
                raise StorageFullError(exc.errno, "storage area is full") from exc
            raise
        return self.commit_temp(path, digest=fp.digest())

    def sync_dir(self, directory: str) -> None:
        """Fsync one directory of the area (makes the renames into it durable)."""
        _fsync_dir(directory)

    def remove(self, file_uuid: str) -> None:
        """Remove a stored file (missing files are fine)."""
        discard(self.path(file_uuid))

    def exists(self, file_uuid: str) -> bool:
        return os.path.exists(self.path(file_uuid))

    def iter_names(self) -> Iterable[tuple[str, str]]:
        """``(directory, name)`` of every file of the area's directories (stored files named
        by their uuid, and temporary files: see :func:`is_temp_name`); nothing is stat-ed."""
        for top in os.listdir(self.root):
            if top.startswith(".") or len(top) != 2:
                continue
            for sub in os.listdir(os.path.join(self.root, top)):
                directory = os.path.join(self.root, top, sub)
                if not os.path.isdir(directory):
                    continue
                for name in os.listdir(directory):
                    yield directory, name

    def iter_files(self) -> Iterable[tuple[str, float]]:
        """``(name, mtime)`` of every file of :meth:`iter_names`."""
        for directory, name in self.iter_names():
            try:
                yield name, os.stat(os.path.join(directory, name)).st_mtime
            except FileNotFoundError:
                continue

    def temp_files(self) -> list[str]:
        """Paths of every temporary file (those of the final directories, and the legacy
        ``.tmp`` folder's); walks the whole area."""
        out = [os.path.join(directory, name) for directory, name in self.iter_names()
               if is_temp_name(name)]
        if os.path.isdir(self.tmp):
            out += [os.path.join(self.tmp, name) for name in os.listdir(self.tmp)]
        return sorted(out)

    def clean_temp(self) -> int:
        """Remove leftovers of interrupted writes in the legacy ``.tmp`` folder; returns how
        many (those of the final directories go with :meth:`remove_orphans`)."""
        count = 0
        if os.path.isdir(self.tmp):
            for name in os.listdir(self.tmp):
                discard(os.path.join(self.tmp, name))
                count += 1
        return count

    def clean_temp_of(self, pid: int) -> int:
        """Remove the temporary files of process ``pid`` of this host (a worker that died:
        nothing of it can still be in progress); returns how many. Walks the whole area
        (run it in a thread)."""
        prefix, suffix, count = temp_prefix(pid), temp_suffix(pid), 0
        if os.path.isdir(self.tmp):
            for name in os.listdir(self.tmp):
                if name.startswith(prefix):
                    discard(os.path.join(self.tmp, name))
                    count += 1
        for directory, name in self.iter_names():
            if name.endswith(suffix):
                discard(os.path.join(directory, name))
                count += 1
        return count

    def remove_orphans(self, known: set[str], min_age: float = 0.0) -> list[str]:
        """Remove stored files the index does not know, temporary files included (older
        than ``min_age`` seconds); returns their names."""
        now = time.time()
        removed = []
        for file_uuid, mtime in list(self.iter_files()):
            if file_uuid not in known and now - mtime >= min_age:
                self.remove(file_uuid)
                removed.append(file_uuid)
        return removed


def new_checksum() -> Any:
    """A running checksum of a stored file (XXH3, 128 bits)."""
    return xxhash.xxh3_128()


def checksum_text(data: bytes) -> str:
    """The checksum of a stored file's content as the index keeps it."""
    return CHECKSUM_PREFIX + xxhash.xxh3_128_hexdigest(data)


def file_checksum(fp: BinaryIO, indexed: str | None = None) -> tuple[int, str]:
    """``(size, checksum)`` of a file read from its current position, in the algorithm of
    ``indexed`` (a checksum of the index: MD5 for files stored before XXH3, 32 hex digits
    without prefix), XXH3-128 by default."""
    legacy = indexed is not None and not indexed.startswith(CHECKSUM_PREFIX)
    digest = hashlib.md5(usedforsecurity=False) if legacy else new_checksum()
    size = 0
    while chunk := fp.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, ("" if legacy else CHECKSUM_PREFIX) + digest.hexdigest()


def drop_from_cache(path: str) -> None:
    """Drop a stored file's pages from the OS page cache (advice only; a file gone or never
    renamed to ``path`` is skipped). Its data is on the disk: nothing is lost."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # not on every OS
        pass
    finally:
        os.close(fd)


def _sync_and_close(fp: BinaryIO) -> None:
    """Sync and close a temporary file (a background sync of :meth:`TempFile.close`)."""
    try:
        os.fdatasync(fp.fileno())
    finally:
        fp.close()


def discard(path: str) -> None:
    """Remove a file if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
