#!/usr/bin/env python3
"""WADO-RS with plain ``requests``: a multipart answer parsed part by part as it streams.

    python wado_stream.py --url http://127.0.0.1:8042/dicom-web STUDY_UID [SERIES_UID] \
        --out ./retrieved

``GET {root}/studies/{uid}`` (or ``.../series/{uid}``) answers
``multipart/related; type="application/dicom"``: the instances one after the other, each
part framed by ``--boundary`` lines, with its own headers (``Content-Type``, and
``Content-Location`` on dwdaemon). This program reads the body in chunks as it arrives
(``stream=True``) and writes each part to its own file as soon as its closing boundary is
seen, so memory holds at most one part plus one chunk, whatever the size of the study.
Credentials: ``--user``/``--password`` or ``DICOMWEB_USER``/``DICOMWEB_PASSWORD``; URL:
``--url`` or ``DICOMWEB_URL``. Exits 1 on error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from email.message import Message

import requests


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/related`` Content-Type."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/related" or not boundary:
        raise ValueError(f"not a multipart/related answer: {content_type}")
    return str(boundary)


def parts(chunks: Iterable[bytes], boundary: str) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield ``(headers, body)`` for each part of a multipart stream, as soon as it is complete.

    Every delimiter is ``CRLF--boundary`` (the first one may lack the CRLF); after the last
    one comes ``--``. The headers of a part end at the first empty line.
    """
    delimiter = b"\r\n--" + boundary.encode("ascii")
    buffer = bytearray(b"\r\n")  # so that the first delimiter looks like the others
    started = False  # False while in the preamble, before the first delimiter
    scan = 0  # where to look for the next delimiter (the bytes before were searched)
    for chunk in chunks:
        buffer += chunk
        while (at := buffer.find(delimiter, scan)) >= 0:
            after = at + len(delimiter)
            closing = buffer[after:after + 2] == b"--"
            line_end = buffer.find(b"\r\n", after)  # end of the delimiter line (padding)
            if not closing and line_end < 0:
                scan = at
                break  # the delimiter line is not complete yet: wait for more bytes
            if started:
                part = bytes(buffer[:at])
                if part.startswith(b"\r\n"):  # a part without headers
                    head, body = b"", part[2:]
                else:
                    head, _, body = part.partition(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n"):
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                yield headers, body
            if closing:
                return  # the closing delimiter: what follows is an epilogue
            started = True
            del buffer[:line_end + 2]
            scan = 0
        else:  # no delimiter in the buffer: next time, search only the new bytes
            scan = max(0, len(buffer) - len(delimiter))
    raise ValueError("the answer ended before its closing boundary")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study")
    parser.add_argument("series", nargs="?")
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--out", default="retrieved")
    args = parser.parse_args(argv)

    url = f"{args.url}/studies/{args.study}"
    if args.series:
        url += f"/series/{args.series}"
    auth = (args.user, args.password or "") if args.user else None
    # transfer-syntax=* : the files as stored, without conversion by the server
    headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    print(f"GET {url}")
    with requests.get(url, headers=headers, auth=auth, stream=True, timeout=300) as response:
        print(f"HTTP {response.status_code} {response.headers.get('Content-Type')}")
        response.raise_for_status()
        boundary = boundary_of(response.headers["Content-Type"])
        os.makedirs(args.out, exist_ok=True)
        count = total = 0
        for headers_, body in parts(response.iter_content(64 * 1024), boundary):
            count += 1
            total += len(body)
            path = os.path.join(args.out, f"part{count:05d}.dcm")
            with open(path, "wb") as fp:
                fp.write(body)
            print(f"part {count}: {len(body)} bytes, {headers_.get('content-type')}, "
                  f"{headers_.get('content-location', '-')} -> {path}")
    print(f"{count} parts, {total} bytes")
    return 0 if count else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
