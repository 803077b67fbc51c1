"""Orthanc's ``GET|PUT /tools/default-encoding``: read or change ``DefaultEncoding`` at run time.

The name answers as ``text/plain`` (Orthanc's spelling, e.g. ``Utf8``); PUT takes the name in
the body (any case) and answers the new name; an unknown name answers 400. The change lasts
until the daemon stops, as in Orthanc; it applies to the files ingested afterwards.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom.encodings import ENCODINGS, canonical_name
from dwdaemon.store.store import Store
from dwdaemon.web.errors import ApiError
from dwdaemon.web.routing import RouteGroup


def _text(request: IRequest, text: str) -> bytes:
    body = text.encode("utf-8")
    request.setHeader(b"content-type", b"text/plain")
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


class DefaultEncoding(RouteGroup):
    """``/tools/default-encoding``: read and change the store's default encoding."""

    def __init__(self, config: Config, store: Store) -> None:
        super().__init__(config)
        self.store = store
        self.route("/tools/default-encoding", methods=["GET"], endpoint="default_encoding_get",
                   handler=self.get_encoding)
        self.route("/tools/default-encoding", methods=["PUT"], endpoint="default_encoding_put",
                   handler=self.put_encoding)

    def get_encoding(self, request: IRequest) -> Any:
        return _text(request, self.store.default_encoding)

    def put_encoding(self, request: IRequest) -> Any:
        raw = request.content.read() if request.content is not None else b""
        try:
            name = canonical_name(raw.decode("utf-8"))
        except UnicodeDecodeError:
            name = None
        if name is None:
            raise ApiError(400, "unknown encoding; expected one of " + ", ".join(ENCODINGS))
        self.store.default_encoding = name
        return _text(request, name)
