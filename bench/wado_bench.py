#!/usr/bin/env python3
"""WADO-RS benchmark: dwdaemon vs Orthanc + DICOMweb plugin, same data, same run.

Data: a generated CT series (``--instances``, default 320; 512x512, 16-bit, explicit VR little
endian) plus a few of pydicom's shipped multi-frame / compressed files (JPEG 30 frames, RLE,
JPEG 2000, RT dose). Both servers get the same files through ``POST /instances``.

Measured on each server:

* series metadata of the CT series (median of ``--repeat`` requests);
* whole-series retrieve (``multipart/related; type="application/dicom"``, as stored) in MB/s;
* one frame (``application/octet-stream``) and one rendered JPEG, median latency over instances;
* frames and rendered JPEG of the compressed multi-frame files;
* peak RSS increase (``VmHWM``) of a freshly restarted server during two whole-series retrieves.

Usage (from the repository root)::

    python bench/wado_bench.py
    python bench/wado_bench.py --instances 400 --repeat 15

Ports: dwdaemon 127.0.0.1:8341, Orthanc 127.0.0.1:8342 (both started and stopped here, with
temporary configurations and storage).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import pydicom
from benchlib import Client, CTFactory, Orthanc, Ours, Server, upload

OURS_PORT = 8341
ORTHANC_PORT = 8342
TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
EXTRA_FILES = ["examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "rtdose.dcm"]


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


# -- measurements -----------------------------------------------------------------------------

def measure(servers: list[Server], study: str, series: str, sops: list[str],
            extras: list[pydicom.Dataset], repeat: int) -> dict[str, dict[str, float]]:
    """Every measure alternates between the servers request by request (fair under load)."""
    clients = {s.name: Client(s.port) for s in servers}
    out: dict[str, dict[str, float]] = {s.name: {} for s in servers}

    def timed(key: str, paths: list[tuple[str, str | None]], check, summary) -> None:
        samples: dict[str, list[float]] = {s.name: [] for s in servers}
        sizes: dict[str, int] = {}
        for path, accept in paths:
            for server in servers:
                full = server.root.rstrip("/") + path
                status, body, elapsed = clients[server.name].get(full, accept)
                ok = status == 200 and check(body)
                samples[server.name].append(elapsed if ok else float("nan"))
                sizes[server.name] = len(body)
        for name, values in samples.items():
            out[name][key] = summary(values, sizes[name])

    def median(values: list[float], _size: int) -> float:
        return median_ms(values)

    base = f"/studies/{study}/series/{series}"
    json_accept = "application/dicom+json"
    timed("warm-up metadata ms", [(base + "/metadata", json_accept)], lambda b: True, median)
    timed("series metadata median ms", [(base + "/metadata", json_accept)] * repeat,
          lambda b: b[:1] == b"[", median)
    stored = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    timed("series retrieve MB/s", [(base, stored)] * 3, lambda b: len(b) > 1e6,
          lambda values, size: size / statistics.median(values) / 1e6)
    picks = sops[:: max(1, len(sops) // 30)][:30]
    octet = 'multipart/related; type="application/octet-stream"'
    timed("frame median ms", [(f"{base}/instances/{sop}/frames/1", octet) for sop in picks],
          lambda b: len(b) >= 512 * 512 * 2, median)
    timed("rendered jpeg median ms",
          [(f"{base}/instances/{sop}/rendered", "image/jpeg") for sop in picks],
          lambda b: b[:2] == b"\xff\xd8", median)
    for ds in extras:
        inst = (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")
        timed(f"{ds.filename} frame 1 ms", [(inst + "/frames/1", "*/*")] * repeat,
              lambda b: True, median)
        timed(f"{ds.filename} rendered ms", [(inst + "/rendered", "image/jpeg")] * repeat,
              lambda b: b[:2] == b"\xff\xd8", median)
    return out


def peak_rss(server: Server, study: str, series: str) -> dict[str, float]:
    """Restart the server, then the VmHWM increase over two whole-series retrieves."""
    server.restart()
    client = Client(server.port)
    time.sleep(1)
    before = server.status("VmHWM")
    base = f"{server.root.rstrip('/')}/studies/{study}/series/{series}"
    for _ in range(2):
        status, _body, _elapsed = client.get(
            base, 'multipart/related; type="application/dicom"; transfer-syntax=*')
        assert status == 200
    after = server.status("VmHWM")
    return {"VmHWM before MB": before / 1024, "VmHWM after MB": after / 1024,
            "VmHWM delta MB": (after - before) / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args(argv)

    print(f"generating {args.instances} CT instances ...", flush=True)
    study, series, ct = CTFactory("WADO").series(args.instances)
    extras_bytes = []
    extras = []
    for name in EXTRA_FILES:
        with open(os.path.join(TEST_FILES, name), "rb") as f:
            data = f.read()
        extras_bytes.append(data)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        ds.filename = name
        extras.append(ds)
    files = [data for _, data in ct] + extras_bytes
    sops = [sop for sop, _ in ct]
    servers: list[Server] = [Ours(OURS_PORT), Orthanc(ORTHANC_PORT)]
    results: dict[str, dict[str, float]] = {}
    try:
        for server in servers:
            server.start()
            print(f"uploading to {server.name} ...", flush=True)
            upload(server.port, files)
        print("measuring (requests alternate between the servers) ...", flush=True)
        results = measure(servers, study, series, sops, extras, args.repeat)
        for server in servers:
            results[server.name].update(peak_rss(server, study, series))
    finally:
        for server in servers:
            server.stop()
    ours, orthanc = results["dwdaemon"], results["orthanc"]
    print()
    print(f"{'measure':42s} {'dwdaemon':>12s} {'orthanc':>12s} {'ratio':>8s}")
    for key in ours:
        a, b = ours[key], orthanc.get(key, float("nan"))
        ratio = b / a if a else float("nan")
        if "MB/s" in key:
            ratio = a / b if b else float("nan")
        print(f"{key:42s} {a:12.2f} {b:12.2f} {ratio:8.2f}")
    print("\nratio: how many times better dwdaemon is (time: orthanc/ours; MB/s and RSS: "
          "ours/orthanc for MB/s, orthanc/ours for the rest)")


if __name__ == "__main__":
    main()
