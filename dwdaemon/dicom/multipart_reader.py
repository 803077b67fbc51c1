"""Streaming ``multipart/related`` parser (RFC 2046 / RFC 2387), pure and incremental.

The parser is a push parser: feed it bytes as they arrive (from a spooled file read in
chunks, or from a network stream) and it hands every part's body to a *sink* created by a
callback when the part's headers are complete.  Memory does not grow with part size: only
the part headers and a tail shorter than the boundary delimiter are ever buffered.

Example
-------
>>> parts = []
>>> class Sink(list):
...     def write(self, data): self.append(data)
...     def close(self): parts.append(b"".join(self))
>>> p = MultipartParser(b"XX", lambda headers: Sink())
>>> p.feed(b"--XX\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello\\r\\n--XX--\\r\\n")
>>> p.close()
>>> parts
[b'hello']
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, TypeVar

from dwdaemon.dicom.mediatypes import parse_media_type

__all__ = [
    "MultipartError",
    "MultipartParser",
    "PartSink",
    "find_bytes",
    "iter_file_parts",
    "parse_content_type",
]

#: Largest header section accepted for one part (bytes).
MAX_HEADER_BYTES = 64 * 1024

#: Searches over at least this many bytes use the C library's ``memmem`` (see :func:`find_bytes`).
MEMMEM_MIN = 32 * 1024

_PREAMBLE, _AFTER_DELIM, _HEADERS, _BODY, _EPILOGUE, _FAILED = range(6)
_LWSP = b" \t"


class MultipartError(ValueError):
    """The body is not a well-formed multipart body."""


class PartSink(Protocol):
    """Receives the body of one part; ``abort()`` is optional (called on a broken body)."""

    def write(self, data: bytes) -> object:
        """Receive the next chunk of the part body."""

    def close(self) -> object:
        """The part body is complete."""


class _Discard:
    """Sink used when ``on_part`` returns ``None``: drops the part body."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _load_memmem() -> Any:
    """The C library's ``memmem`` through ctypes, or ``None`` where there is none."""
    try:
        memmem = ctypes.CDLL(None).memmem
    except (OSError, AttributeError):  # pragma: no cover - not a glibc/musl/BSD libc
        return None
    memmem.restype = ctypes.c_void_p
    memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return memmem


_memmem = _load_memmem()


def find_bytes(buf: bytes, needle: bytes, start: int) -> int:
    """``buf.find(needle, start)``, with the C library's ``memmem`` for long searches.

    CPython's ``bytes.find`` takes its two-way path for a long needle such as a boundary
    delimiter: about 4x slower than glibc's ``memmem`` on a part of 512 KB (and it holds the
    GIL, where ctypes releases it).
    """
    n = len(buf)
    if _memmem is None or n - start < MEMMEM_MIN or type(buf) is not bytes or start < 0:
        return buf.find(needle, start)
    base = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
    hit = _memmem(base + start, n - start, needle, len(needle))
    return hit - base if hit else -1


def parse_content_type(value: str | bytes | None) -> tuple[str, dict[str, str]]:
    """Parse a Content-Type value into ``(media_type, params)`` (see
    :func:`dwdaemon.dicom.mediatypes.parse_media_type`: lower-cased type, parameters quoted or
    not, in any order; a missing value gives ``("", {})``)."""
    return parse_media_type(value)


def _parse_headers(block: bytes) -> dict[str, str]:
    """Parse a part header block (lines without the final empty line)."""
    headers: dict[str, str] = {}
    last: str | None = None
    for raw in block.split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        if not line:
            continue
        if line[0] in " \t" and last is not None:
            headers[last] = headers[last] + " " + line.strip()
            continue
        name, sep, val = line.partition(":")
        if not sep:
            raise MultipartError(f"malformed part header line: {line[:80]!r}")
        last = name.strip().lower()
        val = val.strip()
        if last in headers:
            headers[last] = headers[last] + ", " + val
        else:
            headers[last] = val
    return headers


class MultipartParser:
    """Incremental ``multipart/related`` parser.

    Parameters
    ----------
    boundary
        The boundary parameter of the body's Content-Type (without the leading ``--``).
    on_part
        Called with the part's headers (``dict`` with lower-case names) when they are
        complete; returns the sink that receives the part body (``None`` discards it).
    max_header_bytes
        Limit on the header section of one part.
    zero_copy
        Hand sinks ``memoryview`` slices of the fed data instead of ``bytes`` copies (they
        stay valid: the data is immutable).

    Notes
    -----
    Handles a preamble or a leading CRLF before the first boundary, transport padding after
    boundaries, case-insensitive part headers, parts with or without ``Content-Length`` (the
    boundary frames the part either way), boundaries split across ``feed()`` calls and an
    epilogue after the closing boundary.  ``close()`` raises :class:`MultipartError` when the
    body is truncated, has no closing boundary or holds no part.
    """

    def __init__(
        self,
        boundary: bytes | str,
        on_part: Callable[[dict[str, str]], PartSink | None],
        max_header_bytes: int = MAX_HEADER_BYTES,
        zero_copy: bool = False,
    ) -> None:
        if isinstance(boundary, str):
            boundary = boundary.encode("latin-1")
        if not boundary or len(boundary) > 200:
            raise MultipartError("a multipart boundary must be 1 to 200 characters")
        self._boundary = boundary
        self._on_part = on_part
        self._max_header = max_header_bytes
        self._zero_copy = zero_copy
        # The first boundary may open the body: pretend a line break precedes it.
        self._first = b"\n--" + boundary
        self._delim = b"\r\n--" + boundary
        self._state = _PREAMBLE
        self._buf = b"\r\n"
        self._sink: PartSink | None = None
        self._error: MultipartError | None = None
        self.parts = 0
        """Number of parts whose body was completed."""
        self.bytes_fed = 0
        """Total number of bytes fed."""

    @property
    def done(self) -> bool:
        """True once the closing boundary has been seen."""
        return self._state == _EPILOGUE

    def feed(self, data: bytes) -> None:
        """Consume the next chunk of the body."""
        if self._state == _FAILED:
            raise MultipartError(str(self._error))
        self.bytes_fed += len(data)
        if self._state == _EPILOGUE:
            return
        tail = self._buf
        # Avoid joining a big chunk to the kept tail: the tail only matters if a delimiter
        # starts in it.
        if (tail and self._state == _BODY and len(data) >= len(self._delim)
                and (tail + data[: len(self._delim)]).find(self._delim) < 0):
            assert self._sink is not None
            self._sink.write(tail)
            tail = b""
        buf = tail + data if tail else data
        try:
            self._buf = self._run(buf)
        except MultipartError as e:
            self._fail(e)
            raise

    def close(self) -> None:
        """Signal the end of the body; raise :class:`MultipartError` if it is incomplete."""
        if self._state == _FAILED:
            raise MultipartError(str(self._error))
        if self._state == _EPILOGUE:
            if self.parts == 0:
                self._fail(MultipartError("multipart body holds no part"))
                raise MultipartError("multipart body holds no part")
            return
        if self._state == _PREAMBLE:
            err = MultipartError("no multipart boundary found in the body")
        elif self._state in (_BODY, _HEADERS):
            err = MultipartError("truncated multipart body: missing closing boundary")
        else:
            err = MultipartError("missing closing boundary")
        self._fail(err)
        raise err

    def abort(self) -> None:
        """Stop parsing; the open part's sink (if any) is aborted."""
        if self._state not in (_EPILOGUE, _FAILED):
            self._fail(MultipartError("parsing aborted"))

    # -- internals --------------------------------------------------------------------------

    def _fail(self, err: MultipartError) -> None:
        self._state = _FAILED
        self._error = err
        self._buf = b""
        sink, self._sink = self._sink, None
        if sink is not None:
            abort = getattr(sink, "abort", None)
            if abort is not None:
                abort()

    def _run(self, buf: bytes) -> bytes:
        """Advance the state machine over ``buf``; return the unconsumed tail."""
        view = memoryview(buf) if self._zero_copy else None
        pos = 0
        n = len(buf)

        def chunk(a: int, b: int) -> Any:
            return view[a:b] if view is not None else buf[a:b]

        while True:
            state = self._state
            if state == _BODY:
                delim = self._delim
                idx = find_bytes(buf, delim, pos)
                sink = self._sink
                assert sink is not None
                if idx < 0:
                    keep = len(delim) - 1
                    if n - pos > keep:
                        # Keep only a tail that could start a split delimiter.
                        j = buf.find(b"\r", n - keep)
                        if j < 0:
                            sink.write(chunk(pos, n) if pos else (view if view is not None
                                                                    else buf))
                            return b""
                        sink.write(chunk(pos, j))
                        return bytes(buf[j:])
                    return bytes(buf[pos:])
                if idx > pos:
                    sink.write(chunk(pos, idx))
                self._sink = None
                sink.close()
                self.parts += 1
                pos = idx + len(delim)
                self._state = _AFTER_DELIM
            elif state == _AFTER_DELIM:
                # After a delimiter: "--" closes, else transport padding then CRLF.
                if n - pos < 2:
                    return bytes(buf[pos:])
                if buf[pos:pos + 2] == b"--":
                    self._state = _EPILOGUE
                    return b""
                i = pos
                while i < n and buf[i] in _LWSP:
                    i += 1
                if i == n:
                    if n - pos > 1024:
                        raise MultipartError("too much padding after a multipart boundary")
                    return bytes(buf[pos:])
                if buf[i] == 0x0A:  # bare LF, tolerated
                    i += 1
                elif buf[i] == 0x0D:
                    if i + 1 == n:
                        return bytes(buf[pos:])
                    if buf[i + 1] != 0x0A:
                        raise MultipartError("malformed multipart boundary line")
                    i += 2
                else:
                    raise MultipartError("malformed multipart boundary line")
                pos = i
                self._state = _HEADERS
            elif state == _HEADERS:
                if buf[pos:pos + 2] == b"\r\n":
                    block, pos = b"", pos + 2
                elif buf[pos:pos + 1] == b"\n":
                    block, pos = b"", pos + 1
                else:
                    if n - pos < 2:
                        return bytes(buf[pos:])
                    limit = pos + self._max_header + 4
                    idx = buf.find(b"\r\n\r\n", pos, limit)
                    step = 4
                    lf = buf.find(b"\n\n", pos, limit)
                    if lf >= 0 and (idx < 0 or lf < idx):
                        idx, step = lf, 2
                    if idx < 0:
                        if n - pos > self._max_header:
                            raise MultipartError("multipart part headers too large")
                        return bytes(buf[pos:])
                    if idx - pos > self._max_header:
                        raise MultipartError("multipart part headers too large")
                    block, pos = bytes(buf[pos:idx]), idx + step
                headers = _parse_headers(block)
                sink = self._on_part(headers)
                self._sink = sink if sink is not None else _Discard()
                self._state = _BODY
            elif state == _PREAMBLE:
                pat = self._first
                idx = buf.find(pat, pos)
                while idx >= 0:
                    after = buf[idx + len(pat): idx + len(pat) + 2]
                    if len(after) < 2:
                        # Cannot decide yet: keep from the candidate on.
                        return bytes(buf[idx:])
                    if after == b"--" or after[:1] in (b"\r", b"\n", b" ", b"\t"):
                        break
                    idx = buf.find(pat, idx + 1)  # "--boundaryX...": not a delimiter
                if idx < 0:
                    keep = len(pat) - 1
                    return bytes(buf[-keep:]) if n - pos > keep else bytes(buf[pos:])
                pos = idx + len(pat)
                if buf[pos:pos + 2] == b"--":
                    # Closing boundary straight away: a body without parts.
                    self._state = _EPILOGUE
                    return b""
                self._state = _AFTER_DELIM
            else:  # _EPILOGUE
                return b""


_S = TypeVar("_S", bound=PartSink)


def iter_file_parts(
    fileobj: IO[bytes],
    boundary: bytes | str,
    sink_factory: Callable[[dict[str, str]], _S],
    chunk_size: int = 1 << 20,
) -> Iterator[tuple[dict[str, str], _S]]:
    """Parse a multipart body from a file, yielding ``(headers, sink)`` per completed part.

    Each part is yielded once its sink has been closed, before the rest of the file is read,
    so a consumer can process and discard parts one by one.  Raises :class:`MultipartError`
    (after yielding the complete parts before the fault) when the body is malformed.
    """
    completed: list[tuple[dict[str, str], _S]] = []

    def on_part(headers: dict[str, str]) -> PartSink:
        sink = sink_factory(headers)
        return _Recorder(headers, sink, completed)

    parser = MultipartParser(boundary, on_part)
    try:
        while True:
            chunk = fileobj.read(chunk_size)
            if not chunk:
                break
            parser.feed(chunk)
            while completed:
                yield completed.pop(0)
            if parser.done:
                break
        parser.close()
    except MultipartError:
        while completed:
            yield completed.pop(0)
        raise
    while completed:
        yield completed.pop(0)


class _Recorder:
    """Wraps a sink to record it as complete when closed."""

    __slots__ = ("_headers", "_sink", "_done")

    def __init__(self, headers: dict[str, str], sink: PartSink, done: list) -> None:
        self._headers = headers
        self._sink = sink
        self._done = done

    def write(self, data: bytes) -> None:
        self._sink.write(data)

    def close(self) -> None:
        self._sink.close()
        self._done.append((self._headers, self._sink))

    def abort(self) -> None:
        abort = getattr(self._sink, "abort", None)
        if abort is not None:
            abort()
