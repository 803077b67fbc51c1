"""Request helpers: the query string (bare flags kept, UTF-8 decoded) and header values.

Twisted's ``request.args`` drops keys without ``=`` and splits on ``;``; DICOMweb and Orthanc
clients use both bare flags and values with ``;`` in them. Every route module reads its query
parameters and headers through these functions.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from twisted.web.iweb import IRequest

from dwdaemon.web.errors import ApiError


def query_items(request: IRequest, strict: bool = False) -> list[tuple[str, str]]:
    """The query parameters in order, percent-decoded as UTF-8 (``+`` is a space).

    Invalid UTF-8 is replaced, or with ``strict`` refused (400), as are malformed queries.
    """
    uri = request.uri.decode("latin-1")
    _, sep, query = uri.partition("?")
    if not sep:
        return []
    if not strict:
        return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")
    query = urlsplit(uri).query
    try:
        return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"query string is not valid UTF-8 once percent-decoded: {exc}"
                       ) from exc
    except ValueError as exc:
        raise ApiError(400, f"malformed query string: {exc}") from exc


def query_args(request: IRequest) -> dict[str, list[str]]:
    """The query parameters as ``{name: [values]}``."""
    out: dict[str, list[str]] = {}
    for name, value in query_items(request):
        out.setdefault(name, []).append(value)
    return out


def arg(request: IRequest, name: str) -> str | None:
    """The first value of query parameter ``name`` ("" for a bare flag), None if absent."""
    for key, value in query_items(request):
        if key == name:
            return value
    return None


def flag(request: IRequest, name: str) -> bool:
    """Orthanc-style flag (``?expand``, ``?expand=true``); false for ``=false``/``=0``."""
    value = arg(request, name)
    return value is not None and value.lower() not in ("false", "0")


def header(request: IRequest, name: str) -> str | None:
    """A request header's value as text (latin-1), None when absent."""
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value
