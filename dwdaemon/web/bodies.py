"""Request bodies: spooling to disk and the ``MaximumRequestSize`` limit (413).

Twisted spools request bodies of unknown length or over 100 KB to a temporary file, so
a body never sits in memory.  :func:`limited_request_class` builds a
:class:`twisted.web.server.Request` subclass that, once the declared ``Content-Length`` or
the count of received bytes (chunked uploads) exceeds the limit, answers ``413`` straight
away, stops storing the body (the rest is read and dropped, so the client sees the answer
instead of a reset connection) and closes the connection when the body ends, or after
``MAX_DRAIN`` dropped bytes.
"""

from __future__ import annotations

import io
import json
import re
from typing import IO

from twisted.web import server

__all__ = ["DiscardFile", "limited_request_class", "rewind"]


#: Bodies declared this small are kept in memory instead of a temporary file.
MEMORY_BODY = 1024 * 1024

#: Socket read size while a big body arrives (Twisted's default is 64 KiB).
READ_SIZE = 512 * 1024

#: Bytes of a refused body read (and dropped) before the connection is closed anyway.
MAX_DRAIN = 64 * 1024 * 1024


class DiscardFile:
    """A file-like object that drops writes (stands in for the body of a refused request)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _payload_too_large(limit: int, headers: list[tuple[str, str]] | None = None) -> bytes:
    body = json.dumps({
        "HttpError": "Request Entity Too Large",
        "HttpStatus": 413,
        "Message": "Request entity too large",
        "Details": f"the request body exceeds MaximumRequestSize ({limit // (1024 * 1024)} MB)",
    }).encode()
    head = (
        b"HTTP/1.1 413 Request Entity Too Large\r\n"
        b"Content-Type: application/json\r\n"
        b"Connection: close\r\n"
        + b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers or ())
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class LimitedRequest(server.Request):
    """A request whose body may not exceed ``max_body_bytes`` (0 = no limit)."""

    max_body_bytes = 0
    _received = 0
    _drained = 0
    _closing = False
    refused = False

    def gotLength(self, length: int | None) -> None:
        """Refuse at once when the declared length is over the limit."""
        if length is not None and length <= MEMORY_BODY:
            # Twisted spools bodies over 100 kB to a temporary file; a single instance of a
            # few hundred kB is cheaper in memory (bounded: at most MEMORY_BODY per request).
            self.content = io.BytesIO()
        else:
            super().gotLength(length)
        if length is None or length > READ_SIZE:
            # Big body: read the socket in bigger chunks (fewer trips through the HTTP
            # parser on the reactor thread).
            transport = getattr(self.channel, "transport", None)
            if transport is not None and getattr(transport, "bufferSize", 0) < READ_SIZE:
                transport.bufferSize = READ_SIZE
        limit = self.max_body_bytes
        if limit and length is not None and length > limit:
            # No "100 Continue" for a body we refuse (the channel checks after this call).
            self.requestHeaders.removeHeader(b"Expect")
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        """Count received bytes; refuse once a chunked body goes over the limit."""
        if self.refused:
            self._drained += len(data)
            if self._drained > MAX_DRAIN and not self._closing:
                # The client keeps sending a huge body: stop reading it.
                self._closing = True
                transport = getattr(self.channel, "transport", None)
                if transport is not None:
                    transport.loseConnection()
            return
        self._received += len(data)
        limit = self.max_body_bytes
        if limit and self._received > limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self.refused = True
        old, self.content = self.content, DiscardFile()
        if old is not None:
            try:
                old.close()
            except Exception:  # pragma: no cover - closing a spool file
                pass
        transport = getattr(self.channel, "transport", None)
        if transport is not None:
            transport.write(_payload_too_large(self.max_body_bytes, self.refusal_headers()))

    def refusal_headers(self) -> list[tuple[str, str]]:
        """Extra headers of the 413 answer (:mod:`dwdaemon.web.cors` adds its own)."""
        return []

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request is answered already: close the connection instead."""
        if self.refused:
            channel = self.channel
            if channel is not None:
                channel.loseConnection()
            return
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        if ctype and not ctype[0].lower().lstrip().startswith(_FORM_TYPES):
            # Twisted parses the Content-Type of every POST (slowly, with the email package)
            # only to look for HTML form bodies: skip that for anything else.
            self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def process(self) -> None:
        """Route ``/dicom-web//studies`` like ``/dicom-web/studies`` (as Orthanc does).

        Clients join a base URL ending in ``/`` with a path starting with ``/``; werkzeug would
        answer such paths with a 308 redirect, which breaks every POST.
        """
        if b"//" in self.path:
            self.path = _SLASHES.sub(b"/", self.path)
        super().process()


_SLASHES = re.compile(rb"/{2,}")
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def limited_request_class(max_body_bytes: int) -> type[server.Request]:
    """A :class:`~twisted.web.server.Request` class enforcing ``max_body_bytes`` (0 = none)."""
    return type("LimitedRequest", (LimitedRequest,), {"max_body_bytes": int(max_body_bytes)})


def rewind(content: IO[bytes] | None) -> IO[bytes] | None:
    """The request body file positioned at its start (``None`` if there is none)."""
    if content is not None:
        content.seek(0)
    return content
