#!/usr/bin/env python3
"""STOW-RS benchmark: dwdaemon vs Orthanc + DICOMweb plugin, same data, same run.

Throughput: generated CT instances (512x512, 16-bit, explicit VR little endian, unique UIDs)
sent by 1 and 4 concurrent clients with 1 and 50 instances per request.
Memory: one chunked STOW of a ~2 GB body (generated to a temp file) against dwdaemon,
measuring the increase of its peak RSS (VmHWM).

Worker processes: dwdaemon runs once per ``--workers`` count (default ``1,2``), each named
``dwdaemon-wN``; CPU time and RSS are summed over the parent and its workers.  The four
configurations are run server after server (alternating), and the ratios to Orthanc and to
the 1.5x goal are printed, with CPU milliseconds per instance.

Usage (from the repository root)::

    python bench/stow_bench.py                  # everything
    python bench/stow_bench.py --skip-memory    # throughput only
    python bench/stow_bench.py --memory-gb 2 --instances 400
    python bench/stow_bench.py --workers 1,2,4 --rounds 3 --skip-memory
    python bench/stow_bench.py --warmup 0       # measure fresh servers (no warm-up)

Ports: dwdaemon 127.0.0.1:8141 (+1 per worker count), Orthanc 127.0.0.1:8140 (all started and
stopped here, with temporary configurations and storage).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from benchlib import DICOM_JSON, Client, CTFactory, Orthanc, Ours, Server, file_chunks
from pydicom.uid import generate_uid

OURS_PORT = 8141
ORTHANC_PORT = 8140
GOAL = 1.5
BOUNDARY = b"stow-bench-boundary-6b1f0c"
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=' + BOUNDARY.decode()


def part(data: bytes) -> bytes:
    """One part of a multipart/related STOW body (without the closing delimiter)."""
    return b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"


def multipart(parts: list[bytes]) -> bytes:
    """A multipart/related STOW body."""
    return b"".join([part(p) for p in parts] + [b"--" + BOUNDARY + b"--\r\n"])


class OursWorkers(Ours):
    """dwdaemon with ``Workers`` set; CPU time and memory summed over parent and workers."""

    def __init__(self, port: int, workers: int) -> None:
        super().__init__(port, config={"Workers": workers})
        self.name = f"dwdaemon-w{workers}"
        self.workers = workers

    def pids(self) -> list[int]:
        """The parent and its live children (the workers)."""
        out = [self.pid]
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.pid:
                            out.append(int(name))
                except OSError:
                    continue
        return out

    def status(self, key: str) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(line.split()[1]) for line in f
                                   if line.startswith(key + ":")), 0)
            except OSError:
                continue
        return total

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


# -- clients ----------------------------------------------------------------------------------

def stow(client: Client, server: Server, body: bytes | Iterator[bytes],
         chunked: bool = False) -> tuple[int, bytes]:
    """POST a STOW body to the server's ``studies``; return (status, response body)."""
    return client.post(server.root + "studies", body, CONTENT_TYPE, DICOM_JSON, chunked)


def run_throughput(server: Server, bodies: list[tuple[bytes, int]], clients: int) -> dict:
    """Send all bodies with ``clients`` concurrent keep-alive connections."""
    lock = threading.Lock()
    queue = list(bodies)
    errors: list[str] = []

    def worker() -> None:
        client = Client(server.port)
        while True:
            with lock:
                if not queue:
                    break
                body, _n = queue.pop()
            status, data = stow(client, server, body)
            if status != 200:
                errors.append(f"{status} {data[:200]!r}")
        client.close()

    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    elapsed = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    n = sum(k for _, k in bodies)
    size = sum(len(b) for b, _ in bodies)
    return {"instances": n, "seconds": elapsed, "inst_per_s": n / elapsed,
            "mb_per_s": size / elapsed / 1e6, "errors": len(errors),
            "cpu_ms_per_instance": cpu * 1000 / n,
            "first_error": errors[0] if errors else ""}


def make_bodies(factory: CTFactory, total: int, per_request: int) -> list[tuple[bytes, int]]:
    """Bodies holding ``total`` new instances, ``per_request`` per body (one study per body)."""
    out = []
    for start in range(0, total, per_request):
        k = min(per_request, total - start)
        study, series = generate_uid(), generate_uid()
        out.append((multipart([factory.make(study, series) for _ in range(k)]), k))
    return out


def throughput(args: argparse.Namespace, servers: list[Server]) -> None:
    factory = CTFactory()
    print(f"{'server':12} {'clients':>7} {'inst/req':>8} {'instances':>9} {'s':>7} "
          f"{'inst/s':>8} {'MB/s':>7} {'CPUms/inst':>10} errors")
    results: dict[tuple[str, int, int], list[dict]] = {}
    if args.warmup:
        # Each server first stores instances that are not measured: a long-running daemon's
        # steady state (dwdaemon: its window of recently stored files in the page cache is
        # full, RecentlyStoredCacheSize; both: caches, thread pools, index pages).
        for server in servers:
            run_throughput(server, make_bodies(factory, args.warmup, 50), 4)
        print(f"(warm-up: {args.warmup} instances stored in each server first, not measured)")
    for _round in range(args.rounds):
        for per_request in (1, 50):
            for clients in (1, 4):
                for server in servers:
                    bodies = make_bodies(factory, args.instances, per_request)
                    r = run_throughput(server, bodies, clients)
                    results.setdefault((server.name, clients, per_request), []).append(r)
                    print(f"{server.name:12} {clients:7d} {per_request:8d} {r['instances']:9d} "
                          f"{r['seconds']:7.2f} {r['inst_per_s']:8.1f} {r['mb_per_s']:7.1f} "
                          f"{r['cpu_ms_per_instance']:10.2f} "
                          f"{r['errors']} {r['first_error']}", flush=True)
                    del bodies

    def median(name: str, clients: int, per_request: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, clients, per_request)])

    print(f"\nmedians of {args.rounds} round(s):")
    names = [s.name for s in servers]
    for per_request in (1, 50):
        for clients in (1, 4):
            line = f"clients={clients} inst/req={per_request:2d}:"
            for name in names:
                line += (f"  {name} {median(name, clients, per_request, 'inst_per_s'):6.1f}/s"
                         f" {median(name, clients, per_request, 'cpu_ms_per_instance'):5.2f}ms")
            print(line)
    if "orthanc" in names:
        for name in names:
            if name == "orthanc":
                continue
            for per_request in (1, 50):
                for clients in (1, 4):
                    a = median(name, clients, per_request, "inst_per_s")
                    b = median("orthanc", clients, per_request, "inst_per_s")
                    print(f"ratio {name}/orthanc clients={clients} inst/req={per_request}: "
                          f"{a / b:.2f}x (goal {GOAL}x: {a / b / GOAL * 100:.0f}%)")


def memory(args: argparse.Namespace, server: Server) -> None:
    """One chunked STOW of a ~``args.memory_gb`` GB body; report the peak RSS increase."""
    factory = CTFactory()
    study, series = generate_uid(), generate_uid()
    path = os.path.join(tempfile.gettempdir(), "stow-bench-2gb.body")
    target = int(args.memory_gb * (1 << 30))
    n = 0
    with open(path, "wb") as f:
        size = 0
        while size < target:
            chunk = part(factory.make(study, series))
            f.write(chunk)
            size += len(chunk)
            n += 1
        f.write(b"--" + BOUNDARY + b"--\r\n")
    size = os.path.getsize(path)

    rss0 = server.status("VmRSS")
    hwm0 = server.status("VmHWM")
    t0 = time.perf_counter()
    status, data = stow(Client(server.port, timeout=3600), server, file_chunks(path), chunked=True)
    elapsed = time.perf_counter() - t0
    hwm1 = server.status("VmHWM")
    os.unlink(path)
    stored = 0
    if status in (200, 202):
        stored = len(json.loads(data).get("00081199", {}).get("Value", []))
    print(f"memory: body {size / 1e9:.2f} GB, {n} instances, status {status}, "
          f"{stored} stored, {elapsed:.1f} s ({size / elapsed / 1e6:.1f} MB/s)")
    print(f"memory: VmRSS before {rss0 / 1024:.1f} MB, VmHWM before {hwm0 / 1024:.1f} MB, "
          f"VmHWM after {hwm1 / 1024:.1f} MB -> peak increase {(hwm1 - max(rss0, 0)) / 1024:.1f} MB"
          f" (over previous peak: {(hwm1 - hwm0) / 1024:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--instances", type=int, default=300,
                   help="instances per throughput configuration (default 300)")
    p.add_argument("--memory-gb", type=float, default=2.0, help="size of the memory-test body")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-orthanc", action="store_true")
    p.add_argument("--only-memory", action="store_true")
    p.add_argument("--workers", default="1,2",
                   help="comma-separated worker counts of dwdaemon (default 1,2)")
    p.add_argument("--warmup", type=int, default=1200,
                   help="instances stored in each server before measuring (default 1200, "
                        "~630 MB: fills the page-cache window of recent files of 2 workers)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of the four configurations (medians are reported)")
    p.add_argument("--port", type=int, default=OURS_PORT,
                   help=f"first loopback port of dwdaemon (default {OURS_PORT}; another one "
                        "when other benchmarks run on this machine)")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n]

    servers: list[Server] = []
    try:
        if not args.only_memory:
            for i, n in enumerate(counts):
                ours = OursWorkers(args.port + i, n)
                servers.append(ours)
                ours.start()
            if not args.skip_orthanc:
                orthanc = Orthanc(ORTHANC_PORT)
                servers.append(orthanc)
                orthanc.start()
            throughput(args, servers)
            for server in list(servers):
                server.stop()
                servers.remove(server)
        if not args.skip_memory:
            # A fresh daemon for the memory test, so the figure is the STOW's alone.
            ours = OursWorkers(args.port, counts[0])
            servers.append(ours)
            ours.start()
            memory(args, ours)
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
