"""Orthanc's ``GET|PUT /tools/default-encoding``: read or change ``DefaultEncoding`` at run time.

The name answers as ``text/plain`` (Orthanc's spelling, e.g. ``Utf8``); PUT takes the name in
the body (any case) and answers the new name; an unknown name answers 400. The change lasts
until the daemon stops, as in Orthanc; it applies to the files ingested afterwards.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from dwdaemon.dicom.encodings import ENCODINGS, canonical_name
from dwdaemon.web.context import Context
from dwdaemon.web.errors import ApiError


def _text(request: IRequest, text: str) -> bytes:
    body = text.encode("utf-8")
    request.setHeader(b"content-type", b"text/plain")
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def install(app: Klein, ctx: Context) -> None:
    """Register ``/tools/default-encoding``."""
    del app

    @ctx.route("/tools/default-encoding", methods=["GET"], endpoint="default_encoding_get")
    def get_encoding(request: IRequest) -> Any:
        return _text(request, ctx.store.default_encoding)

    @ctx.route("/tools/default-encoding", methods=["PUT"], endpoint="default_encoding_put")
    def put_encoding(request: IRequest) -> Any:
        raw = request.content.read() if request.content is not None else b""
        try:
            name = canonical_name(raw.decode("utf-8"))
        except UnicodeDecodeError:
            name = None
        if name is None:
            raise ApiError(400, "unknown encoding; expected one of " + ", ".join(ENCODINGS))
        ctx.store.default_encoding = name
        return _text(request, name)
