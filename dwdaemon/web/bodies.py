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

import contextlib
import io
import json
import re
from collections.abc import Iterable
from typing import IO
from urllib.parse import unquote_to_bytes

from twisted.web import server

from dwdaemon.web.errors import error_body

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


def _payload_too_large(limit: int, key: str = "MaximumRequestSize",
                       headers: list[tuple[str, str]] | None = None) -> bytes:
    body = json.dumps({
        "HttpError": "Request Entity Too Large",
        "HttpStatus": 413,
        "Message": "Request entity too large",
        "Details": f"the request body exceeds {key} ({limit // (1024 * 1024)} MB)",
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
    """A request whose body may not exceed ``max_body_bytes`` (0 = no limit).

    Uploads (``POST`` to a path matching ``upload_paths``: STOW-RS, ``/instances``) have their
    own limit, ``max_upload_bytes`` (``MaximumUploadSize``).
    """

    max_body_bytes = 0
    max_upload_bytes = 0
    upload_paths: re.Pattern[bytes] | None = None
    _limit_key = "MaximumRequestSize"
    _limit: int | None = None
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
        limit = self._body_limit()
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
        limit = self._body_limit()
        if limit and self._received > limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _body_limit(self) -> int:
        """The body limit of this request (its method and path are known once headers are)."""
        if self._limit is None:
            channel = self.channel
            method = getattr(channel, "_command", b"")
            path = getattr(channel, "_path", b"").split(b"?", 1)[0]
            if (method == b"POST" and self.upload_paths is not None
                    and self.upload_paths.match(_SLASHES.sub(b"/", path))):
                self._limit, self._limit_key = self.max_upload_bytes, "MaximumUploadSize"
            else:
                self._limit = self.max_body_bytes
        return self._limit

    def _refuse(self) -> None:
        self.refused = True
        old, self.content = self.content, DiscardFile()
        if old is not None:
            with contextlib.suppress(Exception):  # closing a spool file
                old.close()
        transport = getattr(self.channel, "transport", None)
        if transport is not None:
            transport.write(_payload_too_large(self._body_limit(), self._limit_key,
                                               self.refusal_headers()))
        limits = getattr(getattr(self.channel, "site", None), "dw_limits", None)
        if limits is not None:
            host = getattr(self.getClientAddress(), "host", "?")
            limits.refusals.refused(host, 413, f"request body over {self._limit_key}")

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
        super().requestReceived(command, path, version)

    def process(self) -> None:
        """Route ``/dicom-web//studies`` like ``/dicom-web/studies`` (as Orthanc does).

        Clients join a base URL ending in ``/`` with a path starting with ``/``; werkzeug would
        answer such paths with a 308 redirect, which breaks every POST.
        """
        if self.path[:1] != b"/" and _ABSOLUTE.match(self.path):
            # absolute-form request target (RFC 9112 3.2.2): route by its path
            self.path = _ABSOLUTE.sub(b"", self.path, count=1) or b"/"
            if self.path[:1] == b"?":
                self.path = b"/" + self.path
        if b"//" in self.path:
            self.path = _SLASHES.sub(b"/", self.path)
        try:
            unquote_to_bytes(self.path.split(b"?", 1)[0]).decode("utf-8")
        except UnicodeDecodeError:
            self._answer_early(400, "the URL path is not UTF-8 once percent-decoded")
            return
        super().process()

    def _handleStar(self) -> None:
        """``OPTIONS *`` (a server-wide probe): the methods the server implements, after the
        access checks; any other method on ``*``: 405."""
        self.site = self.channel.site
        check = getattr(self.site, "dw_access_check", None)
        if check is not None:
            error = check(self)
            if error is not None:
                status, message, headers = error
                self._answer_early(status, message, headers)
                return
        if self.method == b"OPTIONS":
            self.setHeader(b"Allow", b"DELETE, GET, HEAD, OPTIONS, POST, PUT")
        super()._handleStar()

    def _answer_early(self, status: int, message: str,
                      headers: dict[str, str] | None = None) -> None:
        """Answer a JSON error before routing (one rate-limited log line)."""
        self.setResponseCode(status)
        for name, value in (headers or {}).items():
            self.setHeader(name, value)
        body = error_body(self, status, message)
        self.setHeader(b"Content-Type", b"application/json")
        self.setHeader(b"Content-Length", str(len(body)).encode())
        limits = getattr(getattr(self.channel, "site", None), "dw_limits", None)
        if limits is not None:
            host = getattr(self.getClientAddress(), "host", "?")
            limits.refusals.refused(host, status, message)
        self.write(body)
        self.finish()


_SLASHES = re.compile(rb"/{2,}")
_ABSOLUTE = re.compile(rb"(?i)https?://[^/?#]*")


def limited_request_class(max_body_bytes: int, max_upload_bytes: int | None = None,
                          upload_paths: Iterable[str] = ()) -> type[server.Request]:
    """A :class:`~twisted.web.server.Request` class enforcing ``max_body_bytes`` (0 = none),
    and ``max_upload_bytes`` (default: the same) for POSTs to ``upload_paths`` (path prefixes
    followed by the end of the path or ``/``)."""
    paths = list(upload_paths)
    pattern = None
    if paths:
        alternatives = b"|".join(re.escape(p.rstrip("/").encode()) for p in paths)
        pattern = re.compile(b"(?:" + alternatives + b")(?:/|$)")
    upload = max_body_bytes if max_upload_bytes is None else max_upload_bytes
    return type("LimitedRequest", (LimitedRequest,), {
        "max_body_bytes": int(max_body_bytes), "max_upload_bytes": int(upload),
        "upload_paths": pattern})


def rewind(content: IO[bytes] | None) -> IO[bytes] | None:
    """The request body file positioned at its start (``None`` if there is none)."""
    if content is not None:
        content.seek(0)
    return content
