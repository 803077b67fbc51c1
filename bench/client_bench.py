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
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from stow_bench import CTFactory  # noqa: E402  (same generated data as the STOW bench)

B_PORT, A_PORT, ORTHANC_PORT = 8341, 8342, 8343
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def request(port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = 3600) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def wait_up(port: int, path: str = "/system") -> None:
    for _ in range(200):
        try:
            if request(port, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def start_dwdaemon(directory: str, port: int, extra: dict) -> subprocess.Popen:
    os.makedirs(directory, exist_ok=True)
    config = {"HttpPort": port, "StorageDirectory": os.path.join(directory, "storage"),
              "HttpTimeout": 600, **extra}
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(directory, "log"), "w")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "twisted", "dicomweb", "--config", path],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_up(port)
    return proc


def start_orthanc(directory: str) -> subprocess.Popen:
    os.makedirs(directory, exist_ok=True)
    config = {"Name": "bench", "HttpPort": ORTHANC_PORT, "DicomServerEnabled": False,
              "StorageDirectory": os.path.join(directory, "db"),
              "IndexDirectory": os.path.join(directory, "db"), "HttpTimeout": 600,
              "Plugins": [ORTHANC_PLUGIN],
              "DicomWeb": {"Enable": True,
                           "Servers": {"b": [f"http://127.0.0.1:{B_PORT}/dicom-web/"]}}}
    path = os.path.join(directory, "orthanc.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(directory, "log"), "w")
    proc = subprocess.Popen(["/usr/sbin/Orthanc", path], stdout=log, stderr=subprocess.STDOUT)
    wait_up(ORTHANC_PORT)
    return proc


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


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
    tmp = tempfile.mkdtemp(prefix="dwd-client-bench-")
    procs: list[subprocess.Popen] = []
    try:
        b = start_dwdaemon(os.path.join(tmp, "b"), B_PORT, {})
        procs.append(b)
        a = start_dwdaemon(os.path.join(tmp, "a"), A_PORT, {
            "DicomWeb": {"Servers": {"b": [f"http://127.0.0.1:{B_PORT}/dicom-web/"]}}})
        procs.append(a)
        orthanc = start_orthanc(os.path.join(tmp, "orthanc"))
        procs.append(orthanc)

        factory = CTFactory()
        from pydicom.uid import generate_uid

        study, series = generate_uid(), generate_uid()
        total = 0
        for _ in range(args.instances):
            data = factory.make(study, series)
            total += len(data)
            status, body = request(B_PORT, "POST", "/instances", data)
            assert status == 200, body
        mb = total / 1e6
        print(f"study: {args.instances} instances, {mb:.1f} MB on B")

        retrieve = {"Resources": [{"Study": study}]}
        rss_before = peak_rss_mb(a.pid)
        t_ours, answer = timed(A_PORT, "/dicom-web/servers/b/retrieve", retrieve)
        assert len(answer["Instances"]) == args.instances, answer
        rss_after = peak_rss_mb(a.pid)
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
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
