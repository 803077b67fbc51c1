"""Per-request observation: request id header, route label, access log event, metrics.

:func:`observed_request_class` wraps the site's request class: every answer carries
``X-Request-Id`` (the client's own when it sent a sane one, else a new one), and when the
request ends (answered or lost) one log event is emitted with the request id, route template,
status, duration and client address, and the request metrics are updated.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.web import server

if TYPE_CHECKING:
    from dwdaemon.web.metrics import Metrics

log = Logger(namespace="dwdaemon.access")

REQUEST_ID_HEADER = b"x-request-id"
#: Status logged and counted for a request whose client left before any answer (as nginx).
CLIENT_CLOSED = 499
#: A client's request id is kept when it is short and printable; else a new one is made.
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")

#: Route modules by the service label of their latency histogram.
_SERVICES = {
    "dwdaemon.web.stow": "stow",
    "dwdaemon.web.qido": "qido",
    "dwdaemon.web.wado_rs": "wado",
    "dwdaemon.web.wado_uri": "wado-uri",
    "dwdaemon.web.servers": "client",
    "dwdaemon.web.jobs": "jobs",
}


def service_of(module: str, template: str) -> str:
    """The service label of a route: stow, qido, wado, rendered, wado-uri, client, jobs, core."""
    service = _SERVICES.get(module, "core")
    if service == "wado" and ("rendered" in template or "thumbnail" in template):
        return "rendered"
    return service


def mark_route(request: Any, template: str, module: str) -> None:
    """Remember which route answers ``request`` (for the labels of the metrics and logs)."""
    request.dwdaemon_route = template
    request.dwdaemon_service = service_of(module, template)


def new_request_id(incoming: bytes | None) -> str:
    """The client's ``X-Request-Id`` when sane, else a fresh random one."""
    if incoming and _SANE_ID.match(incoming):
        return incoming.decode("ascii")
    return uuid.uuid4().hex


class Observer:
    """Receives every finished request (the metrics, the access log)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

    def started(self, request: Any) -> None:
        if self.metrics is not None:
            self.metrics.in_progress.inc()

    def finished(self, request: Any, lost: bool) -> None:
        duration = time.monotonic() - getattr(request, "dwdaemon_started", time.monotonic())
        route = getattr(request, "dwdaemon_route", "unmatched")
        service = getattr(request, "dwdaemon_service", "core")
        method = request.method.decode("latin-1", "replace")
        status = int(getattr(request, "code", 0) or 0)
        if lost and not getattr(request, "startedWriting", False):
            status = CLIENT_CLOSED  # no answer was sent: not the 200 Twisted preset
        if self.metrics is not None:
            self.metrics.in_progress.dec()
            self.metrics.request_done(method, route, service, status, duration, lost)
        address = request.getClientAddress()
        log.info(
            "{client} {method} {uri} {status} {duration_ms:.1f} ms id={request_id}{lost_note}",
            method=method, uri=request.uri.decode("latin-1", "replace"),
            status=status, duration_ms=duration * 1000.0,
            lost_note=" (client gone)" if lost else "",
            request_id=getattr(request, "dwdaemon_request_id", None), route=route,
            duration=round(duration, 6), client=getattr(address, "host", None), lost=lost,
        )


def observed_request_class(base: type[server.Request], observer: Observer
                           ) -> type[server.Request]:
    """A subclass of ``base`` that reports to ``observer`` and sets ``X-Request-Id``."""

    class ObservedRequest(base):  # type: ignore[valid-type, misc]
        dwdaemon_request_id: str | None = None

        def gotLength(self, length: int | None) -> None:
            self.dwdaemon_started = time.monotonic()
            super().gotLength(length)

        def process(self) -> None:
            if not hasattr(self, "dwdaemon_started"):
                self.dwdaemon_started = time.monotonic()
            rid = new_request_id(self.getHeader(REQUEST_ID_HEADER))
            self.dwdaemon_request_id = rid
            self.setHeader(REQUEST_ID_HEADER, rid.encode("ascii"))
            observer.started(self)
            self.notifyFinish().addCallbacks(
                lambda _: observer.finished(self, False),
                lambda _: observer.finished(self, True))
            super().process()

    ObservedRequest.__name__ = base.__name__
    return ObservedRequest
