"""Structured logs: one JSON object per line (``LogFormat: "json"``).

Each line has ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message`` and, for the
access events of :mod:`dwdaemon.web.observe`, ``request_id``, ``route``, ``status``,
``duration`` (seconds), ``client``, ``method`` and ``uri``; failures add ``traceback``.
``twistd --logger dwdaemon.logs.json_observer -n dicomweb`` selects it from the command line;
with the configuration key, :class:`JsonLogService` swaps twistd's text observer at start-up.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.application.service import Service
from twisted.logger import FileLogObserver, ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

#: Event fields copied to the JSON object when present.
FIELDS = ("request_id", "route", "status", "duration", "client", "method", "uri", "lost")


def event_json(event: dict[str, Any]) -> str | None:
    """The JSON line of a log event (``None`` for an event without text)."""
    doc: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time") or 0, UTC)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for name in FIELDS:
        if name in event:
            doc[name] = event[name]
    failure = event.get("log_failure")
    if failure is not None:
        try:
            doc["traceback"] = failure.getTraceback()
        except Exception:  # pragma: no cover - a broken failure
            doc["traceback"] = repr(failure)
    return json.dumps(doc, default=str, ensure_ascii=False) + "\n"


def json_file_observer(out: IO[str]) -> FileLogObserver:
    """An observer writing one JSON object per line to ``out``."""
    return FileLogObserver(out, event_json)


@provider(ILogObserver)
def json_observer() -> FileLogObserver:  # pragma: no cover - used by twistd --logger
    """For ``twistd --logger dwdaemon.logs.json_observer``: JSON lines on standard output."""
    return json_file_observer(sys.stdout)


class JsonLogService(Service):
    """Replaces twistd's text file observers by JSON ones writing to the same files."""

    def startService(self) -> None:
        super().startService()
        swap_text_observers()


def swap_text_observers(publisher: Any = globalLogPublisher) -> int:
    """Replace each text :class:`FileLogObserver` of ``publisher`` by a JSON one on the same
    file; returns how many were replaced."""
    count = 0
    for observer in list(getattr(publisher, "_observers", [])):
        if isinstance(observer, FileLogObserver) and getattr(observer, "formatEvent",
                                                              None) is not event_json:
            out = getattr(observer, "_outFile", None)
            if out is None:
                continue
            publisher.removeObserver(observer)
            publisher.addObserver(json_file_observer(out))
            count += 1
    return count
