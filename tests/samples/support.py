"""Helpers for the samples' tests: a daemon with Basic auth, data, and running a sample.

The daemon is the real one (``tests.support.Daemon``: the site of ``dwdaemon.tap`` on a free
loopback port, in this process); each sample runs as a subprocess with
``getProcessOutputAndValue``, so the reactor keeps serving the daemon meanwhile.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import Any

import pydicom
import treq
from pydicom.uid import generate_uid
from twisted.internet import protocol, reactor, utils
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from tests.support import Daemon, read, start_daemon, testdata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "samples")
PYTHON_SAMPLES = os.path.join(SAMPLES, "python")
JS_SAMPLES = os.path.join(SAMPLES, "js")

USER, PASSWORD = "alice", "s3cret pass"  # a space: the samples must encode it properly
AUTH = (USER, PASSWORD)


@dataclass
class Result:
    """What a sample did: exit code and output."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def sample_env(**extra: str) -> dict[str, str]:
    """The environment of a sample: this one, without DICOMWEB_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(extra)
    return env


@inlineCallbacks
def run(executable: str, args: list[str], env: dict[str, str] | None = None,
        cwd: str | None = None) -> Any:
    """Run a program to its end; a :class:`Result`."""
    out, err, code = yield utils.getProcessOutputAndValue(
        executable, args, env=env if env is not None else sample_env(), path=cwd)
    return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def run_python(name: str, args: list[str], env: dict[str, str] | None = None,
               cwd: str | None = None) -> Any:
    """Run ``samples/python/{name}`` with this interpreter."""
    return run(sys.executable, [os.path.join(PYTHON_SAMPLES, name), *args], env, cwd)


def auth_args(daemon: Daemon) -> list[str]:
    """``--url``, ``--user`` and ``--password`` arguments for ``daemon``."""
    return ["--url", daemon.dicomweb, "--user", USER, "--password", PASSWORD]


def auth_env(daemon: Daemon) -> dict[str, str]:
    """The same through the environment."""
    return sample_env(DICOMWEB_URL=daemon.dicomweb, DICOMWEB_USER=USER,
                      DICOMWEB_PASSWORD=PASSWORD)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, list[str]]:
    """An Authorization header for treq."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": [f"Basic {token}"]}


def start_secured(case: Any, name: str = "a", users: dict[str, str] | None = None,
                  **overrides: Any) -> Daemon:
    """A daemon requiring HTTP Basic authentication (``alice`` by default)."""
    return start_daemon(case, os.path.join(case.mktemp(), name), authentication_enabled=True,
                        registered_users=users or {USER: PASSWORD}, **overrides)


@inlineCallbacks
def upload(case: Any, daemon: Daemon, paths: list[str], headers: Any = None) -> Any:
    """Store files through ``POST /instances``; their Orthanc IDs."""
    ids = []
    for path in paths:
        response, body = yield daemon.request("POST", "/instances", data=read(path),
                                              headers=headers or basic())
        case.assertEqual(response.code, 200, body)
        ids.append(json.loads(body)["ID"])
    return ids


@inlineCallbacks
def qido(case: Any, daemon: Daemon, path: str, headers: Any = None) -> Any:
    """The JSON answer of a QIDO-RS request (``path`` under the DICOMweb root)."""
    response, body = yield daemon.request("GET", daemon.dicomweb + path,
                                          headers=headers or basic())
    case.assertEqual(response.code, 200, body)
    return json.loads(body)


def make_study(directory: str, count: int = 3) -> tuple[str, list[str]]:
    """``count`` copies of CT_small in one new study (two series); its UID and the paths."""
    os.makedirs(directory, exist_ok=True)
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    paths = []
    for i in range(count):
        ds = pydicom.dcmread(testdata("CT_small.dcm"))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[i % 2]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = "SAMPLES1"
        ds.PatientName = "Samples^Bulk"
        ds.InstanceNumber = i + 1
        path = os.path.join(directory, f"ct{i}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study, paths


def node() -> str | None:
    """The ``node`` executable, or None."""
    return shutil.which("node")


def js_skip_reason() -> str | None:
    """Why the JavaScript samples cannot run here (None when they can)."""
    if node() is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    for package in ("dicomweb-client", "xhr2"):
        if not os.path.isdir(os.path.join(JS_SAMPLES, "node_modules", package)):
            return f"npm package {package} is missing: run samples/js/install.sh"
    return None


def chromium() -> str | None:
    """A headless-capable Chromium or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Twistd(protocol.ProcessProtocol):
    """Collects a twistd child's output and tells when it ends."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


@dataclass
class TwistdDaemon:
    """A daemon run as the README says (``twistd -n --pidfile= dicomweb --config ...``)."""

    url: str
    process: Any
    protocol: _Twistd

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@inlineCallbacks
def start_twistd(case: Any, settings: dict[str, Any]) -> Any:
    """Run this checkout's daemon with twistd and a configuration file; stopped at clean-up."""
    directory = os.path.abspath(case.mktemp())
    os.makedirs(directory)
    port = free_port()
    config = {"HttpPort": port, "StorageDirectory": os.path.join(directory, "storage"),
              "Workers": 1, **settings}
    path = os.path.join(directory, "dwdaemon.json")
    with open(path, "w") as fp:
        json.dump(config, fp)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    proto = _Twistd()
    process = reactor.spawnProcess(
        proto, sys.executable,
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "dicomweb", "--config", path], env=env, path=ROOT)

    @inlineCallbacks
    def stop() -> Any:
        if not proto.ended.called:
            process.signalProcess("TERM")
        yield proto.ended

    case.addCleanup(stop)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):  # until it answers (its start-up imports take a moment)
        if proto.ended.called:
            case.fail(f"twistd ended: {proto.output.decode(errors='replace')}")
        try:
            response = yield treq.get(url + "/system", headers=basic(), persistent=False)
            yield response.content()
            if response.code == 200:
                break
        except Exception:
            pass
        yield deferLater(reactor, 0.1, lambda: None)
    else:
        case.fail(f"twistd did not answer: {proto.output.decode(errors='replace')}")
    return TwistdDaemon(url, process, proto)
