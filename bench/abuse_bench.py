#!/usr/bin/env python3
"""Latency of normal requests while hostile clients abuse the server (loopback only).

A probe client (source address 127.0.0.1) sends ``GET /system`` and a QIDO-RS search in turn,
each on a fresh connection, every ``--interval`` seconds, while one abuse runs at a time from
other loopback source addresses (127.0.0.2 and up, so that the per-client connection cap
applies to the abuser, not to the probe):

- ``baseline``: no abuse;
- ``slowloris``: ``--slow`` connections sending their request head one byte per second;
- ``idle``: ``--idle`` connections opened and left silent, spread over 10 addresses;
- ``big-heads``: 4 clients sending 100 KB request lines and 200 KB of headers in a loop;
- ``big-bodies``: 4 clients declaring 100 GB bodies and streaming them as fast as they can;
- ``queries``: 8 clients running QIDO-RS searches back to back;
- ``rendering``: 8 clients asking rendered 512x512 JPEGs back to back (pixel work).

Each phase lasts ``--seconds`` and everything stops by itself. For each phase it prints the
probe's median, 95th percentile and maximum latency, probe failures, and what the abusers got
(answers by status, connections refused or reset)::

    python bench/abuse_bench.py                       # starts dwdaemon on 127.0.0.1:9310
    python bench/abuse_bench.py --url http://127.0.0.1:8042 --phases slowloris idle
    python bench/abuse_bench.py --orthanc             # also Orthanc + DICOMweb on port + 1
    python bench/abuse_bench.py --phases rendering --daemon-config '{"MaximumPixelJobs": 8}'

``--url`` must name a loopback address: the script refuses to abuse anything else. With the
started daemon, the store is temporary and removed at the end; one generated CT instance is
uploaded for the searches and rendering.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import ipaddress
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from benchlib import CTFactory, Orthanc, Ours

PHASES = ("baseline", "slowloris", "idle", "big-heads", "big-bodies", "queries", "rendering")


class Target:
    """The server under test: host, port, DICOMweb root, and one stored instance's URL."""

    def __init__(self, host: str, port: int, root: str) -> None:
        self.host, self.port, self.root = host, port, root.rstrip("/")
        self.instance_path: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, source: str = "127.0.0.1",
                timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                          source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def connect(self, source: str, timeout: float = 10) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout,
                                        source_address=(source, 0))

    def seed(self) -> None:
        """Store one CT instance (for the searches and rendering)."""
        study, series = "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78"
        sop, data = CTFactory("ABUSE").make_with_uid(study, series)
        status, _ = self.request("POST", "/instances", data,
                                 {"Content-Type": "application/dicom"})
        if status not in (200, 409):
            raise RuntimeError(f"seeding the instance answered {status}")
        self.instance_path = f"{self.root}/studies/{study}/series/{series}/instances/{sop}"


class Tally:
    """Thread-safe counts of what the abusers got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "-"


def _status_of(sock: socket.socket) -> str:
    """The status code the server sent on ``sock`` (or what happened instead)."""
    try:
        data = sock.recv(64)
    except TimeoutError:
        return "no answer"
    except OSError:
        return "reset"
    if not data:
        return "closed"
    parts = data.split(b" ", 2)
    return parts[1].decode("latin-1", "replace") if len(parts) > 1 else "garbage"


# -- abuses -------------------------------------------------------------------------------------

def slowloris(target: Target, stop: threading.Event, tally: Tally, count: int) -> None:
    head = f"GET {target.root}/studies HTTP/1.1\r\nHost: x\r\nX-Slow: {'a' * 4000}\r\n\r\n"
    socks: list[tuple[socket.socket, int]] = []
    for _ in range(count):
        if stop.is_set():
            break
        try:
            s = target.connect("127.0.0.2")
            s.setblocking(False)
            socks.append((s, 0))
        except OSError:
            tally.add("connect failed")
    tally.add("opened", len(socks))
    while not stop.is_set() and socks:
        alive = []
        for s, sent in socks:
            try:
                s.send(head[sent].encode())
                alive.append((s, sent + 1))
            except BlockingIOError:
                alive.append((s, sent))
            except OSError:
                s.setblocking(True)
                s.settimeout(0.2)
                tally.add(f"ended: {_status_of(s)}")
                s.close()
        socks = alive
        stop.wait(1.0)
    tally.add("still open at the end", len(socks))
    for s, _ in socks:
        s.close()


def idle(target: Target, stop: threading.Event, tally: Tally, count: int) -> None:
    socks = []
    for i in range(count):
        if stop.is_set():
            break
        try:
            socks.append(target.connect(f"127.0.0.{2 + i % 10}"))
        except OSError:
            tally.add("connect failed")
    tally.add("opened", len(socks))
    stop.wait()
    refused = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            if s.recv(16).split(b" ")[1:2] == [b"503"]:
                refused += 1
        except (OSError, IndexError):
            pass
        s.close()
    tally.add("answered 503", refused)


def _loop(worker: Callable[[int], None], clients: int, stop: threading.Event) -> None:
    threads = [threading.Thread(target=lambda i=i: _repeat(worker, i, stop), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _repeat(worker: Callable[[int], None], i: int, stop: threading.Event) -> None:
    while not stop.is_set():
        worker(i)


def big_heads(target: Target, stop: threading.Event, tally: Tally) -> None:
    def one(i: int) -> None:
        if i % 2:
            data = f"GET {target.root}/studies?PatientName={'a' * 100_000} HTTP/1.1\r\n"
        else:
            data = "GET /system HTTP/1.1\r\n" + "".join(
                f"X-Filler-{n}: {'b' * 1000}\r\n" for n in range(200)) + "\r\n"
        try:
            s = target.connect(f"127.0.0.{2 + i}")
            s.sendall(data.encode())
            s.settimeout(5)
            tally.add(_status_of(s))
            s.close()
        except OSError:
            tally.add("reset")

    _loop(one, 4, stop)


def big_bodies(target: Target, stop: threading.Event, tally: Tally) -> None:
    chunk = b"\0" * 65536

    def one(i: int) -> None:
        path = f"{target.root}/studies" if i % 2 else f"{target.root}/servers/x"
        method = "POST" if i % 2 else "PUT"
        try:
            s = target.connect(f"127.0.0.{2 + i}")
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related;"
                      f" boundary=x\r\nContent-Length: {100 << 30}\r\n\r\n".encode())
            sent = 0
            s.settimeout(5)
            while not stop.is_set() and sent < (1 << 30):
                s.sendall(chunk)
                sent += len(chunk)
            tally.add("body bytes sent", sent)
            tally.add(_status_of(s))
            s.close()
        except OSError:
            tally.add("reset")

    _loop(one, 4, stop)


def queries(target: Target, stop: threading.Event, tally: Tally) -> None:
    paths = [f"{target.root}/studies?PatientName=*A*&includefield=all",
             f"{target.root}/instances?Modality=CT",
             f"{target.root}/series?StudyDate=20000101-20301231"]

    def one(i: int) -> None:
        try:
            status, _ = target.request("GET", paths[i % len(paths)], source=f"127.0.0.{2 + i}")
            tally.add(str(status))
        except OSError:
            tally.add("error")

    _loop(one, 8, stop)


def rendering(target: Target, stop: threading.Event, tally: Tally) -> None:
    def one(i: int) -> None:
        try:
            status, _ = target.request("GET", f"{target.instance_path}/rendered?quality=95",
                                       headers={"Accept": "image/jpeg"},
                                       source=f"127.0.0.{2 + i}", timeout=60)
            tally.add(str(status))
        except OSError:
            tally.add("error")

    _loop(one, 8, stop)


# -- the probe ----------------------------------------------------------------------------------

def probe(target: Target, stop: threading.Event, interval: float,
          latencies: list[float], failures: collections.Counter[str]) -> None:
    paths = ["/system", f"{target.root}/studies?limit=10"]
    n = 0
    while not stop.is_set():
        path = paths[n % 2]
        n += 1
        start = time.perf_counter()
        try:
            status, _ = target.request("GET", path, timeout=30)
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                failures[str(status)] += 1
        except OSError as exc:
            failures[type(exc).__name__] += 1
        stop.wait(interval)


def run_phase(target: Target, name: str, args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    tally = Tally()
    abuse: dict[str, Callable[[], None]] = {
        "baseline": lambda: stop.wait(),
        "slowloris": lambda: slowloris(target, stop, tally, args.slow),
        "idle": lambda: idle(target, stop, tally, args.idle),
        "big-heads": lambda: big_heads(target, stop, tally),
        "big-bodies": lambda: big_bodies(target, stop, tally),
        "queries": lambda: queries(target, stop, tally),
        "rendering": lambda: rendering(target, stop, tally),
    }
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    abuser = threading.Thread(target=abuse[name], daemon=True)
    abuser.start()
    time.sleep(min(2.0, args.seconds / 4))  # let the abuse ramp up
    prober = threading.Thread(target=probe, args=(target, stop, args.interval, latencies,
                                                  failures), daemon=True)
    prober.start()
    time.sleep(args.seconds)
    stop.set()
    prober.join(35)
    abuser.join(35)
    lat = sorted(latencies)
    ms = [x * 1000 for x in lat]
    return {
        "phase": name, "probes": len(lat) + sum(failures.values()),
        "median": statistics.median(ms) if ms else float("nan"),
        "p95": ms[int(0.95 * (len(ms) - 1))] if ms else float("nan"),
        "max": ms[-1] if ms else float("nan"),
        "failures": ", ".join(f"{k} {v}" for k, v in failures.items()) or "0",
        "abuse": str(tally),
    }


def run_all(target: Target, args: argparse.Namespace, label: str) -> None:
    target.seed()
    print(f"\n{label}: {args.seconds:g} s per phase, probe every {args.interval * 1000:g} ms")
    print(f"{'phase':<11} {'probes':>6} {'median ms':>9} {'p95 ms':>8} {'max ms':>8}  "
          f"{'probe failures':<15} abusers got")
    for name in args.phases:
        r = run_phase(target, name, args)
        print(f"{r['phase']:<11} {r['probes']:>6} {r['median']:>9.1f} {r['p95']:>8.1f} "
              f"{r['max']:>8.1f}  {r['failures']:<15} {r['abuse']}", flush=True)
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server on loopback (default: start dwdaemon)")
    parser.add_argument("--port", type=int, default=9310, help="port of the started daemon")
    parser.add_argument("--root", default="/dicom-web/", help="DICOMweb root")
    parser.add_argument("--orthanc", action="store_true",
                        help="also start Orthanc + DICOMweb on port + 1 and run the same phases")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--interval", type=float, default=0.05, help="probe interval (s)")
    parser.add_argument("--slow", type=int, default=300, help="slowloris connections")
    parser.add_argument("--idle", type=int, default=900, help="idle connections")
    parser.add_argument("--daemon-config", type=json.loads, default={},
                        help='JSON merged into the started daemon\'s configuration, e.g. '
                             '\'{"MaximumPixelJobs": 8}\'')
    args = parser.parse_args()

    if args.url:
        parts = urlsplit(args.url)
        host = parts.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            print(f"refusing to abuse {host!r}: only loopback addresses", file=sys.stderr)
            return 2
        run_all(Target(host, parts.port or 80, args.root), args, args.url)
        return 0
    with Ours(args.port, root=args.root, config=args.daemon_config):
        run_all(Target("127.0.0.1", args.port, args.root), args,
                f"dwdaemon on 127.0.0.1:{args.port}")
    if args.orthanc:
        with Orthanc(args.port + 1, root=args.root):
            orthanc_target = Target("127.0.0.1", args.port + 1, args.root)
            run_all(orthanc_target, args, f"Orthanc on 127.0.0.1:{args.port + 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
