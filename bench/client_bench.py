#!/usr/bin/env python3
"""DICOMweb client benchmark: dwdaemon's ``servers/{name}/retrieve`` and ``/stow`` vs Orthanc's.

One dwdaemon "B" serves a generated study (N CT instances, 512x512 16-bit, ~0.5 MB each).
Two clients pull the whole study from B by WADO-RS, then push it back by STOW-RS:
dwdaemon "A" and Orthanc 1.10 + DICOMweb plugin 1.7, both declaring B as server ``b``.
Reports seconds and MB/s for each, and A's peak RSS growth (VmHWM) during the retrieve
(the study is streamed to disk part by part, never held in memory).

Usage (from the repository root)::

    python bench/client_bench.py                 # 200 instances (~100 MB)
    python bench/client_bench.py --instances 1000

Ports: B 127.0.0.1:8341, A 127.0.0.1:8342, Orthanc 127.0.0.1:8343 (started and stopped here,
temporary configurations and storage).
"""

from __future__ import annotations

import argparse
import json
import time

from benchlib import Client, CTFactory, Orthanc, Ours, Server, request
from pydicom.uid import generate_uid

B_PORT, A_PORT, ORTHANC_PORT = 8341, 8342, 8343
B_SERVER = {"b": [f"http://127.0.0.1:{B_PORT}/dicom-web/"]}


def timed(port: int, path: str, doc: dict) -> tuple[float, dict]:
    start = time.monotonic()
    status, body = request(port, "POST", path, json.dumps(doc).encode())
    elapsed = time.monotonic() - start
    if status != 200:
        raise RuntimeError(f"{path} on {port}: HTTP {status}: {body[:300]!r}")
    return elapsed, json.loads(body) if body.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    args = parser.parse_args()
    timeout = {"HttpTimeout": 600}
    b = Ours(B_PORT, config=timeout)
    a = Ours(A_PORT, config={**timeout, "DicomWeb": {"Servers": B_SERVER}})
    orthanc = Orthanc(ORTHANC_PORT, config={**timeout, "DicomWeb": {"Servers": B_SERVER}})
    servers: list[Server] = []
    try:
        for server in (b, a, orthanc):
            servers.append(server)
            server.start()

        factory = CTFactory()
        study, series = generate_uid(), generate_uid()
        total = 0
        client = Client(B_PORT)
        for _ in range(args.instances):
            data = factory.make(study, series)
            total += len(data)
            client.store(data)
        client.close()
        mb = total / 1e6
        print(f"study: {args.instances} instances, {mb:.1f} MB on B")

        retrieve = {"Resources": [{"Study": study}]}
        rss_before = a.status("VmHWM") / 1024
        t_ours, answer = timed(A_PORT, "/dicom-web/servers/b/retrieve", retrieve)
        assert len(answer["Instances"]) == args.instances, answer
        rss_after = a.status("VmHWM") / 1024
        t_orthanc, _ = timed(ORTHANC_PORT, "/dicom-web/servers/b/retrieve", retrieve)
        status, body = request(ORTHANC_PORT, "GET", "/instances")
        assert len(json.loads(body)) == args.instances
        print(f"retrieve  dwdaemon {t_ours:6.2f} s ({mb / t_ours:6.1f} MB/s)   "
              f"Orthanc {t_orthanc:6.2f} s ({mb / t_orthanc:6.1f} MB/s)")
        print(f"dwdaemon peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after the "
              f"retrieve (+{rss_after - rss_before:.0f} MB for a {mb:.0f} MB study)")

        status, body = request(A_PORT, "GET", "/studies")
        ours_ids = json.loads(body)
        status, body = request(ORTHANC_PORT, "GET", "/studies")
        orthanc_ids = json.loads(body)
        t_ours, answer = timed(A_PORT, "/dicom-web/servers/b/stow", {"Resources": ours_ids})
        assert answer["Stored"] == args.instances, answer
        t_orthanc, _ = timed(ORTHANC_PORT, "/dicom-web/servers/b/stow",
                             {"Resources": orthanc_ids})
        print(f"stow      dwdaemon {t_ours:6.2f} s ({mb / t_ours:6.1f} MB/s, "
              f"{answer['Requests']} requests)   "
              f"Orthanc {t_orthanc:6.2f} s ({mb / t_orthanc:6.1f} MB/s)")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
