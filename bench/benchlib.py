"""Shared machinery of the benchmark scripts in ``bench/``.

- :class:`Ours` / :class:`Orthanc`: dwdaemon (``python -m twisted dicomweb``) and Orthanc + its
  DICOMweb plugin, each on a loopback port with a JSON configuration and storage in its own
  directory (temporary, or a given one that is kept); peak RSS and CPU time from ``/proc``;
- :class:`CTFactory`: generated 512x512 16-bit CT instances (explicit VR little endian);
- :func:`request`, :class:`Client`, :func:`wait_port`: small HTTP/1.1 helpers.

The scripts run as ``python bench/<name>.py`` from the repository root, so ``bench/`` is on
``sys.path`` and ``import benchlib`` works.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
ORTHANC_BINARY = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOM_JSON = "application/dicom+json"


# -- HTTP -------------------------------------------------------------------------------------

def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 3600) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, response body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def port_in_use(port: int) -> bool:
    """Whether something already accepts connections on the loopback port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


def wait_port(port: int, path: str = "/system", timeout: float = 60,
              proc: subprocess.Popen | None = None) -> None:
    """Wait until an HTTP GET of ``path`` answers (any status); fail early if ``proc`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with {proc.returncode}")
        try:
            request(port, "GET", path, timeout=5)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port}")


class Client:
    """A keep-alive HTTP/1.1 connection to a loopback port."""

    def __init__(self, port: int, timeout: float = 600) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def get(self, path: str, accept: str | None = None) -> tuple[int, bytes, float]:
        """GET (reconnecting once if the connection was closed): status, body, seconds."""
        headers = {"Accept": accept} if accept else {}
        start = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=headers)
            r = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self.conn.request("GET", path, headers=headers)
            r = self.conn.getresponse()
        body = r.read()
        return r.status, body, time.perf_counter() - start

    def post(self, path: str, body: bytes | Iterable[bytes],
             content_type: str = "application/dicom", accept: str | None = None,
             chunked: bool = False) -> tuple[int, bytes]:
        """POST a body (bytes, or chunks sent with chunked encoding): status, response body."""
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        self.conn.request("POST", path, body=body, headers=headers, encode_chunked=chunked)
        r = self.conn.getresponse()
        return r.status, r.read()

    def store(self, data: bytes) -> None:
        """``POST /instances`` of one DICOM file (Orthanc-compatible API); raise unless 200."""
        status, body = self.post("/instances", data)
        if status != 200:
            raise RuntimeError(f"port {self.port}: POST /instances answered {status}: "
                               f"{body[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def upload(port: int, files: Iterable[bytes]) -> int:
    """Store every file with ``POST /instances`` on one connection; returns the count."""
    client = Client(port)
    n = 0
    for data in files:
        client.store(data)
        n += 1
    client.close()
    return n


def file_chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    """The content of a file in ``size`` pieces."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


# -- servers ----------------------------------------------------------------------------------

def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class Server:
    """A server process on a loopback port, with its configuration, storage and log in
    ``directory`` (a new temporary one, removed by :meth:`stop`, unless one is given).

    ``config`` entries are merged into the default configuration (nested sections too).
    """

    name = ""
    config_name = "config.json"

    def __init__(self, port: int, directory: str | None = None,
                 config: dict[str, Any] | None = None, root: str = "/dicom-web/",
                 ready_path: str = "/system", ready_timeout: float = 120) -> None:
        self.port = port
        self.root = root
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.extra = config or {}
        self.temporary = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix=f"dwd-bench-{self.name}-")
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(directory, "server.log"), "ab")

    # what differs between the servers
    def base_config(self) -> dict[str, Any]:
        return {
            "HttpPort": self.port,
            "StorageDirectory": os.path.join(self.directory, "storage"),
            "IndexDirectory": os.path.join(self.directory, "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomWeb": {"Enable": True, "Root": self.root},
        }

    def command(self, config_path: str) -> list[str]:
        raise NotImplementedError

    def cwd(self) -> str:
        return self.directory

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    # life cycle
    def start(self) -> None:
        """Write the configuration, start the process, wait until it answers HTTP."""
        if port_in_use(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is already in use")
        path = os.path.join(self.directory, self.config_name)
        with open(path, "w") as f:
            json.dump(merged(self.base_config(), self.extra), f, indent=1)
        self.proc = subprocess.Popen(self.command(path), cwd=self.cwd(), env=self.env(),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.ready_path, self.ready_timeout, self.proc)
        except BaseException:
            self.halt()
            raise

    def halt(self, timeout: float = 60) -> None:
        """Stop the process (storage kept)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same storage (fresh process, fresh peak RSS)."""
        self.halt()
        self.start()

    def stop(self) -> None:
        """Stop the process; remove the directory if it is a temporary one."""
        self.halt()
        self.log.close()
        if self.temporary:
            shutil.rmtree(self.directory, True)

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # measures
    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` value in kB (e.g. ``VmHWM``, the peak RSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time used by the server process so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ours(Server):
    """dwdaemon: ``python -m twisted dicomweb --config ...``, this checkout first on the path."""

    name = "dwdaemon"

    def base_config(self) -> dict[str, Any]:
        # one process, so that CPU time and RSS read from its pid are the whole daemon's;
        # stow_bench's OursWorkers sets Workers and sums over the parent and its workers
        return {"Name": "bench", "Workers": 1, **super().base_config()}

    def command(self, config_path: str) -> list[str]:
        return [sys.executable, "-m", "twisted", "dicomweb", "--config", config_path]

    def cwd(self) -> str:
        return ROOT

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


class Orthanc(Server):
    """Orthanc + its DICOMweb plugin (DICOM network off)."""

    name = "orthanc"
    config_name = "orthanc.json"

    def base_config(self) -> dict[str, Any]:
        return {"Name": "bench-orthanc", "DicomServerEnabled": False,
                "Plugins": [ORTHANC_PLUGIN], **super().base_config()}

    def command(self, config_path: str) -> list[str]:
        return [ORTHANC_BINARY, config_path]


# -- data -------------------------------------------------------------------------------------

class CTFactory:
    """Makes 512x512 16-bit CT instances, explicit VR LE, unique UIDs, quickly.

    Every instance has the same (random, seeded) pixels and a window; instance numbers and
    slice positions count up over the factory's life. ``label`` goes into the patient's name.
    """

    def __init__(self, label: str = "STOW") -> None:
        rng = np.random.default_rng(1)
        self.pixels = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
        self.label = label
        self.count = 0

    def make_with_uid(self, study: str, series: str) -> tuple[str, bytes]:
        """One encoded DICOM file and its SOP instance UID."""
        self.count += 1
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientName = f"BENCH^{self.label}"
        ds.PatientID = "BENCH-" + study[-8:]
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.Modality = "CT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = self.count
        ds.ImagePositionPatient = [0, 0, self.count]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1
        ds.SliceLocation = self.count
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
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.PixelData = self.pixels
        ds["PixelData"].VR = "OW"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return ds.SOPInstanceUID, buf.getvalue()

    def make(self, study: str, series: str) -> bytes:
        """One encoded DICOM file."""
        return self.make_with_uid(study, series)[1]

    def series(self, count: int) -> tuple[str, str, list[tuple[str, bytes]]]:
        """``count`` instances of a new series in a new study: (study, series, [(sop, file)])."""
        study, series = generate_uid(), generate_uid()
        return study, series, [self.make_with_uid(study, series) for _ in range(count)]
