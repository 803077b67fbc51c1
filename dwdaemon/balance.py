"""Connections spread evenly over worker processes that accept on one shared socket.

Every worker's reactor is woken when a connection arrives on the shared listening socket, and
Twisted's accept loop takes every pending connection at once: the first worker awake took all
four keep-alive connections of a 4-client STOW run, and the other worker idled (measured: 4/0
or 3/1 in each of three runs). Keep-alive clients stay on the worker that accepted them, so the
imbalance lasts.

Each worker publishes its count of open connections in a small memory area shared with the
other workers (a file descriptor the parent passes, see :func:`shared_counts_fd`). Before
accepting, a worker that holds more connections than the least loaded other worker steps aside
for a few milliseconds (that worker, woken by the same connection, takes it); a connection is
never kept waiting more than :data:`MAX_WAIT` (a stalled worker does not starve new clients).
Connections are accepted one at a time, so the balance is checked for each.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ABSENT", "MAX_WAIT", "RETRY", "BalancedAccept", "ConnectionCounts", "mark_absent",
           "shared_counts_fd"]

#: Longest time (seconds) a busier worker steps aside before accepting a pending connection.
MAX_WAIT = 0.05
#: Seconds between two looks at a pending connection while stepping aside.
RETRY = 0.003

_SLOT = struct.Struct("=q")
#: The count of a worker that is not serving (not started yet, or dead): never the least.
ABSENT = 1 << 62


def shared_counts_fd(workers: int) -> int:
    """A new file descriptor of ``workers`` counters, to share with the workers (anonymous
    memory where the OS has it, else an unlinked temporary file); every worker is
    :data:`ABSENT` until it starts (:class:`ConnectionCounts` publishes 0)."""
    size = max(1, workers) * _SLOT.size
    try:
        fd = os.memfd_create("dwdaemon-connections", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        with tempfile.TemporaryFile() as fp:
            fd = os.dup(fp.fileno())
    os.ftruncate(fd, size)
    for slot in range(max(1, workers)):
        mark_absent(fd, slot)
    return fd


def mark_absent(fd: int, slot: int) -> None:
    """Say that worker ``slot`` serves nothing (it ended): the others stop stepping aside for
    it (the parent calls this; the worker's replacement publishes its own count)."""
    os.pwrite(fd, _SLOT.pack(ABSENT), slot * _SLOT.size)


class ConnectionCounts:
    """The open connections of each worker, in memory shared by the workers (mapped from
    ``fd``); this worker writes slot ``slot`` only."""

    def __init__(self, fd: int, workers: int, slot: int) -> None:
        self.workers = workers
        self.slot = slot
        self._map = mmap.mmap(fd, workers * _SLOT.size)
        self.set(0)

    def set(self, count: int) -> None:
        """Publish this worker's count."""
        _SLOT.pack_into(self._map, self.slot * _SLOT.size, count)

    def get(self, slot: int) -> int:
        return _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]

    def least_other(self) -> int | None:
        """The smallest count of the other workers (None when there is no other)."""
        others = [self.get(s) for s in range(self.workers) if s != self.slot]
        return min(others) if others else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._map.close()


class BalancedAccept:
    """Wraps an adopted listening port's ``doRead``: accept one connection at a time, and
    step aside while this worker has more open connections (``open_count()``) than the least
    loaded other worker, for at most :data:`MAX_WAIT` per pending connection."""

    def __init__(self, port: Any, counts: ConnectionCounts, open_count: Callable[[], int],
                 reactor: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.counts = counts
        self.open_count = open_count
        self.reactor = reactor
        self.clock = clock
        self._accept = port.doRead
        self._waiting_since: float | None = None
        self._retry: Any = None
        self.stepped_aside = 0
        port.doRead = self.do_read

    def do_read(self) -> Any:
        least = self.counts.least_other()
        if least is not None and self.open_count() > least:
            now = self.clock()
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < MAX_WAIT:
                self.stepped_aside += 1
                self.port.stopReading()
                if self._retry is None or not self._retry.active():
                    self._retry = self.reactor.callLater(RETRY, self._look_again)
                return None
        self._waiting_since = None
        self.port.numberAccepts = 1
        result = self._accept()
        self.port.numberAccepts = 1  # Twisted grows it after a full loop
        return result

    def _look_again(self) -> None:
        """Listen again: a connection still pending wakes ``doRead``; when another worker
        took it, the next connection starts a new wait."""
        self._retry = None
        if not self.port.connected:
            return
        if not _readable(self.port.fileno()):
            self._waiting_since = None
        self.port.startReading()

    def stop(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def connection_count_changed(self) -> None:
        """Publish this worker's count (call after each connection made or lost)."""
        self.counts.set(self.open_count())


def _readable(fd: int) -> bool:
    """Whether a listening socket has a connection waiting (no wait)."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False
