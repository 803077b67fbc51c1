#!/usr/bin/env python3
"""STOW-RS benchmark: dwdaemon vs Orthanc + DICOMweb plugin, same data, same run.

Throughput: generated CT instances (512x512, 16-bit, explicit VR little endian, unique UIDs)
sent by 1 and 4 concurrent clients with 1 and 50 instances per request.
Memory: one chunked STOW of a ~2 GB body (generated to a temp file) against dwdaemon,
measuring the increase of its peak RSS (VmHWM).

Usage (from the repository root)::

    python bench/stow_bench.py                  # everything
    python bench/stow_bench.py --skip-memory    # throughput only
    python bench/stow_bench.py --memory-gb 2 --instances 400

Ports: dwdaemon 127.0.0.1:8141, Orthanc 127.0.0.1:8142 (both started and stopped here, with
temporary configurations and storage).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OURS_PORT = 8141
ORTHANC_PORT = 8142
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
BOUNDARY = b"stow-bench-boundary-6b1f0c"


# -- data -------------------------------------------------------------------------------------

class CTFactory:
    """Makes 512x512 16-bit CT instances, explicit VR LE, unique UIDs, quickly."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.pixels = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
        self.count = 0

    def make(self, study: str, series: str) -> bytes:
        """One encoded DICOM file."""
        self.count += 1
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientName = "BENCH^STOW"
        ds.PatientID = "BENCH-" + study[-8:]
        ds.StudyDate = "20240101"
        ds.Modality = "CT"
        ds.InstanceNumber = self.count
        ds.ImagePositionPatient = [0, 0, self.count]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1
        ds.Rows = 512
        ds.Columns = 512
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = self.pixels
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()


def multipart(parts: list[bytes]) -> bytes:
    """A multipart/related STOW body."""
    out = []
    for p in parts:
        out.append(b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n")
        out.append(p)
        out.append(b"\r\n")
    out.append(b"--" + BOUNDARY + b"--\r\n")
    return b"".join(out)


CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=' + BOUNDARY.decode()


# -- servers ----------------------------------------------------------------------------------

def wait_port(port: int, path: str, timeout: float = 60) -> None:
    """Wait until an HTTP GET answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port}")


class Server:
    """A server process started with a temp directory, stopped by ``stop()``."""

    name = ""
    port = 0
    root = "/dicom-web/"

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix=f"stowbench-{self.name}-")
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.tmp, "server.log"), "wb")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, True)

    def cpu_seconds(self) -> float:
        """User + system CPU time used by the server process so far."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self, key: str) -> int:
        """A /proc/<pid>/status value in kB."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0


class Ours(Server):
    name = "dwdaemon"
    port = OURS_PORT

    def start(self) -> None:
        cfg = {
            "Name": "bench",
            "HttpPort": self.port,
            "StorageDirectory": os.path.join(self.tmp, "storage"),
            "IndexDirectory": os.path.join(self.tmp, "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomWeb": {"Enable": True, "Root": self.root},
        }
        path = os.path.join(self.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twisted", "dicomweb", "--config", path],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.root + "studies")


class Orthanc(Server):
    name = "orthanc"
    port = ORTHANC_PORT

    def start(self) -> None:
        cfg = {
            "Name": "bench-orthanc",
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "StorageDirectory": os.path.join(self.tmp, "storage"),
            "IndexDirectory": os.path.join(self.tmp, "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [ORTHANC_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": self.root},
        }
        path = os.path.join(self.tmp, "orthanc.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.proc = subprocess.Popen(["/usr/sbin/Orthanc", path], cwd=self.tmp,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, "/system")


# -- clients ----------------------------------------------------------------------------------

def post(port: int, path: str, body: bytes | Iterator[bytes], chunked: bool = False,
         conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """POST a STOW body; return (status, response body)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/dicom+json"}
    if chunked:
        c.request("POST", path, body=body, headers=headers, encode_chunked=True)
    else:
        c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def run_throughput(server: Server, bodies: list[tuple[bytes, int]], clients: int) -> dict:
    """Send all bodies with ``clients`` concurrent keep-alive connections."""
    lock = threading.Lock()
    queue = list(bodies)
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        while True:
            with lock:
                if not queue:
                    break
                body, _n = queue.pop()
            status, data = post(server.port, server.root + "studies", body, conn=conn)
            if status != 200:
                errors.append(f"{status} {data[:200]!r}")
        conn.close()

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
    print(f"{'server':10} {'clients':>7} {'inst/req':>8} {'instances':>9} {'s':>7} "
          f"{'inst/s':>8} {'MB/s':>7} {'CPUms/inst':>10} errors")
    results: dict[tuple[str, int, int], dict] = {}
    for per_request in (1, 50):
        for clients in (1, 4):
            for server in servers:
                bodies = make_bodies(factory, args.instances, per_request)
                r = run_throughput(server, bodies, clients)
                results[(server.name, clients, per_request)] = r
                print(f"{server.name:10} {clients:7d} {per_request:8d} {r['instances']:9d} "
                      f"{r['seconds']:7.2f} {r['inst_per_s']:8.1f} {r['mb_per_s']:7.1f} "
                      f"{r['cpu_ms_per_instance']:10.2f} "
                      f"{r['errors']} {r['first_error']}", flush=True)
                del bodies
    if len(servers) == 2:
        for per_request in (1, 50):
            for clients in (1, 4):
                a = results[("dwdaemon", clients, per_request)]["inst_per_s"]
                b = results[("orthanc", clients, per_request)]["inst_per_s"]
                print(f"ratio dwdaemon/orthanc clients={clients} inst/req={per_request}: "
                      f"{a / b:.2f}x")


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
            part = factory.make(study, series)
            chunk = (b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n"
                     + part + b"\r\n")
            f.write(chunk)
            size += len(chunk)
            n += 1
        f.write(b"--" + BOUNDARY + b"--\r\n")
    size = os.path.getsize(path)

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    return
                yield b

    rss0 = server.status("VmRSS")
    hwm0 = server.status("VmHWM")
    t0 = time.perf_counter()
    status, data = post(server.port, server.root + "studies", chunks(), chunked=True)
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
    args = p.parse_args(argv)

    servers: list[Server] = []
    try:
        ours = Ours()
        ours.start()
        servers.append(ours)
        if not args.only_memory:
            if not args.skip_orthanc:
                orthanc = Orthanc()
                orthanc.start()
                servers.append(orthanc)
            throughput(args, servers)
        if not args.skip_memory:
            # A fresh daemon for the memory test, so the figure is the STOW's alone.
            ours.stop()
            servers.remove(ours)
            ours = Ours()
            ours.start()
            servers.append(ours)
            memory(args, ours)
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
