"""Writer side of multipart/related bodies (the streaming reader is multipart_reader.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable


def new_boundary() -> str:
    """A fresh boundary that cannot occur in DICOM data by chance."""
    return "dwdaemon-" + uuid.uuid4().hex


def content_type(boundary: str, part_type: str, **params: str) -> str:
    """The ``Content-Type`` of a multipart/related body whose parts are ``part_type``."""
    extra = "".join(f"; {k.replace('_', '-')}={v}" for k, v in params.items())
    return f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'


def part_header(boundary: str, part_content_type: str,
                headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """Delimiter and headers that open one part (the body follows directly)."""
    lines = [f"--{boundary}", f"Content-Type: {part_content_type}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def part_separator() -> bytes:
    """The CRLF that ends a part body before the next delimiter."""
    return b"\r\n"


def closing(boundary: str) -> bytes:
    """The close delimiter of the body."""
    return f"--{boundary}--\r\n".encode()


def build(boundary: str, parts: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole (small) multipart body from ``(content_type, payload)`` pairs."""
    chunks: list[bytes] = []
    for ctype, payload in parts:
        chunks += [part_header(boundary, ctype), payload, part_separator()]
    chunks.append(closing(boundary))
    return b"".join(chunks)
