"""Errors as JSON bodies with the right HTTP status; never a traceback."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dwdaemon.client.registry import InvalidServer, UnknownServer
from dwdaemon.store.ingest import IngestError
from dwdaemon.store.storage import StorageFull

log = Logger()


class ApiError(Exception):
    """An error answer: ``status`` with a JSON body (or a given body and content type)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 body: bytes | None = None, content_type: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body
        self.content_type = content_type
        self.details = details


def error_body(request: IRequest, status: int, message: str, details: Any = None) -> bytes:
    """The JSON error document (Orthanc's field names)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    doc: dict[str, Any] = {
        "HttpError": phrase,
        "HttpStatus": status,
        "Message": message,
        "Method": request.method.decode("latin-1"),
        "RequestedUrl": request.uri.decode("latin-1", "replace"),
    }
    if details is not None:
        doc["Details"] = details
    return json.dumps(doc).encode("utf-8")


def write_error(request: IRequest, status: int, message: str, *,
                headers: dict[str, str] | None = None, body: bytes | None = None,
                content_type: str | None = None, details: Any = None) -> bytes:
    """Set status and headers for an error; returns the body to send."""
    request.setResponseCode(status)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    if body is None:
        body = error_body(request, status, message, details)
        content_type = "application/json"
    request.setHeader("Content-Type", content_type or "application/json")
    request.setHeader("Content-Length", str(len(body)))
    return body


def failure_to_response(request: IRequest, failure: Failure) -> bytes:
    """Map any failure of a route to an error response."""
    exc = failure.value
    if isinstance(exc, ApiError):
        return write_error(request, exc.status, exc.message, headers=exc.headers, body=exc.body,
                           content_type=exc.content_type, details=exc.details)
    if isinstance(exc, UnknownServer):
        return write_error(request, 404, str(exc))
    if isinstance(exc, InvalidServer):
        return write_error(request, 400, str(exc))
    if isinstance(exc, IngestError):
        status = getattr(exc, "http_status", 400)
        return write_error(request, status, str(exc),
                           details={"FailureReason": exc.reason} if status == 409 else None)
    if isinstance(exc, StorageFull):
        log.error("storage full while handling {uri}", uri=request.uri)
        return write_error(request, 507, "insufficient storage: the storage area is full")
    if isinstance(exc, MethodNotAllowed):
        # Orthanc's spelling: "GET,POST" (no HEAD or OPTIONS, which werkzeug adds implicitly)
        allowed = ",".join(sorted(m for m in exc.valid_methods or []
                                  if m not in ("HEAD", "OPTIONS")))
        return write_error(request, 405, "method not allowed", headers={"Allow": allowed})
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        message = {404: "unknown resource"}.get(code, exc.description or "error")
        return write_error(request, code, message)
    log.failure("unhandled error on {method} {uri}", failure=failure,
                method=request.method, uri=request.uri)
    return write_error(request, 500, "internal error (see the server log)")
