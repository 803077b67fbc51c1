"""Stream (part of) a stored file to a request: chunks read in the io pool, flow-controlled."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.threads import ThreadPools

CHUNK = 256 * 1024


def json_body(request: IRequest, value: Any, status: int = 200,
              content_type: str = "application/json") -> bytes:
    """Serialise ``value`` as the response body (pretty, as Orthanc answers)."""
    body = json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader("Content-Type", content_type + ("; charset=utf-8"
                                                      if content_type.endswith("json") else ""))
    request.setHeader("Content-Length", str(len(body)))
    return body


class _Pause:
    """A push producer registered on the request that tracks flow control."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self.resumed: Deferred[None] | None = None

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted interface
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted interface
        self.paused = False
        if self.resumed is not None:
            d, self.resumed = self.resumed, None
            d.callback(None)

    def stopProducing(self) -> None:  # noqa: N802 - Twisted interface
        self.stopped = True
        self.resumeProducing()

    def wait(self) -> Deferred[None] | None:
        if self.paused and not self.stopped:
            self.resumed = Deferred()
            return self.resumed
        return None


class StreamWriter:
    """Write chunks to a request while honouring back-pressure; stops when the client leaves.

    Usage: ``writer = StreamWriter(request); yield writer.write(b"..."); writer.finish()``.
    """

    def __init__(self, request: IRequest) -> None:
        self.request = request
        self._flow = _Pause()
        self.gone = False
        request.registerProducer(self._flow, True)
        request.notifyFinish().addErrback(self._lost)

    def _lost(self, _failure: Any) -> None:
        self.gone = True
        self._flow.stopProducing()

    @property
    def stopped(self) -> bool:
        return self.gone or self._flow.stopped

    def write(self, data: bytes) -> Deferred[None] | None:
        """Write ``data``; returns a Deferred to wait on when the client is slow."""
        if self.stopped:
            return None
        self.request.write(data)
        return self._flow.wait()

    def finish(self) -> None:
        self.request.unregisterProducer()
        if not self.gone:
            self.request.finish()


def _read(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as fp:
        fp.seek(offset)
        return fp.read(size)


@inlineCallbacks
def send_range(writer: StreamWriter, pools: ThreadPools, path: str, offset: int = 0,
               length: int | None = None) -> Any:
    """Send ``length`` bytes of ``path`` from ``offset`` (to the end when None)."""
    position = offset
    end = None if length is None else offset + length
    while not writer.stopped:
        size = CHUNK if end is None else min(CHUNK, end - position)
        if size <= 0:
            break
        chunk = yield pools.io(_read, path, position, size)
        if not chunk:
            break
        position += len(chunk)
        wait = writer.write(chunk)
        if wait is not None:
            yield wait
    return position - offset


@inlineCallbacks
def send_file(request: IRequest, pools: ThreadPools, path: str, content_type: str,
              size: int, headers: dict[str, str] | None = None) -> Any:
    """Stream a whole file as the response body; fires when done (or the client left)."""
    request.setHeader("Content-Type", content_type)
    request.setHeader("Content-Length", str(size))
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    writer = StreamWriter(request)
    try:
        yield send_range(writer, pools, path)
    finally:
        writer.finish()
