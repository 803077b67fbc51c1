"""Streaming response bodies: files, file ranges and multipart/related bodies.

A :class:`BodyProducer` writes a sequence of pieces to a request: plain ``bytes`` (headers,
separators) written as they come, and :class:`Part` sources read in chunks in a thread pool
(file slices, or bytes computed in a thread such as a transcoded instance). It is a push
producer registered on the request, so Twisted pauses it when the client reads slowly: memory
stays at about one chunk per request whatever the size of the study. When the client goes
away (``stopProducing`` or cancellation of the returned Deferred, which Klein does on
disconnect) it closes its file and stops without logging errors.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dwdaemon.dicom import multipart

log = Logger()

T = TypeVar("T")
#: Runs a blocking callable in a thread pool and returns a Deferred of its result.
Runner = Callable[..., Deferred]

CHUNK_SIZE = 1 << 20


def run_inline(func: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    """A :data:`Runner` that runs in the calling thread (tests only)."""
    try:
        return succeed(func(*args, **kwargs))
    except BaseException:
        return fail(Failure())


class Part(Protocol):
    """A body source read in a worker thread: ``open``, ``read``, ``close``.

    ``read(size)`` returns fewer than ``size`` bytes only at the end of the part.
    """

    def open(self) -> None: ...

    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class FilePart:
    """Bytes of a file: the whole file, or a list of ``(offset, length)`` ranges in order."""

    def __init__(self, path: str | os.PathLike[str],
                 ranges: Iterable[tuple[int, int]] | None = None,
                 size: int | None = None) -> None:
        self.path = path
        self.ranges = list(ranges) if ranges is not None else None
        #: Bytes this part yields, when known without touching the disk.
        self.size = sum(length for _, length in self.ranges) if self.ranges is not None \
            else size
        self._file: io.BufferedReader | None = None
        self._index = 0
        self._left = -1

    def open(self) -> None:
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed when the producer ends
        if self.ranges is not None:
            self._index = 0
            self._seek_range()

    def _seek_range(self) -> None:
        assert self._file is not None and self.ranges is not None
        if self._index < len(self.ranges):
            offset, length = self.ranges[self._index]
            self._file.seek(offset)
            self._left = length
        else:
            self._left = 0

    def read(self, size: int) -> bytes:
        assert self._file is not None
        if self.ranges is None:
            return self._file.read(size)
        chunks: list[bytes] = []
        while size > 0 and self._index < len(self.ranges):
            if self._left == 0:
                self._index += 1
                self._seek_range()
                continue
            data = self._file.read(min(size, self._left))
            if not data:
                raise OSError(f"{self.path}: file shorter than its stored offsets")
            chunks.append(data)
            self._left -= len(data)
            size -= len(data)
        return b"".join(chunks)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BytesPart:
    """Bytes already in memory (small answers, rendered images)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size: int | None = len(data)
        self._buf: io.BytesIO | None = None

    def open(self) -> None:
        self._buf = io.BytesIO(self._data)

    def read(self, size: int) -> bytes:
        assert self._buf is not None
        return self._buf.read(size)

    def close(self) -> None:
        self._buf = None


class ComputedPart:
    """Bytes computed in the worker thread when the part is opened (e.g. transcoding)."""

    def __init__(self, compute: Callable[[], bytes]) -> None:
        self._compute = compute
        self.size: int | None = None
        self._buf: io.BytesIO | None = None

    def open(self) -> None:
        self._buf = io.BytesIO(self._compute())

    def read(self, size: int) -> bytes:
        assert self._buf is not None
        return self._buf.read(size)

    def close(self) -> None:
        self._buf = None


class IteratorPart:
    """Bytes of an iterator created and consumed in the worker thread (streamed conversion):
    one chunk in memory at a time."""

    def __init__(self, make: Callable[[], Iterator[bytes]]) -> None:
        self._make = make
        self.size: int | None = None
        self._chunks: Iterator[bytes] | None = None
        self._buf = bytearray()

    def open(self) -> None:
        self._chunks = self._make()
        self._buf = bytearray()

    def read(self, size: int) -> bytes:
        assert self._chunks is not None
        while len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._chunks = None
        self._buf = bytearray()


Piece = bytes | FilePart | BytesPart | ComputedPart | IteratorPart


def multipart_pieces(boundary: str, parts: Iterable[tuple[str, list[tuple[str, str]], Piece]]
                     ) -> Iterator[Piece]:
    """Pieces of a multipart/related body from ``(content type, headers, source)`` triples."""
    for content_type, headers, source in parts:
        yield multipart.part_header(boundary, content_type, headers)
        yield source
        yield multipart.part_separator()
    yield multipart.closing(boundary)


def body_length(pieces: Iterable[Piece]) -> int | None:
    """Total length of ``pieces`` when every part knows its size, else None (chunked)."""
    total = 0
    for piece in pieces:
        if isinstance(piece, bytes | bytearray):
            total += len(piece)
        else:
            size = getattr(piece, "size", None)
            if size is None:
                return None
            total += size
    return total


@implementer(IPushProducer)
class BodyProducer:
    """Write ``pieces`` to ``request``; :meth:`start` returns a Deferred fired when done.

    Blocking reads run through ``run`` (a thread pool runner). The Deferred fires with None at
    the end or when the client disconnected; it fails if a part cannot be read (the
    connection is then closed, as the status line has already been sent).
    """

    def __init__(self, request: Any, pieces: Iterable[Piece], run: Runner,
                 chunk_size: int = CHUNK_SIZE, pixel_run: Runner | None = None) -> None:
        self._request = request
        self._pieces = iter(pieces)
        self._run = run
        #: Runner of the computed parts (pixel work: the bounded ``pixels`` pool).
        self._pixel_run = pixel_run or run
        self._chunk_size = chunk_size
        self._paused = False
        self._stopped = False
        self._resume: Deferred[None] | None = None
        self._current: Part | None = None
        self._in_flight = False
        self._done: Deferred[None] = Deferred(self._cancel)
        self.bytes_written = 0

    # IPushProducer
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._resume is not None:
            waiting, self._resume = self._resume, None
            waiting.callback(None)

    def stopProducing(self) -> None:
        """The client went away: stop quietly."""
        self._stop()

    def _cancel(self, _d: Deferred[None]) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._unregister()
        if not self._in_flight:  # else closed when the worker's read returns
            self._close_current()
        if self._resume is not None:
            waiting, self._resume = self._resume, None
            waiting.callback(None)
        if not self._done.called:
            self._done.callback(None)

    def _unregister(self) -> None:
        """Detach from the request (also on disconnect: a later finish() must not find us)."""
        if getattr(self._request, "producer", self) is None:
            return
        try:
            self._request.unregisterProducer()
        except AttributeError:  # the channel is already gone
            if hasattr(self._request, "producer"):
                self._request.producer = None

    def _close_current(self) -> None:
        part, self._current = self._current, None
        if part is not None:
            # Closing a file is cheap; do it here so no handle outlives the request.
            with contextlib.suppress(OSError):
                part.close()

    def start(self) -> Deferred[None]:
        """Register on the request and begin writing."""
        self._request.registerProducer(self, True)
        notify = getattr(self._request, "notifyFinish", None)
        if notify is not None:
            notify().addErrback(lambda _f: self._stop())
        self._step()
        return self._done

    # the loop --------------------------------------------------------------------------
    def _step(self, _ignored: object = None) -> None:
        while not self._stopped:
            if self._paused:
                self._resume = Deferred()
                self._resume.addCallback(self._step)
                return
            if self._current is not None:
                self._in_flight = True
                self._run(self._current.read, self._chunk_size).addCallbacks(
                    self._got_chunk, self._failed)
                return
            try:
                piece = next(self._pieces)
            except StopIteration:
                self._finish()
                return
            except Exception:
                self._failed(Failure())
                return
            if isinstance(piece, bytes | bytearray):
                self._write(bytes(piece))
                continue
            self._current = piece
            self._in_flight = True
            run = self._pixel_run if isinstance(piece, ComputedPart) else self._run
            run(self._open_and_read, piece).addCallbacks(self._got_chunk, self._failed)
            return

    def _open_and_read(self, part: Part) -> bytes:
        part.open()
        return part.read(self._chunk_size)

    def _got_chunk(self, chunk: bytes) -> None:
        self._in_flight = False
        if self._stopped:
            self._close_current()
            return
        if chunk:
            self._write(chunk)
        if len(chunk) < self._chunk_size:  # parts only read short at their end
            self._close_current()
        self._step()

    def _write(self, data: bytes) -> None:
        if data:
            self.bytes_written += len(data)
            self._request.write(data)

    def _finish(self) -> None:
        self._stopped = True
        self._unregister()
        if not self._done.called:
            self._done.callback(None)

    def _failed(self, failure: Failure) -> None:
        self._in_flight = False
        if self._stopped:
            self._close_current()
            return
        self._stopped = True
        self._close_current()
        log.failure("streaming a response failed", failure)
        self._unregister()
        transport = getattr(getattr(self._request, "channel", None), "transport", None)
        if transport is not None and self.bytes_written:
            transport.abortConnection()
        if not self._done.called:
            if self.bytes_written:  # status already sent: the aborted connection tells
                self._done.callback(None)
            else:
                self._done.errback(failure)


def stream(request: Any, pieces: Iterable[Piece], run: Runner,
           chunk_size: int = CHUNK_SIZE, sized: bool = False,
           pixel_run: Runner | None = None) -> Deferred[None]:
    """Stream ``pieces`` to ``request``; the route returns this Deferred.

    With ``sized``, ``pieces`` (then a list) sets ``Content-Length`` when all sizes are known,
    which spares the client a chunked decoding.
    """
    if sized:
        pieces = list(pieces)
        length = body_length(pieces)
        if length is not None:
            request.setHeader("Content-Length", str(length))
    return BodyProducer(request, pieces, run, chunk_size, pixel_run).start()
