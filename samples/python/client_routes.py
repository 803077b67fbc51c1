#!/usr/bin/env python3
"""dwdaemon's DICOMweb client routes: list remote servers, send a study to one, follow the job.

    python client_routes.py --url http://127.0.0.1:8042/dicom-web            # list servers
    python client_routes.py --url http://127.0.0.1:8042/dicom-web \
        --server pacs --study STUDY_UID                                       # send a study

The daemon is also a DICOMweb *client* of the servers declared in ``DicomWeb.Servers`` (as in
Orthanc's DICOMweb plugin). This program

1. lists them: ``GET {root}/servers?expand`` (URLs and options, never passwords);
2. finds the study's Orthanc identifier: Orthanc names a study by the SHA-1 of
   ``PatientID|StudyInstanceUID`` (the PatientID comes from a QIDO-RS search);
3. sends the study: ``POST {root}/servers/{name}/stow`` with
   ``{"Resources": [id], "Synchronous": false}``, which answers a job at once;
4. follows the job, ``GET /jobs/{id}``, until its State is Success or Failure, printing its
   Progress;
5. checks the remote has the study, through ``POST {root}/servers/{name}/get`` (a QIDO-RS
   request that the daemon makes to the remote and passes back).

Credentials (of this daemon, not of the remote): ``--user``/``--password`` or
``DICOMWEB_USER``/``DICOMWEB_PASSWORD``; URL: ``--url`` or ``DICOMWEB_URL``. Exits 1 when the
job fails or the remote does not have the study afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from urllib.parse import urljoin

import requests


def orthanc_id(*parts: str) -> str:
    """Orthanc's identifier: SHA-1 of the parts joined by '|', in five groups of 8 digits."""
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("DICOMWEB_URL",
                                                        "http://127.0.0.1:8042/dicom-web"))
    parser.add_argument("--user", default=os.environ.get("DICOMWEB_USER"))
    parser.add_argument("--password", default=os.environ.get("DICOMWEB_PASSWORD"))
    parser.add_argument("--server", help="name of the remote server to send to")
    parser.add_argument("--study", help="StudyInstanceUID of the study to send")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between job checks")
    args = parser.parse_args(argv)

    root = args.url.rstrip("/")
    http = requests.Session()
    if args.user:
        http.auth = (args.user, args.password or "")

    answer = http.get(f"{root}/servers", params={"expand": ""}, timeout=30)
    answer.raise_for_status()
    servers = answer.json()
    print(f"{len(servers)} remote servers")
    for name, details in servers.items():
        print(f"  {name}: {details.get('Url')}")
    if not (args.server and args.study):
        return 0

    # 2. The study's PatientID, then its Orthanc identifier.
    answer = http.get(f"{root}/studies", params={"StudyInstanceUID": args.study,
                                                 "includefield": "PatientID"}, timeout=30)
    answer.raise_for_status()
    if not answer.json():
        print(f"study {args.study} is not on {root}", file=sys.stderr)
        return 1
    patient_id = answer.json()[0].get("00100020", {}).get("Value", [""])[0]
    study_id = orthanc_id(patient_id, args.study)
    print(f"study {args.study} (PatientID {patient_id!r}) is {study_id}")

    # 3. Send it as a job.
    answer = http.post(f"{root}/servers/{args.server}/stow",
                       json={"Resources": [study_id], "Synchronous": False}, timeout=30)
    answer.raise_for_status()
    job = answer.json()
    print(f"job {job['ID']} started")

    # 4. Follow the job (its Path is on the daemon's REST root, e.g. /jobs/{id}).
    job_url = urljoin(root + "/", job["Path"])
    last = None
    while True:
        answer = http.get(job_url, timeout=30)
        answer.raise_for_status()
        state = answer.json()
        if (state["State"], state["Progress"]) != last:
            last = (state["State"], state["Progress"])
            print(f"job {state['State']}, {state['Progress']}%")
        if state["State"] in ("Success", "Failure"):
            break
        time.sleep(args.poll)
    if state["State"] == "Failure":
        print(f"job failed: {state.get('ErrorDescription')}", file=sys.stderr)
        return 1
    result = state.get("Result") or {}
    print("sent {Sent} instances in {Requests} requests: {Stored} stored, {Failed} failed"
          .format(**{k: result.get(k) for k in ("Sent", "Requests", "Stored", "Failed")}))

    # 5. Ask the remote, through the daemon, whether it now has the study.
    answer = http.post(f"{root}/servers/{args.server}/get",
                       json={"Uri": f"/studies?StudyInstanceUID={args.study}"}, timeout=30)
    answer.raise_for_status()
    found = answer.json()
    print(f"remote {args.server} has the study: {'yes' if found else 'no'}")
    return 0 if found and not result.get("Failed") else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a sample: say what failed, exit non-zero
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
