#!/usr/bin/env python3
"""Asynchronous bulk download of a study with ``treq`` on Twisted, a few requests at a time.

    python bulk_download.py --url http://127.0.0.1:8042/dicom-web STUDY_UID \
        --out ./study --parallel 4

QIDO-RS ``{root}/studies/{uid}/instances`` lists the instances of the study; each one is then
fetched with WADO-RS ``.../series/{series}/instances/{sop}`` (a ``multipart/related`` answer
with one ``application/dicom`` part) and written to ``OUT/{series}/{sop}.dcm``. At most
``--parallel`` downloads run at once (a ``DeferredSemaphore``); a progress line is printed as
each one ends. Credentials: ``--user``/``--password`` or ``DICOMWEB_USER``/
``DICOMWEB_PASSWORD``; URL: ``--url`` or ``DICOMWEB_URL``. Exits 1 if any download fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from email.message import Message
from typing import Any

import treq
from twisted.internet import defer, task
from twisted.internet.defer import DeferredSemaphore

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def single_part(content_type: str, body: bytes) -> bytes:
    """The body of the only part of a ``multipart/related`` answer."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = ("--" + str(message.get_param("boundary"))).encode("ascii")
    start = body.index(boundary)
    start = body.index(b"\r\n\r\n", start) + 4  # skip the delimiter line and part headers
    end = body.index(b"\r\n" + boundary, start)
    return body[start:end]


def first(dataset: dict, tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON dataset."""
    return dataset[tag]["Value"][0]


@defer.inlineCallbacks
def download(reactor: Any, args: argparse.Namespace) -> Any:
    """List the study's instances, then fetch them ``args.parallel`` at a time."""
    auth = (args.user, args.password or "") if args.user else None
    url = f"{args.url}/studies/{args.study}/instances"
    print(f"GET {url}")
    response = yield treq.get(url, auth=auth, headers={"Accept": "application/dicom+json"})
    body = yield response.content()
    if response.code != 200:
        raise RuntimeError(f"QIDO-RS answered {response.code}: {body[:200]!r}")
    instances = json.loads(body)
    print(f"{len(instances)} instances to download, {args.parallel} at a time")

    semaphore = DeferredSemaphore(args.parallel)
    done = {"count": 0, "bytes": 0, "failed": 0}
    started = time.monotonic()

    @defer.inlineCallbacks
    def fetch(instance: dict) -> Any:
        series, sop = first(instance, "0020000E"), first(instance, "00080018")
        path = os.path.join(args.out, series, f"{sop}.dcm")
        try:
            answer = yield treq.get(f"{args.url}/studies/{args.study}/series/{series}"
                                    f"/instances/{sop}", auth=auth,
                                    headers={"Accept": ACCEPT_DICOM})
            content = yield answer.content()
            if answer.code != 200:
                raise RuntimeError(f"HTTP {answer.code}")
            data = single_part(answer.headers.getRawHeaders("content-type")[0], content)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fp:  # small files: fine on the reactor for a sample
                fp.write(data)
            done["bytes"] += len(data)
            status = f"{len(data)} bytes -> {path}"
        except Exception as exc:
            done["failed"] += 1
            status = f"FAILED: {exc}"
        done["count"] += 1
        print(f"[{done['count']}/{len(instances)}] {sop} {status}", flush=True)

    yield defer.gatherResults([semaphore.run(fetch, instance) for instance in instances])
    seconds = time.monotonic() - started
    print(f"downloaded {done['count'] - done['failed']} instances, {done['bytes']} bytes "
          f"in {seconds:.2f} s; {done['failed']} failed")
    if done["failed"]:
        raise RuntimeError(f"{done['failed']} downloads failed")


def main(reactor: Any, *argv: str) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study")
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--out", default="study")
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args(argv)

    def failed(failure: Any) -> None:
        print(f"error: {failure.getErrorMessage()}", file=sys.stderr)
        raise SystemExit(1)

    return download(reactor, args).addErrback(failed)


if __name__ == "__main__":
    # task.react runs the reactor until main's Deferred fires, then exits with its status.
    task.react(main, sys.argv[1:])
