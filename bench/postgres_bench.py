#!/usr/bin/env python3
"""Index back-ends side by side: SQLite (embedded) vs PostgreSQL (shared), over HTTP.

For each back-end a daemon (``twistd -n dicomweb``) is started on a loopback port with a temp
storage directory; PostgreSQL uses a fresh schema of database ``test`` on 127.0.0.1:5432
(dropped at the end). Then:

- ingest: ``--studies`` studies x 2 series x 5 small synthetic instances (no pixel data),
  ``POST /instances`` from ``--clients`` concurrent keep-alive connections; instances/s;
- QIDO: a few typical searches, each ``--repeat`` times on one keep-alive connection after a
  warm-up; median and p95 latency in ms.
- with ``--scale-out``: two PostgreSQL daemons sharing the schema and the storage, the
  clients split between them (ingest throughput of the pair).

Usage (from the repository root)::

    python bench/postgres_bench.py                     # 300 studies (3,000 instances)
    python bench/postgres_bench.py --studies 1000 --repeat 50 --scale-out
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import psycopg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

HOST = "127.0.0.1"
PORTS = (8251, 8252)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instance(study: int, series: int, number: int) -> bytes:
    """A small Part 10 instance (no pixel data)."""
    root = "1.2.826.0.1.3680043.8.498.77"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = f"{root}.{study}.{series}.{number}"
    ds.StudyInstanceUID = f"{root}.{study}"
    ds.SeriesInstanceUID = f"{root}.{study}.{series}"
    ds.PatientID = f"P{study % 500:04d}"
    ds.PatientName = f"Name{study % 500}^Given{study % 7}"
    ds.StudyDate = f"2020{1 + study % 12:02d}{1 + study % 28:02d}"
    ds.AccessionNumber = f"A{study:06d}"
    ds.StudyDescription = ["Brain", "Chest", "Abdomen"][study % 3]
    ds.Modality = ["CT", "MR"][series % 2]
    ds.SeriesNumber = series
    ds.InstanceNumber = number
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def start(directory: str, port: int, postgres_uri: str | None) -> subprocess.Popen:
    # one process each (Workers: 1): the figures compare index back-ends, not process counts
    config: dict[str, Any] = {"HttpPort": port, "Workers": 1,
                              "StorageDirectory": os.path.join(directory, "storage")}
    if postgres_uri:
        config["PostgreSQL"] = {"EnableIndex": True, "ConnectionUri": postgres_uri}
    path = os.path.join(directory, f"config-{port}.json")
    with open(path, "w") as fp:
        json.dump(config, fp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "twisted", "dicomweb", "--config", path],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, f"{port}.log"),
                                                            "w"))
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/system")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"daemon on port {port} did not start (see {directory})")


def ingest(ports: list[int], datas: list[bytes], clients: int) -> float:
    """Instances per second, ``clients`` connections spread over ``ports``."""
    chunks = [datas[i::clients] for i in range(clients)]
    errors: list[str] = []

    def work(n: int) -> None:
        conn = http.client.HTTPConnection(HOST, ports[n % len(ports)], timeout=60)
        for data in chunks[n]:
            conn.request("POST", "/instances", body=data,
                         headers={"Content-Type": "application/dicom"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed uploads: {errors[:5]}")
    return len(datas) / elapsed


QUERIES = {
    "all studies, limit=100": "/dicom-web/studies?limit=100",
    "PatientID=P0042": "/dicom-web/studies?PatientID=P0042",
    "PatientName=Name1*": "/dicom-web/studies?PatientName=Name1*&limit=50",
    "StudyDate range + Modality": "/dicom-web/studies?StudyDate=20200301-20200430&Modality=MR",
    "series of one study": "/dicom-web/studies/1.2.826.0.1.3680043.8.498.77.7/series",
    "instances of one series": "/dicom-web/studies/1.2.826.0.1.3680043.8.498.77.7/series/"
                               "1.2.826.0.1.3680043.8.498.77.7.1/instances",
}


def qido(port: int, repeat: int) -> dict[str, tuple[float, float]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    out = {}
    for name, path in QUERIES.items():
        times = []
        for n in range(repeat + 3):
            began = time.perf_counter()
            conn.request("GET", path, headers={"Accept": "application/dicom+json"})
            response = conn.getresponse()
            response.read()
            if response.status not in (200, 204):
                raise RuntimeError(f"{path}: {response.status}")
            if n >= 3:
                times.append((time.perf_counter() - began) * 1000)
        times.sort()
        out[name] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--scale-out", action="store_true")
    parser.add_argument("--dsn", default=f"host={HOST} port=5432 dbname=test")
    args = parser.parse_args()
    datas = [instance(st, se, n) for st in range(args.studies) for se in (1, 2)
             for n in range(1, 6)]
    schema = "dwd_bench_" + uuid.uuid4().hex[:8]
    info = psycopg.conninfo.conninfo_to_dict(args.dsn)
    user = info.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    uri = (f"postgresql://{user}@{info.get('host', HOST)}:{info.get('port', 5432)}/"
           f"{info.get('dbname', 'test')}?options=-csearch_path%3D{schema}")
    print(f"{len(datas)} instances, {args.clients} clients, {args.repeat} repeats per query")
    results: dict[str, Any] = {}
    runs = [("SQLite", None, 1), ("PostgreSQL", uri, 1)]
    if args.scale_out:
        runs.append(("PostgreSQL x2", uri, 2))
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        for label, postgres_uri, daemons in runs:
            directory = tempfile.mkdtemp(prefix="dwd-pgbench-")
            if postgres_uri:
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                admin.execute(f"CREATE SCHEMA {schema}")
            procs = [start(directory, PORTS[n], postgres_uri) for n in range(daemons)]
            try:
                rate = ingest(list(PORTS[:daemons]), datas, args.clients)
                results[label] = (rate, qido(PORTS[daemons - 1], args.repeat))
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(30)
                shutil.rmtree(directory, ignore_errors=True)
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(f"\n{'ingest (instances/s)':34}" + "".join(f"{k:>22}" for k in results))
    print(f"{'':34}" + "".join(f"{r[0]:>22.0f}" for r in results.values()))
    print(f"\n{'QIDO median / p95 ms':34}" + "".join(f"{k:>22}" for k in results))
    for name in QUERIES:
        cells = "".join(f"{r[1][name][0]:>13.1f} / {r[1][name][1]:>6.1f}"
                        for r in results.values())
        print(f"{name:34}{cells}")


if __name__ == "__main__":
    main()
