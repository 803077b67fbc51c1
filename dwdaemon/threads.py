"""Bounded thread pools for blocking work (parsing, disk, database), as a Twisted service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


def the_reactor(reactor: Any = None) -> Any:
    """``reactor`` if one was given (tests pass a fake), else Twisted's global reactor."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        return default_reactor
    return reactor


class ThreadPools(Service):
    """The pools: ``parse`` (pydicom), ``io`` (files), ``ingest`` (STOW-RS bodies: multipart
    parsing, part files, their DICOM parse), ``db_read``, ``db_write`` and ``pixels``.

    ``ingest`` has two threads: a STOW part is Python work between short blocking calls
    (write, fdatasync) that release the GIL, and a third thread of one process only adds GIL
    hand-offs (measured at 4 clients x 50 instances with two worker processes: 9% less CPU per
    instance with two threads than with four); ingest grows with cores through ``Workers``.

    ``db_write`` has a single thread: index writes are serialised in-process, which keeps SQLite
    free of lock contention. With ``synchronous=True`` (unit tests) work runs inline.
    """

    def __init__(self, reactor: Any = None, parse: int = 4, io: int = 4, db_read: int = 4,
                 synchronous: bool = False, pixels: int = 2, ingest: int = 2) -> None:
        reactor = the_reactor(reactor)
        self.reactor = reactor
        self.synchronous = synchronous
        self.pools = {
            "parse": ThreadPool(1, parse, "dwdaemon-parse"),
            "io": ThreadPool(1, io, "dwdaemon-io"),
            "ingest": ThreadPool(1, ingest, "dwdaemon-ingest"),
            "db_read": ThreadPool(1, db_read, "dwdaemon-db-read"),
            "db_write": ThreadPool(1, 1, "dwdaemon-db-write"),
            # Rendering, transcoding, decoding: CPU-heavy, so few at once (MaximumPixelJobs).
            "pixels": ThreadPool(1, max(1, pixels), "dwdaemon-pixels"),
        }
        self._started = False

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self) -> None:
        super().stopService()
        self.stop()

    def start(self) -> None:
        if not self._started and not self.synchronous:
            for pool in self.pools.values():
                pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            for pool in self.pools.values():
                pool.stop()
            self._started = False

    def run(self, pool: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run ``fn(*args, **kwargs)`` in the named pool; the Deferred fires on the reactor."""
        if self.synchronous:
            return maybeDeferred(fn, *args, **kwargs)
        if not self._started:
            self.start()
        return deferToThreadPool(self.reactor, self.pools[pool], fn, *args, **kwargs)

    def parse(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("parse", fn, *args, **kwargs)

    def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("io", fn, *args, **kwargs)

    def ingest(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("ingest", fn, *args, **kwargs)

    def db_read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("db_read", fn, *args, **kwargs)

    def pixels(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("pixels", fn, *args, **kwargs)

    def backlog(self, pool: str) -> int:
        """Work items of ``pool`` waiting for a thread (0 when running inline)."""
        if self.synchronous or not self._started:
            return 0
        return self.pools[pool].q.qsize()

    def db_write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return self.run("db_write", fn, *args, **kwargs)
