#!/usr/bin/env python3
"""STOW-RS with plain ``requests``: the multipart/related body built by hand.

    python stow_by_hand.py --url http://127.0.0.1:8042/dicom-web a.dcm b.dcm ...

A STOW-RS request (PS3.18 10.5) is a ``POST {root}/studies`` whose body is
``multipart/related; type="application/dicom"``: each file is one part, preceded by a
``--boundary`` line and its part headers, and the body ends with ``--boundary--``::

    --BOUNDARY\r\n
    Content-Type: application/dicom\r\n
    \r\n
    <the bytes of the Part 10 file>\r\n
    --BOUNDARY\r\n
    ...
    --BOUNDARY--\r\n

The answer (DICOM JSON) lists stored instances in ReferencedSOPSequence (0008,1199) and
refused ones in FailedSOPSequence (0008,1198); a part that is not a readable DICOM instance
has no UIDs to list there (PS3.18 makes them Type 1), so it only shows in the counts.
Status 200: all stored; 202: some refused; 400/409: none stored.
Credentials: ``--user``/``--password`` or ``DICOMWEB_USER``/``DICOMWEB_PASSWORD``;
URL: ``--url`` or ``DICOMWEB_URL``. Exits 1 unless everything is stored.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator

import requests


def multipart_body(paths: list[str], boundary: str) -> Iterator[bytes]:
    """The body, one file at a time (requests sends a generator chunked, without loading it)."""
    for path in paths:
        yield (f"--{boundary}\r\n"
               "Content-Type: application/dicom\r\n"
               "\r\n").encode("ascii")
        with open(path, "rb") as fp:
            while chunk := fp.read(1 << 20):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    args = parser.parse_args(argv)

    missing = [path for path in args.files if not os.path.isfile(path)]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    boundary = uuid.uuid4().hex  # must not occur in any file: a random one will not
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    auth = (args.user, args.password or "") if args.user else None
    print(f"POST {args.url}/studies with {len(args.files)} parts, boundary {boundary}")
    response = requests.post(f"{args.url}/studies", data=multipart_body(args.files, boundary),
                             headers=headers, auth=auth, timeout=300)
    print(f"HTTP {response.status_code} {response.reason}")
    if response.status_code not in (200, 202, 400, 409) or not response.content.startswith(b"{"):
        print(response.text, file=sys.stderr)
        return 1

    answer = response.json()
    stored = answer.get("00081199", {}).get("Value", [])
    failed = answer.get("00081198", {}).get("Value", [])
    for item in stored:
        print(f"stored  {item['00081155']['Value'][0]}  {item['00081190']['Value'][0]}")
    for item in failed:
        sop = item.get("00081155", {}).get("Value", ["?"])[0]
        print(f"refused {sop}  reason 0x{item['00081197']['Value'][0]:04X}")
    unlisted = len(args.files) - len(stored) - len(failed)
    if unlisted > 0:
        print(f"refused {unlisted} part(s) that are not readable DICOM instances (no UIDs)")
    print(f"{len(stored)} stored, {len(failed) + max(unlisted, 0)} refused")
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
