#!/usr/bin/env python3
"""Search studies with filters and paging, using the PyPI ``dicomweb-client``.

    python search_studies.py --url http://127.0.0.1:8042/dicom-web \
        --filter PatientName='Doe*' --filter StudyDate=20000101-20241231 --page-size 10

Each ``--filter KEYWORD=VALUE`` becomes a QIDO-RS query parameter (wildcards, date ranges and
lists are matched by the server). The studies are read page by page with ``limit``/``offset``
until a page comes back shorter than the page size. Credentials for HTTP Basic authentication
come from ``--user``/``--password`` or ``DICOMWEB_USER``/``DICOMWEB_PASSWORD``; the server URL
from ``--url`` or ``DICOMWEB_URL``. Exits 1 on any error (after printing it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass


def connect(url: str, user: str | None, password: str | None) -> DICOMwebClient:
    """A client for ``url``, with HTTP Basic authentication when a user is given."""
    session = create_session_from_user_pass(user, password) if user else requests.Session()
    return DICOMwebClient(url=url, session=session)


def value(dataset: dict, tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON dataset, as text ('' when absent)."""
    values = dataset.get(tag, {}).get("Value", [])
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # a person name: {"Alphabetic": "Doe^John"}
        return first.get("Alphabetic", "")
    return str(first)


def key_value(text: str) -> tuple[str, str]:
    """``KEYWORD=VALUE`` -> ``(KEYWORD, VALUE)`` (argparse type of ``--filter``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEYWORD=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--filter", action="append", default=[], type=key_value,
                        metavar="KEYWORD=VALUE",
                        help="a QIDO-RS matching key (repeat for several)")
    parser.add_argument("--fuzzy", action="store_true", help="fuzzy matching of person names")
    parser.add_argument("--page-size", type=int, default=10)
    args = parser.parse_args(argv)
    # dicomweb-client logs the server's Warning headers (e.g. "more results are available")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    filters = dict(args.filter)
    client = connect(args.url, args.user, args.password)
    print(f"searching studies on {args.url} with {filters or 'no filter'}, "
          f"{args.page_size} per page")

    found, page, offset = 0, 0, 0
    while True:
        # limit/offset page through the matches; fields adds attributes to the answers.
        studies = client.search_for_studies(
            search_filters=filters, fuzzymatching=args.fuzzy or None,
            limit=args.page_size, offset=offset,
            fields=["StudyDescription", "ModalitiesInStudy"])
        page += 1
        print(f"page {page}: {len(studies)} studies")
        for study in studies:
            print("  {uid}  {name!r}  {date}  {modalities}  {description!r}".format(
                uid=value(study, "0020000D"), name=value(study, "00100010"),
                date=value(study, "00080020"),
                modalities="/".join(study.get("00080061", {}).get("Value", [])),
                description=value(study, "00081030")))
        found += len(studies)
        offset += len(studies)
        if len(studies) < args.page_size:
            break
    print(f"found {found} studies")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
