"""Parsing of Content-Type and Accept values: parameters, quoting, q-values, negotiation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
JSON = "application/json"
MULTIPART_RELATED = "multipart/related"
OCTET_STREAM = "application/octet-stream"


def _split_unquoted(value: str, sep: str) -> list[str]:
    """Split ``value`` on ``sep`` outside double quotes."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unquote(value: str) -> str:
    """Strip surrounding quotes; a backslash escapes the next character inside them."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out = []
        chars = iter(value[1:-1])
        for ch in chars:
            if ch == "\\":
                ch = next(chars, "")
            out.append(ch)
        return "".join(out)
    return value


def parse_media_type(value: str | bytes | None) -> tuple[str, dict[str, str]]:
    """Parse ``type/subtype; a=b; c="d"`` into the lowercased type and its parameters.

    Parameter names are lowercased; values are unquoted and keep their case.
    """
    if value is None:
        return "", {}
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    pieces = _split_unquoted(value, ";")
    mtype = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        if "=" not in piece:
            continue
        name, _, val = piece.partition("=")
        params[name.strip().lower()] = _unquote(val)
    return mtype, params


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this range accepts ``media_type`` (wildcards allowed)."""
        if self.media_type in ("*/*", "*"):
            return True
        want_main, _, want_sub = self.media_type.partition("/")
        main, _, sub = media_type.lower().partition("/")
        if want_sub == "*":
            return want_main == main
        return self.media_type == media_type.lower()

    @property
    def specificity(self) -> int:
        """Higher for more specific ranges (used to break ties)."""
        if self.media_type in ("*/*", "*"):
            return 0
        if self.media_type.endswith("/*"):
            return 1
        return 2 + len(self.params)


class AcceptError(ValueError):
    """An Accept header that cannot be parsed."""


def parse_accept(header: str | bytes | None) -> list[MediaRange]:
    """Parse an Accept header into media ranges, best first, dropping ``q=0``.

    A missing or empty header gives ``[]`` (callers then use their default).
    """
    if header is None:
        return []
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    ranges: list[tuple[int, MediaRange]] = []
    for index, item in enumerate(_split_unquoted(header, ",")):
        if not item.strip():
            continue
        mtype, params = parse_media_type(item)
        if not mtype:
            continue
        for piece in _split_unquoted(item, ";")[1:]:
            name, sep, val = piece.partition("=")
            if sep and not val.strip():  # RFC 9110: a value is a token or a quoted string
                raise AcceptError(f"parameter {name.strip()!r} without a value in Accept header")
        q = 1.0
        if "q" in params:
            raw = params.pop("q")
            try:
                q = float(raw)
            except ValueError as exc:
                raise AcceptError(f"invalid q-value {raw!r} in Accept header") from exc
            if not 0.0 <= q <= 1.0:
                raise AcceptError(f"q-value {raw!r} out of range in Accept header")
        if q <= 0:
            continue
        ranges.append((index, MediaRange(mtype, params, q)))
    ranges.sort(key=lambda pair: (-pair[1].q, -pair[1].specificity, pair[0]))
    return [r for _, r in ranges]


def negotiate(header: str | bytes | None, offers: Sequence[str],
              aliases: dict[str, str] | None = None) -> str | None:
    """Choose the best of ``offers`` (plain media types, first = default) for ``header``.

    ``aliases`` maps extra acceptable names to an offer (e.g. ``application/json`` to
    ``application/dicom+json``). No header gives the first offer; nothing acceptable gives None.
    """
    ranges = parse_accept(header)
    if not ranges:
        return offers[0] if offers else None
    aliases = aliases or {}
    for media_range in ranges:
        if media_range.media_type in aliases:
            return aliases[media_range.media_type]
        for offer in offers:
            if media_range.matches(offer):
                return offer
    return None


def format_media_type(media_type: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Build ``type; name="value"`` with values quoted when needed."""
    out = [media_type]
    for name, value in params:
        if any(c in value for c in ' ;,"=/+') and name != "transfer-syntax":
            value = '"' + value.replace('"', '\\"') + '"'
        out.append(f"{name}={value}")
    return "; ".join(out)
