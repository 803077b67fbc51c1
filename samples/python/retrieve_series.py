#!/usr/bin/env python3
"""Retrieve a series' metadata and one frame, using the PyPI ``dicomweb-client``.

    python retrieve_series.py --url http://127.0.0.1:8042/dicom-web STUDY_UID SERIES_UID \
        --frame 1 --out frame.raw

WADO-RS ``.../series/{uid}/metadata`` gives the DICOM JSON of every instance of the series
(pixel data is a ``BulkDataURI``, not inline). The first instance with pixel data is then asked
for one frame, which is written to ``--out`` as the server sends it: raw pixels
(``application/octet-stream``) by default, or a compressed bitstream with ``--media-type``
(``image/jpeg``, ``image/jp2``...). Credentials: ``--user``/``--password`` or
``DICOMWEB_USER``/``DICOMWEB_PASSWORD``; URL: ``--url`` or ``DICOMWEB_URL``. Exits 1 on error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

PIXEL_DATA = ("7FE00010", "7FE00008", "7FE00009")  # Pixel Data, Float / Double Float Pixel Data


def connect(url: str, user: str | None, password: str | None) -> DICOMwebClient:
    """A client for ``url``, with HTTP Basic authentication when a user is given."""
    session = create_session_from_user_pass(user, password) if user else requests.Session()
    return DICOMwebClient(url=url, session=session)


def first(dataset: dict, tag: str) -> object:
    """The first value of ``tag`` in a DICOM JSON dataset (None when absent)."""
    values = dataset.get(tag, {}).get("Value", [])
    return values[0] if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study")
    parser.add_argument("series")
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--frame", type=int, default=1, help="1-based frame number")
    parser.add_argument("--media-type", default="application/octet-stream")
    parser.add_argument("--out", default="frame.bin")
    args = parser.parse_args(argv)
    # dicomweb-client logs the server's Warning headers (e.g. "more results are available")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    client = connect(args.url, args.user, args.password)
    print(f"retrieving metadata of series {args.series}")
    metadata = client.retrieve_series_metadata(args.study, args.series)
    print(f"{len(metadata)} instances")
    image = None
    for instance in metadata:
        print("  {sop}  class {cls}  {rows}x{cols}  frames {frames}".format(
            sop=first(instance, "00080018"), cls=first(instance, "00080016"),
            rows=first(instance, "00280010"), cols=first(instance, "00280011"),
            frames=first(instance, "00280008") or 1))
        if image is None and any(tag in instance for tag in PIXEL_DATA):
            image = instance
    if image is None:
        print("no instance of this series has pixel data", file=sys.stderr)
        return 1

    sop = str(first(image, "00080018"))
    print(f"retrieving frame {args.frame} of {sop} as {args.media_type}")
    frames = client.retrieve_instance_frames(
        args.study, args.series, sop, frame_numbers=[args.frame],
        media_types=(args.media_type,))
    with open(args.out, "wb") as out:
        out.write(frames[0])
    print(f"frame {args.frame}: {len(frames[0])} bytes written to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
