"""Pure helpers for WADO-RS / WADO-URI: frame lists, media types, negotiation, parameters.

No Twisted here. Accept headers are parsed with :mod:`dwdaemon.dicom.mediatypes`; the choices
below turn those media ranges into a concrete representation (media type, transfer syntax,
and whether bytes can be served as stored or must be decoded/transcoded).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom import uid

from dwdaemon.dicom.mediatypes import MediaRange, parse_accept
from dwdaemon.dicom.render import Window

EXPLICIT_VR_LE = uid.ExplicitVRLittleEndian
IMPLICIT_VR_LE = uid.ImplicitVRLittleEndian
DEFLATED_LE = uid.DeflatedExplicitVRLittleEndian
BIG_ENDIAN = uid.ExplicitVRBigEndian
NATIVE_SYNTAXES = frozenset({EXPLICIT_VR_LE, IMPLICIT_VR_LE, DEFLATED_LE, BIG_ENDIAN})

OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"

#: Media type of the frames (bulk pixel data) of each encapsulated transfer syntax (PS3.18 8.7.3).
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}

#: Other names clients use for the same frame media types (older PS3.18 and the seed doc).
MEDIA_TYPE_ALIASES: dict[str, str] = {
    "image/dicom+jpeg": "image/jpeg",
    "image/dicom+jpeg-ls": "image/jls",
    "image/dicom+jls": "image/jls",
    "image/x-jls": "image/jls",
    "image/dicom+jp2": "image/jp2",
    "image/dicom+jpx": "image/jpx",
    "image/dicom+rle": "image/x-dicom-rle",
    "image/dicom-rle": "image/x-dicom-rle",
    "video/mpeg2": "video/mpeg",
}

RENDERED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")


class FrameListError(ValueError):
    """A frame list that is malformed or out of range (answer 400)."""


class NotAcceptableError(ValueError):
    """Nothing acceptable can be produced (answer 406); the message says why."""


def parse_frame_list(text: str, count: int) -> list[int]:
    """Parse ``"1,3,5"`` (1-based) into frame numbers, checking ``1 <= n <= count``.

    Repeated numbers are kept once, in their first position. Ranges like ``2-4`` are accepted.
    """
    if text is None or not str(text).strip():
        raise FrameListError("empty frame list")
    out: list[int] = []
    seen: set[int] = set()
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise FrameListError("empty item in frame list")
        low, sep, high = item.partition("-")
        try:
            numbers = range(int(low), int(high) + 1) if sep else [int(item)]
        except ValueError as exc:
            raise FrameListError(f"invalid frame number {item!r}") from exc
        for n in numbers:
            if not 1 <= n <= count:
                raise FrameListError(f"frame {n} out of range (the instance has {count})")
            if n not in seen:
                seen.add(n)
                out.append(n)
    if not out:
        raise FrameListError("empty frame list")
    return out


def canonical_media_type(media_type: str) -> str:
    """Map an alias (``image/dicom+jpeg``) to the PS3.18 name (``image/jpeg``)."""
    media_type = media_type.lower()
    return MEDIA_TYPE_ALIASES.get(media_type, media_type)


def frame_media_type(transfer_syntax: str) -> str:
    """Media type of frames stored in ``transfer_syntax`` (native -> octet-stream)."""
    return FRAME_MEDIA_TYPES.get(transfer_syntax, OCTET_STREAM)


def _unwrap(media_range: MediaRange) -> tuple[str, str | None, bool]:
    """(part media type, transfer-syntax or None, multipart?) of one Accept entry."""
    if media_range.media_type == "multipart/related":
        part = media_range.params.get("type", OCTET_STREAM).lower()
        return canonical_media_type(part), media_range.params.get("transfer-syntax"), True
    return (canonical_media_type(media_range.media_type),
            media_range.params.get("transfer-syntax"), False)


def _type_matches(wanted: str, offered: str) -> bool:
    if wanted in ("*/*", "*"):
        return True
    if wanted.endswith("/*"):
        return offered.startswith(wanted[:-1])
    return wanted == offered


@dataclass(frozen=True)
class FrameChoice:
    """How to answer a frames or bulk pixel data request."""

    media_type: str  # of each part
    transfer_syntax: str
    decode: bool  # False: slice stored bytes; True: decode to native little endian
    multipart: bool = True
    #: True: a JPEG baseline image of the frame, rendered with its window (lossy, 8-bit)
    render: bool = False
    #: True: decode, then encode in ``transfer_syntax`` (a compressed syntax)
    encode: bool = False


JPEG_BASELINE = uid.JPEGBaseline8Bit
#: Default transfer syntax of each frame media type for RESTful services (PS3.18 Table 8.7.3-5).
DEFAULT_FRAME_SYNTAX: dict[str, str] = {
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/x-dicom-rle": "1.2.840.10008.1.2.5",
}
#: Native syntaxes a client may name for application/octet-stream frames (the bytes are the
#: same little endian octets; the label echoes the request).
OCTET_SYNTAXES = frozenset({EXPLICIT_VR_LE, IMPLICIT_VR_LE})
#: The seed's spelling for a "JPEG preview" of a frame (older PS3.18 name).
SEED_JPEG = "image/dicom+jpeg"


def choose_frames(accept: str | bytes | None, stored_syntax: str,
                  can_decode: Callable[[str], bool],
                  can_encode: Callable[[str], bool] = lambda _s: False) -> FrameChoice:
    """Choose the frame representation for ``accept`` given the stored transfer syntax.

    As Orthanc and PS3.18 (8.7.3.3.2): no Accept, a wildcard or ``application/octet-stream``
    give native little endian octets (decoded when stored compressed); a compressed media type
    without ``transfer-syntax`` means its default syntax (``image/jpeg``: JPEG lossless SV1);
    ``transfer-syntax=*`` keeps the stored one; a named syntax is served as stored when it is
    the stored one, else decoded and encoded when ``can_encode`` says so (a default syntax
    that cannot be encoded falls back to the stored frames of that media type). The seed's
    ``image/dicom+jpeg`` without a syntax gives a rendered JPEG baseline preview.
    """
    stored_type = frame_media_type(stored_syntax)
    native = stored_syntax in NATIVE_SYNTAXES
    decodable = native or can_decode(stored_syntax)
    ranges = parse_accept(accept)
    if not ranges:
        ranges = [MediaRange("multipart/related", {"type": OCTET_STREAM})]
    reasons: list[str] = []

    def octets(label: str | None) -> FrameChoice | None:
        if not decodable:
            reasons.append(f"cannot decode {stored_syntax}")
            return None
        label = label if label in OCTET_SYNTAXES else EXPLICIT_VR_LE
        return FrameChoice(OCTET_STREAM, label, decode=not native or stored_syntax == BIG_ENDIAN)

    def compressed(media: str, syntax: str) -> FrameChoice | None:
        if frame_media_type(syntax) != media:
            reasons.append(f"transfer syntax {syntax} is not one of {media}")
            return None
        if syntax == stored_syntax:
            return FrameChoice(media, syntax, decode=False)
        if not decodable:
            reasons.append(f"cannot decode {stored_syntax}")
            return None
        if not can_encode(syntax):
            reasons.append(f"cannot encode frames as {syntax}")
            return None
        return FrameChoice(media, syntax, decode=True, encode=True)

    for media_range in ranges:
        raw_part = (media_range.params.get("type", OCTET_STREAM)
                    if media_range.media_type == "multipart/related"
                    else media_range.media_type).lower()
        part, syntax, multipart = _unwrap(media_range)
        concrete = not multipart and "*" not in part
        choice: FrameChoice | None = None
        if "*" in part:
            if syntax == "*" and _type_matches(part, stored_type):
                choice = FrameChoice(stored_type, EXPLICIT_VR_LE if native else stored_syntax,
                                     decode=stored_syntax == BIG_ENDIAN)
            elif syntax in (None, "*") or syntax in OCTET_SYNTAXES:
                if _type_matches(part, OCTET_STREAM):
                    choice = octets(syntax)
                elif not native and _type_matches(part, stored_type):
                    choice = FrameChoice(stored_type, stored_syntax, decode=False)
            elif _type_matches(part, frame_media_type(syntax)):
                choice = compressed(frame_media_type(syntax), syntax)
        elif part == OCTET_STREAM:
            if syntax in (None, "*") or syntax in OCTET_SYNTAXES:
                choice = octets(syntax)
            else:
                reasons.append(f"application/octet-stream frames are not in {syntax}")
        elif raw_part == SEED_JPEG and syntax is None:
            if stored_syntax == JPEG_BASELINE:
                choice = FrameChoice("image/jpeg", JPEG_BASELINE, decode=False)
            elif decodable:
                choice = FrameChoice("image/jpeg", JPEG_BASELINE, decode=True, render=True)
        elif syntax == "*":
            if part == stored_type and not native:
                choice = FrameChoice(stored_type, stored_syntax, decode=False)
            else:
                reasons.append(f"frames are not stored as {part}")
        else:
            wanted = syntax or DEFAULT_FRAME_SYNTAX.get(part)
            if wanted is None:
                if part == stored_type and not native:
                    choice = FrameChoice(stored_type, stored_syntax, decode=False)
                else:
                    reasons.append(f"{part} is not offered")
            else:
                choice = compressed(part, wanted)
                if choice is None and syntax is None and part == stored_type and not native:
                    choice = FrameChoice(stored_type, stored_syntax, decode=False)
        if choice is not None:
            return FrameChoice(choice.media_type, choice.transfer_syntax, choice.decode,
                               multipart=not concrete, render=choice.render,
                               encode=choice.encode)
    offered = OCTET_STREAM if native else f"{stored_type} or {OCTET_STREAM}"
    detail = f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else ""
    raise NotAcceptableError(f"frames are stored as {stored_syntax}; can offer {offered}{detail}")


def choose_instance_syntax(accept: str | bytes | None, stored_syntax: str,
                           can_transcode: Callable[[str, str], bool],
                           part_type: str = DICOM) -> str:
    """Transfer syntax for whole-instance retrieval (``application/dicom`` parts).

    No Accept or no ``transfer-syntax`` -> Explicit VR Little Endian (the PS3.18 default);
    ``*`` -> as stored; a named syntax -> that one if ``can_transcode(stored, wanted)``.
    Raises :class:`NotAcceptableError`.
    """
    ranges = parse_accept(accept)
    if not ranges:
        ranges = [MediaRange("multipart/related", {"type": part_type})]
    reasons: list[str] = []
    for media_range in ranges:
        part, syntax, _multipart = _unwrap(media_range)
        if media_range.media_type in ("*/*", "*", "multipart/*") or (
                media_range.media_type == "multipart/related"
                and "type" not in media_range.params):
            part = part_type  # no type: the resource's own (as Orthanc)
        if not _type_matches(part, part_type):
            reasons.append(f"{part} is not offered")
            continue
        if syntax == "*":
            return stored_syntax
        wanted = syntax or EXPLICIT_VR_LE
        if can_transcode(stored_syntax, wanted):
            return wanted
        reasons.append(f"cannot convert {stored_syntax} to {wanted}")
    raise NotAcceptableError("; ".join(reasons) or "nothing acceptable")


def choose_rendered(accept: str | bytes | None, forced: str | None = None) -> str:
    """Media type of a rendered/thumbnail answer (image/jpeg by default)."""
    return choose_rendered_answer(accept, forced)[0]


def choose_rendered_answer(accept: str | bytes | None, forced: str | None = None
                           ) -> tuple[str, bool]:
    """``(media type, multipart?)`` of a rendered answer: multipart only when the chosen
    Accept entry is ``multipart/related; type=...`` (a bare or wildcard type means one image)."""
    if forced:
        forced = forced.lower()
        if forced not in RENDERED_MEDIA_TYPES:
            raise NotAcceptableError(f"cannot render as {forced}")
        return forced, False
    ranges = parse_accept(accept)
    if not ranges:
        return RENDERED_MEDIA_TYPES[0], False
    for media_range in ranges:
        part, _syntax, multipart = _unwrap(media_range)
        for offer in RENDERED_MEDIA_TYPES:
            if _type_matches(part, offer):
                return offer, multipart
    raise NotAcceptableError("rendered images are offered as " + ", ".join(RENDERED_MEDIA_TYPES))


# --- rendering parameters -------------------------------------------------------------------

VOI_FUNCTIONS = ("linear", "linear-exact", "sigmoid")


def parse_window(text: str) -> Window:
    """Parse ``window=center,width[,function]`` (PS3.18 8.3.5.1.4)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError("window must be center,width[,function]")
    center, width = _finite(parts[0], "window center"), _finite(parts[1], "window width")
    function = parts[2].lower() if len(parts) == 3 and parts[2] else "linear"
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {parts[2]!r}")
    if width <= 0 or (function == "linear" and width < 1):
        raise ValueError("window width too small")
    return Window(center, width, function)


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise ValueError(f"invalid {what} {text!r}") from exc
    if not math.isfinite(value):
        raise ValueError(f"invalid {what} {text!r}")
    return value


@dataclass(frozen=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]``: output size and optional source rectangle."""

    width: int
    height: int
    source: tuple[float, float, float, float] | None = None


def parse_viewport(text: str) -> Viewport:
    """Parse ``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (sw/sh may be negative to flip)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise ValueError("viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
    try:
        vw, vh = int(parts[0]), int(parts[1])
    except ValueError as exc:
        raise ValueError("viewport width and height must be integers") from exc
    if not (0 < vw <= 8192 and 0 < vh <= 8192):
        raise ValueError("viewport width and height must be in 1..8192")
    source = None
    if len(parts) == 6:
        sx, sy = _finite(parts[2] or "0", "sx"), _finite(parts[3] or "0", "sy")
        sw, sh = _finite(parts[4] or "0", "sw"), _finite(parts[5] or "0", "sh")
        source = (sx, sy, sw, sh)
    return Viewport(vw, vh, source)


def parse_quality(text: str) -> int:
    """``quality`` / ``imageQuality``: an integer 1..100."""
    try:
        value = int(text)
    except ValueError as exc:
        raise ValueError(f"invalid quality {text!r}") from exc
    if not 1 <= value <= 100:
        raise ValueError("quality must be in 1..100")
    return value


def parse_region(text: str) -> tuple[float, float, float, float]:
    """WADO-URI ``region=x1,y1,x2,y2`` normalised to 0..1 (x1 < x2, y1 < y2)."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError("region must be x1,y1,x2,y2")
    x1, y1, x2, y2 = (_finite(p.strip(), "region") for p in parts)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise ValueError("region values must satisfy 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    return (x1, y1, x2, y2)


def parse_positive_int(text: str, what: str, maximum: int = 8192) -> int:
    """A strictly positive integer query parameter (``rows``, ``columns``, ``frameNumber``)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise ValueError(f"invalid {what} {text!r}") from exc
    if not 1 <= value <= maximum:
        raise ValueError(f"{what} must be in 1..{maximum}")
    return value


def first(values: Sequence[str] | None) -> str | None:
    """First value of a query argument list, or None."""
    return values[0] if values else None


# -- metadata and bulk data negotiation -----------------------------------------------------------

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"


def metadata_media_type(accept: str | None) -> str | None:
    """DICOM JSON unless XML is asked as PS3.18 names it (multipart/related; type=
    application/dicom+xml); None when nothing offered is acceptable. A bare XML type counts
    only when nothing JSON-compatible is also accepted: browsers send ``text/html, ...,
    application/xml;q=0.9, */*;q=0.8`` and clients ``application/dicom+xml,
    application/json``; both get JSON, as Orthanc answers."""
    ranges = parse_accept(accept)
    if not ranges:
        return DICOM_JSON
    for media_range in ranges:
        mtype = media_range.media_type
        if media_range.params.get("transfer-syntax", "*") != "*":
            continue  # metadata has no transfer syntax: no such representation
        if mtype == "multipart/related":
            part = media_range.params.get("type", "").lower()
            if part in (DICOM_XML, "application/xml", "text/xml"):
                return DICOM_XML
            if part in (DICOM_JSON, "application/json"):
                return DICOM_JSON
            continue
        if mtype in (DICOM_JSON, "application/json", "application/*", "*/*", "*"):
            return DICOM_JSON
        # bare XML types are skipped: XML metadata is multipart (PS3.18 10.4.4 has servers
        # ignore single part types for multi-item resources; Orthanc ignores them too)
    return None


def bulk_multipart(accept: str | None) -> bool | None:
    """Whether bulk data answers multipart: the default (PS3.18 Table 10.4.4-1, and Orthanc),
    also for wildcards; a single part only when ``application/octet-stream`` is named; None
    when nothing offered is acceptable."""
    ranges = parse_accept(accept)
    if not ranges:
        return True
    for media_range in ranges:
        mtype = media_range.media_type
        if mtype == "multipart/related":
            part = media_range.params.get("type", OCTET_STREAM).lower()
            if part in (OCTET_STREAM, "*/*", "application/*"):
                return True
            continue
        if mtype in ("application/*", "*/*", "*"):
            return True
        if mtype == OCTET_STREAM:
            return False
    return None
