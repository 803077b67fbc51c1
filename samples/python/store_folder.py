#!/usr/bin/env python3
"""Store every DICOM file of a folder with STOW-RS, using the PyPI ``dicomweb-client``.

    python store_folder.py --url http://127.0.0.1:8042/dicom-web ./my-dicom-files --batch 20

The folder is walked recursively; files that pydicom cannot read as DICOM are skipped (and
said so). Instances are sent ``--batch`` at a time, one STOW-RS request per batch; the
server's answer lists the stored instances (``ReferencedSOPSequence``) and the refused ones
(``FailedSOPSequence``, with a reason code). Credentials: ``--user``/``--password`` or
``DICOMWEB_USER``/``DICOMWEB_PASSWORD``; URL: ``--url`` or ``DICOMWEB_URL``. Exits 1 when a
request fails or an instance is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom.errors import InvalidDicomError


def connect(url: str, user: str | None, password: str | None) -> DICOMwebClient:
    """A client for ``url``, with HTTP Basic authentication when a user is given."""
    session = create_session_from_user_pass(user, password) if user else requests.Session()
    return DICOMwebClient(url=url, session=session)


def dicom_files(folder: str) -> Iterator[pydicom.Dataset]:
    """The DICOM datasets of ``folder`` and its sub-folders, in name order."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                yield pydicom.dcmread(path)
            except (InvalidDicomError, OSError) as exc:
                print(f"skipped {path}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--batch", type=int, default=10, help="instances per STOW-RS request")
    args = parser.parse_args(argv)
    # dicomweb-client logs the server's Warning headers (e.g. "more results are available")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    client = connect(args.url, args.user, args.password)
    stored = failed = 0

    def send(batch: list[pydicom.Dataset]) -> None:
        nonlocal stored, failed
        print(f"storing {len(batch)} instances")
        # store_instances raises on an HTTP error (e.g. 409 when nothing was stored).
        answer = client.store_instances(batch)
        for item in answer.get("ReferencedSOPSequence", []):
            stored += 1
            print(f"  stored {item.ReferencedSOPInstanceUID}")
        for item in answer.get("FailedSOPSequence", []):
            failed += 1
            print(f"  refused {item.ReferencedSOPInstanceUID}: "
                  f"reason 0x{int(item.FailureReason):04X}")

    batch: list[pydicom.Dataset] = []
    for dataset in dicom_files(args.folder):
        batch.append(dataset)
        if len(batch) == args.batch:
            send(batch)
            batch = []
    if batch:
        send(batch)
    print(f"{stored} stored, {failed} refused")
    return 1 if failed or not stored else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
