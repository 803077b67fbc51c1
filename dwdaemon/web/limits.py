"""Limits against hostile clients: request head size and deadline, connection caps, refusals.

:class:`LimitedChannel` is the daemon's HTTP channel with

- a request line longer than ``MaximumRequestHeadSize`` answered ``414 URI Too Long``, a head
  (request line + headers) longer than it ``431 Request Header Fields Too Large``;
- ``408 Request Timeout`` when a request head has not arrived within ``HttpRequestTimeout``
  seconds of its first byte (or of the connection, for the first request);
- ``503 Service Unavailable`` (``Retry-After``) for a connection over ``MaximumConnections``
  overall or ``MaximumConnectionsPerClient`` from one client address;
- every other malformed head answered with a JSON ``400`` (Twisted sends a bare one).

Each refusal is logged as one warning line, at most :data:`LOG_BURST` per client address and
:data:`LOG_WINDOW` seconds (then one line saying how many were not logged).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from twisted.logger import Logger

from dwdaemon.web.channel import HTTPChannel

__all__ = ["LOG_BURST", "LOG_WINDOW", "HttpLimits", "LimitedChannel", "RefusalLog",
           "refusal_bytes"]

log = Logger()

#: Refusals logged per client address within :data:`LOG_WINDOW` seconds.
LOG_BURST = 5
LOG_WINDOW = 60.0


class RefusalLog:
    """One warning line per refused request, rate-limited per client address."""

    def __init__(self, burst: int = LOG_BURST, window: float = LOG_WINDOW,
                 clock: Callable[[], float] = time.monotonic,
                 emit: Callable[[str], None] | None = None) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self.emit = emit or (lambda line: log.warn("{line}", line=line))
        self._seen: dict[str, list[float]] = {}  # host -> [window start, logged, dropped]

    def refused(self, host: str, status: int | str, what: str) -> bool:
        """Log ``host: status what`` unless the host is over its budget; True if logged."""
        now = self.clock()
        entry = self._seen.get(host)
        if entry is None or now - entry[0] >= self.window:
            if entry is not None and entry[2]:
                self.emit(f"refused {host}: {int(entry[2])} more refusals not logged")
            if len(self._seen) > 10000:  # forget everyone rather than grow without bound
                self._seen.clear()
            entry = self._seen[host] = [now, 0, 0]
        if entry[1] >= self.burst:
            entry[2] += 1
            return False
        entry[1] += 1
        self.emit(f"refused {host}: {status} {what}")
        return True


def refusal_bytes(status: int, message: str, extra_headers: dict[str, str] | None = None
                  ) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 answer with an Orthanc-style JSON error body."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"HttpError": phrase, "HttpStatus": status, "Message": message}).encode()
    head = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/json",
            "Connection: close", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class HttpLimits:
    """The limits of one listening site, and its live connection counts."""

    head_size: int = 64 * 1024  # bytes, request line + headers
    head_timeout: float = 30.0  # seconds, 0 = none
    max_connections: int = 1000  # 0 = no limit
    max_per_client: int = 100  # 0 = no limit
    refusals: RefusalLog = field(default_factory=RefusalLog)
    total: int = 0
    per_client: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> HttpLimits:
        return cls(head_size=int(getattr(config, "maximum_request_head_size", 64)) * 1024,
                   head_timeout=float(getattr(config, "http_request_timeout", 30)),
                   max_connections=int(getattr(config, "maximum_connections", 1000)),
                   max_per_client=int(getattr(config, "maximum_connections_per_client", 100)))

    def admit(self, host: str) -> str | None:
        """Count a new connection; the reason it is refused (not counted) or None."""
        if self.max_connections and self.total >= self.max_connections:
            return f"too many connections (MaximumConnections is {self.max_connections})"
        count = self.per_client.get(host, 0)
        if self.max_per_client and count >= self.max_per_client:
            return ("too many connections from this client (MaximumConnectionsPerClient is "
                    f"{self.max_per_client})")
        self.total += 1
        self.per_client[host] = count + 1
        return None

    def release(self, host: str) -> None:
        self.total -= 1
        count = self.per_client.get(host, 0) - 1
        if count > 0:
            self.per_client[host] = count
        else:
            self.per_client.pop(host, None)


def _peer_host(transport: Any) -> str:
    try:
        peer = transport.getPeer()
    except Exception:  # pragma: no cover - transports without a peer
        return "?"
    return str(getattr(peer, "host", "?"))


class LimitedChannel(HTTPChannel):
    """The daemon's HTTP channel, enforcing :class:`HttpLimits` (``self.site.dw_limits``)."""

    _dw_host = "?"
    _dw_counted = False
    _dw_refused = False
    _dw_deadline: Any = None

    # -- set-up ------------------------------------------------------------------------------
    @property
    def _limits(self) -> HttpLimits:
        limits = getattr(getattr(self, "site", None), "dw_limits", None)
        if limits is None:
            limits = HttpLimits()
            if getattr(self, "site", None) is not None:
                self.site.dw_limits = limits
        return limits

    def connectionMade(self) -> None:
        limits = self._limits
        self.MAX_LENGTH = limits.head_size
        self.totalHeadersSize = limits.head_size
        self._dw_host = _peer_host(self.transport)
        reason = limits.admit(self._dw_host)
        super().connectionMade()
        if reason is not None:
            self._refuse(503, reason, {"Retry-After": "5"})
            return
        self._dw_counted = True
        self._arm_deadline()

    def connectionLost(self, reason: Any) -> None:
        self._disarm_deadline()
        if self._dw_counted:
            self._dw_counted = False
            self._limits.release(self._dw_host)
        super().connectionLost(reason)

    # -- the request head --------------------------------------------------------------------
    def _in_first_line(self) -> bool:
        return bool(getattr(self, "_HTTPChannel__first_line", 0))

    def dataReceived(self, data: bytes) -> None:
        if self._dw_refused:
            return
        if self.line_mode and self._dw_deadline is None and not self._handlingRequest:
            self._arm_deadline()  # the first bytes of a new request head
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self.lineLengthExceeded(line)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        size = self._limits.head_size // 1024
        if self._in_first_line() and not self._receivedHeaderSize:
            self._refuse(414, f"request line longer than MaximumRequestHeadSize ({size} KB)")
        else:
            self._refuse(431, "request head (request line and headers) larger than "
                              f"MaximumRequestHeadSize ({size} KB)")

    def allHeadersReceived(self) -> None:
        self._disarm_deadline()
        super().allHeadersReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._refuse(400, "malformed HTTP request head")

    # -- the head deadline -------------------------------------------------------------------
    def _arm_deadline(self) -> None:
        timeout = self._limits.head_timeout
        if timeout > 0 and self._dw_deadline is None:
            self._dw_deadline = self.callLater(timeout, self._head_timed_out)

    def _disarm_deadline(self) -> None:
        deadline, self._dw_deadline = self._dw_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _head_timed_out(self) -> None:
        self._dw_deadline = None
        if not self.line_mode or self._handlingRequest:
            return
        timeout = self._limits.head_timeout
        self._refuse(408, f"request head not received within HttpRequestTimeout ({timeout:g} s)")

    # -- refusing ----------------------------------------------------------------------------
    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` with a JSON body, log one line, close the connection."""
        if self._dw_refused:
            return
        self._dw_refused = True
        self._disarm_deadline()
        self._limits.refusals.refused(self._dw_host, status, message)
        transport = self.transport
        if transport is None:
            return
        if not getattr(transport, "disconnecting", False):
            transport.write(refusal_bytes(status, message, headers))
        # Closing this way leaves unread input behind; a client still sending could get a
        # reset before reading the answer, so stop reading and close once it is written.
        self.setTimeout(None)
        transport.loseConnection()
