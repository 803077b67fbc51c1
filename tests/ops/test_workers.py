"""Worker processes (``"Workers": 2``): real twistd runs over loopback, signals and kills."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from dwdaemon import tap
from dwdaemon.config import cpu_count, parse_config
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.storage import StorageArea, is_temp_name
from dwdaemon.workers import WORKER_HEADER, Supervisor, description_args, worker_cpus
from tests.support import read, testdata

#: twistd ends a process stopped by SIGTERM with that signal once it has shut down cleanly.
STOPPED = -signal.SIGTERM
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = WORKER_HEADER.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_instance() -> tuple[str, bytes]:
    """CT_small.dcm with new UIDs: ``(SOPInstanceUID, file bytes)``."""
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = BytesIO()
    ds.save_as(out)
    return ds.SOPInstanceUID, out.getvalue()


def pids_of_children(parent: int) -> set[int]:
    """Processes whose parent is ``parent`` (Linux /proc)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fp:
                fields = fp.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(name))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], seconds: float = 30.0, what: str = "") -> Any:
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Daemon:
    """``twistd -n dicomweb`` with a configuration file, run in a subprocess."""

    def __init__(self, directory: str, workers: int = 2, **settings: Any) -> None:
        self.directory = directory
        self.port = free_port()
        self.scheme = "https" if settings.get("SslEnabled") else "http"
        self.ssl_context: ssl.SSLContext | None = None
        config = {"HttpPort": self.port, "StorageDirectory": os.path.join(directory, "storage"),
                  "Workers": workers, **settings}
        self.config_path = os.path.join(directory, "dwdaemon.json")
        with open(self.config_path, "w") as fp:
            json.dump(config, fp)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.log = open(os.path.join(self.directory, "twistd.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "dicomweb", "--config", self.config_path],
            cwd=self.directory, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._answers, 60, "the daemon to answer")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("daemon ended: " + self.output())
        try:
            return self.request("GET", "/system")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        with open(os.path.join(self.directory, "twistd.log"), "rb") as fp:
            return fp.read().decode(errors="replace")

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, str, bytes]:
        """``(status, worker pid header, body)``, on a new connection unless one is given."""
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheader(HEADER, ""), data
        finally:
            if own:
                conn.close()

    def workers(self) -> set[int]:
        assert self.proc is not None
        return pids_of_children(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()


class WorkersTestCase(SynchronousTestCase):
    def daemon(self, workers: int = 2, directory: str | None = None, **settings: Any) -> Daemon:
        directory = directory or os.path.abspath(self.mktemp())
        os.makedirs(directory, exist_ok=True)
        daemon = Daemon(directory, workers, **settings)
        self.addCleanup(daemon.stop)
        return daemon.start()

    def racing_posts(self, daemon: Daemon, data: bytes, count: int
                     ) -> list[tuple[int, str, bytes]]:
        """``count`` clients POST the same instance at once; their answers."""
        answers: list[tuple[int, str, bytes]] = []
        start = threading.Barrier(count)

        def post() -> None:
            start.wait()
            answers.append(daemon.request("POST", "/instances", data))

        threads = [threading.Thread(target=post) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return answers

    def both(self, daemon: Daemon, method: str, path: str, check: Callable[[int, bytes], None],
             seconds: float = 60.0) -> set[str]:
        """Send a request on new connections until both workers answered; check each answer."""
        seen: set[str] = set()
        deadline = time.time() + seconds
        while time.time() < deadline:
            status, pid, body = daemon.request(method, path)
            check(status, body)
            seen.add(pid)
            if len(seen) == 2:
                break
        self.assertEqual(len(seen), 2, f"only workers {seen} answered")
        return seen


def stored_and_indexed(storage: str) -> tuple[set[str], set[str], list[str]]:
    """(files in the storage area, files the index knows, leftover temporary files)."""
    area = StorageArea(storage)
    files = {name for name, _ in area.iter_files() if not is_temp_name(name)}
    index = SqliteIndex(storage)
    index.open()
    try:
        known = index.file_uuids()
    finally:
        index.close()
    return files, known, area.temp_files()


class SharedViewTests(WorkersTestCase):
    """What a user sees does not depend on the worker that answers."""

    def test_stored_in_one_visible_in_every_worker(self) -> None:
        daemon = self.daemon()
        self.assertEqual(len(daemon.workers()), 2)
        status, _, body = daemon.request("POST", "/instances", read(testdata("CT_small.dcm")))
        self.assertEqual(status, 200)
        public_id = json.loads(body)["ID"]
        sop = pydicom.dcmread(testdata("CT_small.dcm")).SOPInstanceUID

        def listed(status: int, body: bytes) -> None:
            self.assertEqual((status, json.loads(body)), (200, [public_id]))

        def found(status: int, body: bytes) -> None:
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)[0]["00080018"]["Value"], [sop])

        def counted(status: int, body: bytes) -> None:
            self.assertEqual(json.loads(body)["CountInstances"], 1)

        self.both(daemon, "GET", "/instances", listed)
        self.both(daemon, "GET", f"/dicom-web/instances?SOPInstanceUID={sop}", found)
        self.both(daemon, "GET", "/statistics", counted)
        self.both(daemon, "GET", "/changes",
                  lambda s, b: self.assertEqual(len(json.loads(b)["Changes"]), 4))

    def test_put_servers_seen_by_every_worker(self) -> None:
        daemon = self.daemon()
        status, _, _ = daemon.request("PUT", "/dicom-web/servers/sample",
                                      json.dumps({"Url": "http://127.0.0.1:9/dicom-web/"}).encode())
        self.assertEqual(status, 200)
        self.both(daemon, "GET", "/dicom-web/servers",
                  lambda s, b: self.assertEqual(json.loads(b), ["sample"]))
        self.assertEqual(daemon.request("DELETE", "/dicom-web/servers/sample")[0], 200)
        self.both(daemon, "GET", "/dicom-web/servers",
                  lambda s, b: self.assertEqual(json.loads(b), []))

    def test_duplicates_racing_through_two_workers_keep_one_copy(self) -> None:
        daemon = self.daemon()
        answers = self.racing_posts(daemon, read(testdata("CT_small.dcm")), 8)
        self.assertEqual({a[0] for a in answers}, {200})
        statuses = sorted(json.loads(a[2])["Status"] for a in answers)
        self.assertEqual(statuses.count("Success"), 1, statuses)
        self.assertEqual(len(json.loads(daemon.request("GET", "/instances")[2])), 1)
        self.assertEqual(daemon.stop(), STOPPED)
        files, known, temps = stored_and_indexed(daemon.directory + "/storage")
        self.assertEqual((len(files), files, temps), (1, known, []))

    def test_jobs_listed_by_all_and_cancel_reaches_the_owner(self) -> None:
        # a remote server that accepts connections and never answers: the job keeps running
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        self.addCleanup(silent.close)
        daemon = self.daemon()
        _, _, body = daemon.request("POST", "/instances", read(testdata("CT_small.dcm")))
        study = json.loads(body)["ParentStudy"]
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web/"
        self.assertEqual(daemon.request("PUT", "/dicom-web/servers/silent",
                                        json.dumps({"Url": url}).encode())[0], 200)
        # keep-alive connections stay with one worker: find one per worker
        conns: dict[str, http.client.HTTPConnection] = {}
        deadline = time.time() + 60  # the second worker may still be starting
        while time.time() < deadline:
            conn = daemon.connection()
            pid = daemon.request("GET", "/system", conn=conn)[1]
            if pid in conns:
                conn.close()
                time.sleep(0.02)
            else:
                conns[pid] = conn
            if len(conns) == 2:
                break
        self.assertEqual(len(conns), 2)
        owner, other = list(conns)
        status, pid, body = daemon.request(
            "POST", "/dicom-web/servers/silent/stow",
            json.dumps({"Resources": [study], "Synchronous": False}).encode(), conn=conns[owner])
        self.assertEqual((status, pid), (200, owner))
        job = json.loads(body)["ID"]
        for conn in conns.values():
            self.assertIn(job, json.loads(daemon.request("GET", "/jobs", conn=conn)[2]))
        wait_for(lambda: json.loads(daemon.request("GET", f"/jobs/{job}", conn=conns[other])[2])
                 ["State"] == "Running", 30, "the job to run")
        status, pid, _ = daemon.request("POST", f"/jobs/{job}/cancel", b"", conn=conns[other])
        self.assertEqual((status, pid), (200, other))
        state = json.loads(daemon.request("GET", f"/jobs/{job}", conn=conns[other])[2])
        self.assertEqual(state["State"], "Failure")
        self.assertIn("cancelled", state["ErrorDescription"])
        for conn in conns.values():
            conn.close()


class PostgresWorkersTests(WorkersTestCase):
    """The PostgreSQL index with two workers: shared view, racing duplicates keep one copy."""

    def test_stored_once_and_seen_by_both(self) -> None:
        from tests.postgres.support import new_schema, uri

        schema = new_schema(self)
        daemon = self.daemon(PostgreSQL={"EnableIndex": True, "ConnectionUri": uri(schema)})
        answers = self.racing_posts(daemon, read(testdata("CT_small.dcm")), 6)
        self.assertEqual({a[0] for a in answers}, {200})
        statuses = [json.loads(a[2])["Status"] for a in answers]
        self.assertEqual(statuses.count("Success"), 1, statuses)
        self.both(daemon, "GET", "/statistics",
                  lambda s, b: self.assertEqual(json.loads(b)["CountInstances"], 1))
        self.assertEqual(daemon.stop(), STOPPED)
        area = StorageArea(os.path.join(daemon.directory, "storage"))
        self.assertEqual(len(list(area.iter_files())), 1)
        self.assertFalse(os.path.exists(os.path.join(area.root, "index.sqlite")))


class SupervisionTests(WorkersTestCase):
    """The parent replaces dead workers, ignores SIGHUP and stops everything on SIGTERM."""

    def test_dead_worker_replaced_sighup_kept_sigterm_stops_all(self) -> None:
        daemon = self.daemon()
        first = daemon.workers()
        self.assertEqual(len(first), 2)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        now = wait_for(lambda: (w := daemon.workers()) and len(w) == 2 and victim not in w
                       and w, 30, "a new worker")
        self.assertEqual(len(now & first), 1)
        self.both(daemon, "GET", "/system", lambda s, b: self.assertEqual(s, 200))
        self.assertIsNone(daemon.proc.poll())  # SIGHUP did not kill the parent
        self.assertEqual(daemon.stop(), STOPPED)
        for pid in now:
            wait_for(lambda pid=pid: not alive(pid), 30, f"worker {pid} to end")

    def test_sigterm_drains_a_request_in_progress(self) -> None:
        daemon = self.daemon()
        _, data = unique_instance()
        conn = daemon.connection()
        conn.putrequest("POST", "/instances")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        conn.send(data[:1000])
        time.sleep(0.5)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.send(data[1000:])
        response = conn.getresponse()
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.read())["Status"], "Success")
        conn.close()
        self.assertEqual(daemon.proc.wait(timeout=60), STOPPED)

    def test_keep_alive_connections_are_spread_over_the_workers(self) -> None:
        """Four keep-alive connections opened one after the other end up two per worker (the
        first worker awake no longer takes them all), and stay there."""
        daemon = self.daemon()
        self.both(daemon, "GET", "/system", lambda s, b: self.assertEqual(s, 200))
        time.sleep(0.5)  # both workers serve, and counted the closing of those connections
        connections = []
        owners = []
        for _ in range(4):
            conn = daemon.connection()
            self.addCleanup(conn.close)
            status, pid, _ = daemon.request("GET", "/system", conn=conn)
            self.assertEqual(status, 200)
            connections.append(conn)
            owners.append(pid)
        self.assertEqual(sorted(owners.count(pid) for pid in set(owners)), [2, 2], owners)
        for conn, pid in zip(connections, owners, strict=True):  # keep-alive: same worker
            self.assertEqual(daemon.request("GET", "/system", conn=conn)[1], pid)

    def test_each_worker_runs_on_a_cpu_of_its_own_unless_disabled(self) -> None:
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            raise SkipTest("needs two CPUs")
        daemon = self.daemon()
        wait_for(lambda: len(daemon.workers()) == 2, 30, "two workers")
        pinned = [os.sched_getaffinity(pid) for pid in sorted(daemon.workers())]
        self.assertEqual([len(c) for c in pinned], [1, 1], pinned)
        self.assertEqual(len(pinned[0] | pinned[1]), 2)
        self.assertLessEqual(pinned[0] | pinned[1], cpus)
        floating = self.daemon(WorkerCpuAffinity=False)
        wait_for(lambda: len(floating.workers()) == 2, 30, "two workers")
        self.assertEqual([os.sched_getaffinity(pid) for pid in floating.workers()], [cpus] * 2)

    def test_default_worker_count_starts_workers_that_stay_workers(self) -> None:
        """Workers 0 (the default: the CPU count). A worker is pinned to one CPU, so its own
        count of CPUs is 1: it must still adopt the parent's socket, not listen itself."""
        if cpu_count() < 2:
            raise SkipTest("needs two CPUs")
        daemon = self.daemon(workers=0)
        wait_for(lambda: len(daemon.workers()) == cpu_count(), 30, "the workers")
        self.both(daemon, "GET", "/system", lambda s, b: self.assertEqual(s, 200))
        self.assertNotIn("Address already in use", daemon.output())
        self.assertEqual(len(daemon.workers()), cpu_count())

    def test_https_served_by_both_workers(self) -> None:
        from tests.client.netsupport import _key_pem, _pem, make_pki

        directory = os.path.abspath(self.mktemp())
        pki = make_pki(os.path.join(directory, "pki"))
        pem = os.path.join(directory, "server.pem")
        with open(pem, "wb") as fp:
            fp.write(_pem(pki.server_cert) + _key_pem(pki.server_key))
        daemon = Daemon(directory, 2, SslEnabled=True, SslCertificate=pem)
        daemon.ssl_context = ssl.create_default_context(cafile=pki.ca_file)
        daemon.ssl_context.check_hostname = False
        self.addCleanup(daemon.stop)
        daemon.start()
        self.both(daemon, "GET", "/system",
                  lambda s, b: self.assertEqual(json.loads(b)["Name"], "MyOrthanc"))


class KillTests(WorkersTestCase):
    """kill -9 of a worker or of the parent: nothing acknowledged lost, no orphan file."""

    def ingest_and_kill(self, kill: Callable[[Daemon], None]) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        daemon = self.daemon(directory=directory)
        acknowledged: list[str] = []
        stop = threading.Event()
        bodies = [unique_instance() for _ in range(400)]

        def ingest() -> None:
            while not stop.is_set() and bodies:
                sop, data = bodies.pop()
                try:
                    status, _, body = daemon.request("POST", "/instances", data)
                except OSError:
                    continue
                if status == 200 and json.loads(body)["Status"] == "Success":
                    acknowledged.append(sop)

        threads = [threading.Thread(target=ingest) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acknowledged) >= 20, 60, "some instances stored")
        kill(daemon)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        self.assertGreater(len(acknowledged), 0)
        daemon.stop(signal.SIGKILL)
        # a restart: recovery in the parent, then every acknowledged instance is there
        again = self.daemon(directory=directory)
        for sop in acknowledged:
            status, _, body = again.request("GET", f"/dicom-web/instances?SOPInstanceUID={sop}")
            self.assertEqual(status, 200, sop)
            self.assertEqual(len(json.loads(body)), 1, sop)
        self.assertEqual(again.stop(), STOPPED)
        files, known, temps = stored_and_indexed(os.path.join(directory, "storage"))
        self.assertEqual(files, known)
        self.assertEqual(temps, [])
        self.assertGreaterEqual(len(files), len(acknowledged))

    def test_kill_9_of_a_worker(self) -> None:
        def kill(daemon: Daemon) -> None:
            os.kill(sorted(daemon.workers())[0], signal.SIGKILL)

        self.ingest_and_kill(kill)

    def test_kill_9_of_a_worker_in_the_middle_of_an_upload(self) -> None:
        """The parent removes the killed worker's temporary files at once; the next start's
        recovery finds the store consistent (and would remove any file renamed but not
        indexed)."""
        from tests.stow.test_stow_web import ctype, multipart

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        daemon = self.daemon(directory=directory)
        conn = daemon.connection()
        pid = int(daemon.request("GET", "/system", conn=conn)[1])
        body = multipart([unique_instance()[1] for _ in range(150)])
        area = StorageArea(os.path.join(directory, "storage"))
        conn.putrequest("POST", "/dicom-web/studies")
        conn.putheader("Content-Type", ctype())
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body)  # its parts go through temporary files of the storage area
        wait_for(lambda: [p for p in area.temp_files() if f"-{pid}.tmp" in p], 30,
                 "a temporary file")
        os.kill(pid, signal.SIGKILL)
        conn.close()
        wait_for(lambda: pid not in daemon.workers(), 30, "the worker to be gone")
        # what the killed worker was writing is removed by the parent, without a restart
        wait_for(lambda: not [p for p in area.temp_files() if f"-{pid}.tmp" in p], 30,
                 "the parent to remove the dead worker's temporary files")
        with open(os.path.join(directory, "twistd.log"), "rb") as fp:
            self.assertIn(f"of worker {pid}".encode(), fp.read())
        self.assertEqual(daemon.stop(), STOPPED)
        again = self.daemon(directory=directory)
        self.assertEqual(again.stop(), STOPPED)
        files, known, temps = stored_and_indexed(os.path.join(directory, "storage"))
        self.assertEqual((files, temps), (known, []))

    def test_kill_9_of_the_parent(self) -> None:
        def kill(daemon: Daemon) -> None:
            workers = daemon.workers()
            assert daemon.proc is not None
            daemon.proc.kill()
            for pid in workers:  # they see the end of their pipe from the parent and stop
                wait_for(lambda pid=pid: not alive(pid), 60, f"orphan worker {pid} to end")

        self.ingest_and_kill(kill)


class ConfigurationTests(SynchronousTestCase):
    def test_workers_pinned_one_per_cpu_only_when_there_are_enough(self) -> None:
        self.assertEqual(worker_cpus(2, [5, 3, 9], True), [3, 5])
        self.assertEqual(worker_cpus(3, [0, 1], True), [None] * 3)  # more workers than CPUs
        self.assertEqual(worker_cpus(2, [0, 1], False), [None, None])
        self.assertEqual(worker_cpus(1, [0, 1], True), [None])

    def test_default_is_the_number_of_cpus(self) -> None:
        self.assertEqual(parse_config("{}")[0].workers, cpu_count())
        self.assertEqual(parse_config('{"Workers": 0}')[0].workers, cpu_count())
        self.assertEqual(parse_config('{"Workers": 3}')[0].workers, 3)

    def test_one_worker_is_the_single_process_tree(self) -> None:
        for workers, expected, absent in ((1, "ThreadPools", "Supervisor"),
                                          (2, "Supervisor", "ThreadPools")):
            directory = os.path.abspath(self.mktemp())
            path = os.path.join(directory, "c.json")
            os.makedirs(directory)
            with open(path, "w") as fp:
                json.dump({"StorageDirectory": directory, "Workers": workers}, fp)
            options = tap.Options()
            options.parseOptions(["--config", path, "--listen", "tcp:0:interface=127.0.0.1"])
            names = [type(s).__name__ for s in tap.makeService(options)]
            self.assertIn(expected, names)
            self.assertNotIn(absent, names)
            if workers == 2:
                supervisor = [s for s in tap.makeService(options) if isinstance(s, Supervisor)]
                self.assertEqual(supervisor[0].config.workers, 2)


class DescriptionTests(SynchronousTestCase):
    def test_tls_files_of_a_listen_description(self) -> None:
        args = description_args(r"ssl:port=8443:interface=\:\:1:privateKey=/k\:x.pem:certKey=c.pem")
        self.assertEqual(args, {"port": "8443", "interface": "::1", "privateKey": "/k:x.pem",
                                "certKey": "c.pem"})

    def test_a_port_in_use_stops_the_parent_with_the_reason(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            config = parse_config("{}")[0]
            supervisor = Supervisor(None, config,
                                    f"tcp:port={busy.getsockname()[1]}:interface=127.0.0.1")
            from twisted.internet.error import CannotListenError

            self.assertRaises(CannotListenError, supervisor.privilegedStartService)


class UnixSocketTests(TestCase):
    def test_a_unix_socket_is_passed_as_such(self) -> None:
        directory = tempfile.mkdtemp(prefix="dwd-")  # short: AF_UNIX paths are limited
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s")
        supervisor = Supervisor(None, parse_config("{}")[0], f"unix:{path}")
        supervisor.privilegedStartService()
        self.addCleanup(supervisor.port.stopListening)  # a Deferred: awaited before rmtree
        self.assertEqual(supervisor.worker_info(1)["family"], socket.AF_UNIX)
        self.assertFalse(supervisor.worker_info(1)["tls"])


class SqliteWriteLockTests(SynchronousTestCase):
    def test_a_writer_waits_for_the_lock_held_by_another_process(self) -> None:
        directory = os.path.abspath(self.mktemp())
        index = SqliteIndex(directory)
        index.open()
        self.addCleanup(index.close)
        fd = os.open(index.path + ".write-lock", os.O_RDWR)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process would (another open file)
        done = threading.Event()

        def write() -> None:
            index.set_property("probe", "1")
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        self.assertFalse(done.wait(0.5))  # queued behind the lock, not failing with BUSY
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.assertTrue(done.wait(10))
        thread.join()
        self.assertEqual(index.get_property("probe"), "1")
