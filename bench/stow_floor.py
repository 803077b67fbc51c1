#!/usr/bin/env python3
"""The floor under STOW-RS throughput in Python: a bare Twisted web server that only stores
each request body as one file (temporary file, fsync, rename), with no multipart parsing, no
DICOM parsing and no index, measured with the client and data of ``stow_bench.py``.

It shows how many instances per second one Python process (or several sharing the port with
``SO_REUSEPORT``) can take on this machine before dwdaemon does any DICOM work, to compare
with dwdaemon and Orthanc (run ``stow_bench.py`` for those)::

    python bench/stow_floor.py                    # 1 and 2 processes, with fsync
    python bench/stow_floor.py --mode null        # bodies received and dropped
    python bench/stow_floor.py --processes 1 2 3 --instances 1000

Port 8150 (loopback); storage in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import HOST, CTFactory, wait_port
from stow_bench import make_bodies, run_throughput

PORT = 8150

SERVER = r'''
import io, os, socket, sys, uuid
from twisted.internet import reactor, threads
from twisted.web import resource, server

root, mode = sys.argv[2], sys.argv[3]
os.makedirs(root + "/.tmp", exist_ok=True)

def store(data):
    if mode == "null":
        return
    tmp = f"{root}/.tmp/{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        if mode == "fsync":
            f.flush()
            os.fsync(f.fileno())
    name = uuid.uuid4().hex
    directory = f"{root}/{name[:2]}/{name[2:4]}"
    os.makedirs(directory, exist_ok=True)
    os.rename(tmp, f"{directory}/{name}")

class Body(server.Request):
    def gotLength(self, length):
        self.content = io.BytesIO()

class Store(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        return b"{}"
    def render_POST(self, request):
        d = threads.deferToThread(store, request.content.getvalue())
        def done(_):
            request.setHeader(b"content-type", b"application/dicom+json")
            request.write(b"{}")
            request.finish()
        d.addCallback(done)
        return server.NOT_DONE_YET

site = server.Site(Store())
site.requestFactory = Body
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(128)
sock.setblocking(False)
reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, site)
sock.close()
reactor.run()
'''


class Floor:
    """``processes`` copies of the bare server sharing the port (the stow_bench Server API)."""

    name = "floor"
    root = "/dicom-web/"

    def __init__(self, processes: int, mode: str) -> None:
        self.port = PORT
        self.directory = tempfile.mkdtemp(prefix="stow-floor-")
        self.procs = [subprocess.Popen([sys.executable, "-c", SERVER, str(PORT), self.directory,
                                        mode]) for _ in range(processes)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mode", choices=["fsync", "nofsync", "null"], default="fsync")
    p.add_argument("--instances", type=int, default=600)
    args = p.parse_args()
    factory = CTFactory()
    print(f"bare Twisted server on {HOST}:{PORT}, mode {args.mode}: one file per body")
    print(f"{'processes':>9} {'clients':>7} {'inst/req':>8} {'inst/s':>8} {'CPUms/inst':>10}")
    for processes in args.processes:
        floor = Floor(processes, args.mode)
        try:
            wait_port(PORT, "/")
            for clients in (1, 4):
                r = run_throughput(floor, make_bodies(factory, args.instances, 1), clients)
                print(f"{processes:9d} {clients:7d} {1:8d} {r['inst_per_s']:8.1f} "
                      f"{r['cpu_ms_per_instance']:10.2f} {r['errors'] or ''}", flush=True)
        finally:
            floor.stop()


if __name__ == "__main__":
    main()
