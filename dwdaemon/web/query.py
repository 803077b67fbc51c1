"""Query-string parsing that keeps bare flags (``?expand``) and decodes UTF-8.

Twisted's ``request.args`` drops keys without ``=`` and splits on ``;``; DICOMweb and Orthanc
clients use both bare flags and values with ``;`` in them.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from twisted.web.iweb import IRequest


def query_items(request: IRequest) -> list[tuple[str, str]]:
    """The query parameters in order, percent-decoded as UTF-8 (``+`` is a space)."""
    uri = request.uri.decode("latin-1")
    _, sep, query = uri.partition("?")
    if not sep:
        return []
    return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")


def query_args(request: IRequest) -> dict[str, list[str]]:
    """The query parameters as ``{name: [values]}``."""
    out: dict[str, list[str]] = {}
    for name, value in query_items(request):
        out.setdefault(name, []).append(value)
    return out
