"""The embedded index: SQLite in WAL mode, one connection per thread.

Write transactions hold an exclusive ``flock`` on ``<index>.write-lock`` (one open file per
thread): writers of every thread and every process (worker processes, the importer) queue in the
kernel instead of polling on ``SQLITE_BUSY``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dwdaemon.store.index import schema, study_summary
from dwdaemon.store.index.sql import DUPLICATE_SOPS, SqlIndex, warn_duplicate_sops


class SqliteIndex(SqlIndex):
    """SQLite back-end. Reads run concurrently (WAL); writes are serialised by a ``flock``."""

    backend_name = "SQLite"

    def __init__(self, directory: str, filename: str = "index.sqlite") -> None:
        self.path = os.path.join(directory, filename)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock_files: list[int] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the database and its schema if needed."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        conn = self.connection()
        with self._writer():
            self._create_schema(conn)
        study_summary.fill_missing(self)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for statement in schema.ddl(self.dialect):
            conn.execute(statement)
        try:
            conn.execute(schema.UNIQUE_SOP)
        except sqlite3.IntegrityError:
            warn_duplicate_sops(self.fetch_all(DUPLICATE_SOPS))
        self.execute(conn, self.dialect.insert_missing("properties", ("name", "value"), "name"),
                     ("schema_version", str(schema.SCHEMA_VERSION)))
        self.migrate(conn.cursor())

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):  # its thread is gone
                    conn.close()
            self._all.clear()
            for fd in self._lock_files:
                os.close(fd)
            self._lock_files.clear()
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # Statement journals (savepoints of a group commit) in memory, not a new file in
            # /var/tmp for every batch.
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """Hold the cross-process write lock (blocking: called in a database thread)."""
        fd = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = os.open(self.path + ".write-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._local.lock_fd = fd
            with self._lock:
                self._lock_files.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several writes of this thread (group commit).

        Inside, each :meth:`transaction` is a savepoint: a failed write is rolled back alone.
        """
        conn = self.connection()
        with self._writer():
            conn.execute("BEGIN IMMEDIATE")
            self._local.batch = True
            try:
                yield
            except BaseException:
                self._local.batch = False
                conn.execute("ROLLBACK")
                raise
            self._local.batch = False
            conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        conn = self.connection()
        cur = conn.cursor()
        if getattr(self._local, "batch", False):
            cur.execute("SAVEPOINT write")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK TO SAVEPOINT write")
                cur.execute("RELEASE SAVEPOINT write")
                raise
            else:
                cur.execute("RELEASE SAVEPOINT write")
            finally:
                cur.close()
            return
        with self._writer():
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()
