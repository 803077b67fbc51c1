"""Worker processes: ``"Workers": N`` (N > 1) serves the same socket(s) from N processes.

The parent (what ``twistd -n dicomweb`` and the systemd unit run) takes the life-cycle lock,
runs the start-up recovery once, opens the listening socket (HTTP or HTTPS) without accepting on
it, and spawns N workers with ``reactor.spawnProcess``; the socket is the child's file descriptor
3, which the worker adopts with ``reactor.adoptStreamPort`` (wrapped in TLS for HTTPS).  A
worker that dies is replaced; SIGTERM stops the workers (each drains its requests) and then the
parent; SIGHUP is logged and ignored.

A worker builds the same site as a single-process daemon (:func:`dwdaemon.tap.build_site`), but
opens the store without recovery (other workers may be writing) and holds the life-cycle lock
shared.  Its standard input is a pipe from the parent: at end of file (the parent died, even by
SIGKILL) the worker stops.  A new parent waits for the exclusive lock, i.e. for the workers of a
killed parent to be gone, before its recovery removes unfinished files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, ssl, threads
from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.server import Site

from dwdaemon.balance import BalancedAccept, ConnectionCounts, mark_absent, shared_counts_fd
from dwdaemon.config import Config
from dwdaemon.threads import the_reactor

log = Logger()

#: Environment variable telling a process it is worker (JSON: slot, family, tls, cert, key).
WORKER_ENV = "DWDAEMON_WORKER"
#: File descriptor of the listening socket in a worker.
LISTEN_FD = 3
#: File descriptor of the workers' shared connection counts (:mod:`dwdaemon.balance`).
COUNTS_FD = 4
#: Seconds a stopping worker waits for requests in progress.
DRAIN_SECONDS = 30.0
#: Seconds the parent waits for stopping workers before SIGKILL.
STOP_SECONDS = DRAIN_SECONDS + 15.0
#: Header naming the worker process that answered (its pid).
WORKER_HEADER = b"X-Dwdaemon-Worker"


def make_service(options: Any, top: service.MultiService, description: str
                 ) -> service.MultiService:
    """The service tree of a parent (no worker environment) or of a worker."""
    config: Config = options.config
    info = os.environ.get(WORKER_ENV)
    if info is None:
        Supervisor(options["config"], config, description).setServiceParent(top)
        log.info("dwdaemon {name}: {n} worker processes on {description}, storage {storage}",
                 name=config.name, n=config.workers, description=description,
                 storage=config.storage_directory)
        return top
    parsed = json.loads(info)
    pin_to_cpu(parsed.get("cpu"))
    return _worker_tree(config, top, parsed)


def worker_cpus(workers: int, cpus: list[int], enabled: bool) -> list[int | None]:
    """The CPU of each worker slot (``None``: not pinned). Workers are pinned one per CPU,
    in order, when ``enabled``, there are several workers and at least as many ``cpus``
    (the CPUs the parent may use); otherwise they float."""
    if not enabled or workers < 2 or len(cpus) < workers:
        return [None] * workers
    return sorted(cpus)[:workers]


def pin_to_cpu(cpu: int | None, pid: int = 0) -> None:
    """Run process ``pid`` (0: this one; and the threads it starts later) on ``cpu`` only.

    A worker is one Python process: its threads mostly take turns on the GIL, so it uses
    about one core. Kept on one CPU, each hand-off of the GIL wakes a thread on the same
    core instead of another one (on a virtual machine, a wake-up on another CPU is an
    interrupt through the host): measured with 2 workers on 2 cores, 10-14% less CPU per
    STOW-RS instance and 16-18% more throughput."""
    if cpu is None:
        return
    try:
        os.sched_setaffinity(pid, {cpu})
    except (AttributeError, OSError) as exc:
        log.warn("cannot run on CPU {cpu}: {error}", cpu=cpu, error=exc)


def lock_path(config: Config) -> str:
    """The life-cycle lock: the parent holds it exclusively during recovery, workers shared."""
    return os.path.join(config.index_directory, "workers.lock")


def _open_lock(config: Config) -> int:
    os.makedirs(config.index_directory, exist_ok=True)
    return os.open(lock_path(config), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def worker_job_owner(config: Config, slot: int) -> str:
    """The job owner of worker ``slot``: the single-process owner, ``/worker<slot>``."""
    from dwdaemon.jobs import job_owner

    return f"{job_owner(config)}/worker{slot}"


# -- the parent -----------------------------------------------------------------------------

class WorkerProcess(ProcessProtocol):
    """The parent's end of one worker."""

    def __init__(self, supervisor: Supervisor, slot: int) -> None:
        self.supervisor = supervisor
        self.slot = slot
        self.started = time.monotonic()
        self.pid = 0  #: set once spawned (the transport forgets it when the process ends)
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)


class Supervisor(service.Service):
    """Recovery, listening socket, and N worker processes kept alive."""

    def __init__(self, config_path: str | None, config: Config, description: str,
                 reactor: Any = None) -> None:
        reactor = the_reactor(reactor)
        self.config_path = config_path
        self.config = config
        self.description = description
        self.reactor = reactor
        self.port: Any = None
        self.workers: dict[int, WorkerProcess] = {}
        self.stopping = False
        self.failures = 0
        self._lock_fd: int | None = None
        self._respawns: dict[int, Any] = {}
        #: The workers' connection counts, passed to each (see :mod:`dwdaemon.balance`).
        self._counts_fd: int | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list[Any] = []
        endpoints.serverFromString(self.reactor, self.description).listen(
            Factory()).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"cannot listen on {self.description}")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        self.port.stopReading()  # the workers accept; the parent keeps the socket to pass it

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()
        self._lock_fd = _open_lock(self.config)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warn("waiting for the workers of a previous parent process to end")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        recover(self.config)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        signal.signal(signal.SIGHUP, self._sighup)
        self._counts_fd = shared_counts_fd(self.config.workers)
        for slot in range(self.config.workers):
            self.spawn(slot)

    def _sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(log.info, "SIGHUP: nothing to re-read, workers kept")

    def worker_info(self, slot: int) -> dict[str, Any]:
        """What a worker needs to adopt the socket (address family, TLS files)."""
        tls = self.description.startswith("ssl:")
        args = description_args(self.description)
        cert = args.get("certKey") or args.get("privateKey") or self.config.ssl_certificate
        key = args.get("privateKey") or cert
        host = self.port.getHost()
        family = (socket.AF_INET6 if isinstance(host, IPv6Address)
                  else socket.AF_UNIX if isinstance(host, UNIXAddress) else socket.AF_INET)
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = []
        cpu = worker_cpus(self.config.workers, cpus, self.config.worker_cpu_affinity)[slot]
        return {"slot": slot, "family": int(family), "tls": tls, "cert": cert, "key": key,
                "workers": self.config.workers, "cpu": cpu}

    def spawn(self, slot: int) -> None:
        """Start the worker of ``slot``."""
        self._respawns.pop(slot, None)
        if self.stopping:
            return
        env = dict(os.environ)
        info = self.worker_info(slot)
        env[WORKER_ENV] = json.dumps(info)
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "--logfile=-", "dicomweb"]
        if self.config_path:
            argv += ["--config", os.path.abspath(self.config_path)]
        proto = WorkerProcess(self, slot)
        self.workers[slot] = proto
        # fd 0: a pipe whose end of file tells the worker its parent is gone
        fds: dict[int, Any] = {0: "w", 1: 1, 2: 2, LISTEN_FD: self.port.fileno()}
        if self._counts_fd is not None:
            fds[COUNTS_FD] = self._counts_fd
        self.reactor.spawnProcess(proto, sys.executable, argv, env=env, path=os.getcwd(),
                                  childFDs=fds)
        proto.pid = proto.transport.pid
        pin_to_cpu(info["cpu"], proto.pid)  # at once (the worker pins itself again at start)
        log.info("worker {slot} started (pid {pid})", slot=slot, pid=proto.pid)

    def worker_ended(self, proto: WorkerProcess, reason: Failure) -> None:
        if self._counts_fd is not None:  # the other workers stop stepping aside for it
            with contextlib.suppress(OSError):
                mark_absent(self._counts_fd, proto.slot)
        if self.workers.get(proto.slot) is proto:
            del self.workers[proto.slot]
        if proto.pid:  # its uploads in progress died with it: no need to wait for a restart
            d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                          self.remove_temporary_files, proto.pid)
            d.addErrback(lambda f: log.failure("removing a dead worker's temporary files", f))
        if self.stopping:
            return
        lived = time.monotonic() - proto.started
        self.failures = 0 if lived > 10 else self.failures + 1
        delay = min(10.0, 0.5 * self.failures)
        log.warn("worker {slot} ended ({reason}); replaced in {delay:.1f} s", slot=proto.slot,
                 reason=reason.value, delay=delay)
        self._respawns[proto.slot] = self.reactor.callLater(delay, self.spawn, proto.slot)

    def remove_temporary_files(self, pid: int) -> None:
        """Remove what worker ``pid`` left in the storage's temporary folder (in a thread)."""
        from dwdaemon.store.storage import StorageArea

        count = StorageArea(self.config.storage_directory).clean_temp_of(pid)
        if count:
            log.info("removed {count} temporary file(s) of worker {pid}", count=count, pid=pid)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.stopping = True
        for call in self._respawns.values():
            if call.active():
                call.cancel()
        self._respawns.clear()
        procs = list(self.workers.values())
        for proto in procs:
            _signal(proto, "TERM")
        kill = self.reactor.callLater(STOP_SECONDS, lambda: [_signal(p, "KILL") for p in procs])

        def done(_: Any) -> None:
            if kill.active():
                kill.cancel()
            if self.port is not None:
                self.port.stopListening()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

        return defer.DeferredList([p.ended for p in procs]).addCallback(done)


def _signal(proto: WorkerProcess, name: str) -> None:
    with contextlib.suppress(Exception):  # already gone (ProcessExitedAlready)
        proto.transport.signalProcess(name)


def description_args(description: str) -> dict[str, str]:
    """The ``key=value`` arguments of an endpoint description (with ``\\`` escapes)."""
    out: dict[str, str] = {}
    fields, current, escaped = [], "", False
    for ch in description:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append(current)
            current = ""
        else:
            current += ch
    fields.append(current)
    for item in fields[1:]:
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


def recover(config: Config) -> dict[str, int]:
    """The start-up recovery of the store, and jobs of earlier workers marked interrupted."""
    from dwdaemon.jobs import FAILURE, INTERRUPTED, PENDING, RUNNING, Job
    from dwdaemon.store.index.sql import now_text
    from dwdaemon.store.storage import StorageArea
    from dwdaemon.store.store import Store
    from dwdaemon.tap import build_index, opening_or_exit

    os.makedirs(config.storage_directory, exist_ok=True)
    os.makedirs(config.index_directory, exist_ok=True)
    index, orphan_min_age = build_index(config)
    store = Store(StorageArea(config.storage_directory), index, None,  # type: ignore[arg-type]
                  orphan_min_age=orphan_min_age)
    try:
        cleaned = opening_or_exit(store.open)
        prefix = worker_job_owner(config, 0).rsplit("/", 1)[0] + "/worker"
        for row in index.jobs():
            job = Job.from_row(row)
            if job.state in (PENDING, RUNNING) and job.owner.startswith(prefix):
                job.state, job.error, job.completed = FAILURE, INTERRUPTED, now_text()
                index.save_job(job.row())
    finally:
        store.close()
    return cleaned


# -- a worker -------------------------------------------------------------------------------

def _worker_tree(config: Config, top: service.MultiService, info: dict[str, Any]
                 ) -> service.MultiService:
    from dwdaemon.tap import build_daemon

    slot = int(info["slot"])
    daemon = build_daemon(config)
    worker = WorkerService(AdoptedPort(daemon.site, info))
    worker.setServiceParent(top)
    daemon.pools.setServiceParent(worker)
    WorkerStoreService(daemon.store, config).setServiceParent(worker)
    daemon.jobs.engine.owner = worker_job_owner(config, slot)
    daemon.jobs.engine.siblings = worker_job_owner(config, slot).rsplit("/", 1)[0] + "/worker"
    for background in daemon.services:  # the job engine, the remote servers
        background.setServiceParent(worker)
    ParentWatch().setServiceParent(top)
    log.info("dwdaemon {name}: worker {slot} (pid {pid})", name=config.name, slot=slot,
             pid=os.getpid())
    return top


class WorkerService(service.MultiService):
    """A worker's services; the port starts after them and drains before they stop."""

    def __init__(self, port: AdoptedPort) -> None:
        super().__init__()
        self.port = port

    def startService(self) -> None:
        super().startService()
        self.port.startService()

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        yield self.port.stopService()
        yield super().stopService()


class WorkerStoreService(service.Service):
    """Opens the store without recovery (the parent ran it) and holds the shared lock."""

    def __init__(self, store: Any, config: Config) -> None:
        self.store = store
        self.config = config
        self._lock_fd: int | None = None

    def startService(self) -> None:
        super().startService()
        self._lock_fd = _open_lock(self.config)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # released when this process ends
        self.store.storage.open_area()
        self.store.index.open()

    def stopService(self) -> None:
        super().stopService()
        self.store.close()


def worker_request_class(base: type) -> type:
    """``base`` that names the answering worker process in a header."""
    pid = str(os.getpid()).encode()

    class WorkerRequest(base):  # type: ignore[valid-type,misc]
        def process(self) -> None:
            self.responseHeaders.setRawHeaders(WORKER_HEADER, [pid])
            super().process()

    return WorkerRequest


class AdoptedPort(service.Service):
    """Accepts on the socket the parent passed; at stop, drains the requests in progress."""

    def __init__(self, site: Site, info: dict[str, Any], reactor: Any = None) -> None:
        reactor = the_reactor(reactor)
        self.site = site
        self.info = info
        self.reactor = reactor
        self.port: Any = None
        self.channels: set[Any] = set()
        #: Spreads connections over the workers (several workers only).
        self.balance: BalancedAccept | None = None
        site.requestFactory = worker_request_class(site.requestFactory)
        build = site.buildProtocol

        def build_and_track(addr: Any) -> Any:
            channel = build(addr)
            if channel is not None:
                self.channels.add(channel)
                self._counted()
                lost = channel.connectionLost

                def connection_lost(reason: Any) -> None:
                    self.channels.discard(channel)
                    self._counted()
                    lost(reason)

                channel.connectionLost = connection_lost
            return channel

        site.buildProtocol = build_and_track  # type: ignore[method-assign]

    def factory(self) -> Any:
        """The site, in TLS for HTTPS."""
        if not self.info.get("tls"):
            return self.site
        with open(self.info["cert"], "rb") as fp:
            pem = fp.read()
        if self.info["key"] != self.info["cert"]:
            with open(self.info["key"], "rb") as fp:
                pem += b"\n" + fp.read()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        return TLSMemoryBIOFactory(options, False, self.site)

    def startService(self) -> None:
        super().startService()
        self.port = self.reactor.adoptStreamPort(LISTEN_FD, self.info["family"], self.factory())
        os.close(LISTEN_FD)  # adoptStreamPort duplicated it
        workers = int(self.info.get("workers", 1))
        if workers > 1:
            try:
                counts = ConnectionCounts(COUNTS_FD, workers, int(self.info["slot"]))
            except (OSError, ValueError) as exc:  # not passed: accept without balancing
                log.warn("no shared connection counts: {error}", error=exc)
            else:
                os.close(COUNTS_FD)  # the mapping keeps the memory
                self.balance = BalancedAccept(self.port, counts, lambda: len(self.channels),
                                              self.reactor)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _counted(self) -> None:
        if self.balance is not None:
            self.balance.connection_count_changed()

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self.balance is not None:
            self.balance.stop()
        if self.port is not None:
            yield self.port.stopListening()
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            busy = 0
            for channel in list(self.channels):
                if getattr(channel, "requests", None):
                    busy += 1
                elif channel.transport is not None:
                    channel.transport.loseConnection()  # idle keep-alive connection
            if not busy or time.monotonic() > deadline:
                break
            yield _sleep(self.reactor, 0.05)


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class ParentWatch(service.Service):
    """Stops this worker when its standard input (a pipe from the parent) reaches its end."""

    def startService(self) -> None:
        super().startService()
        from twisted.internet import reactor

        def watch() -> None:
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            reactor.callFromThread(self._parent_gone, reactor)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def _parent_gone(self, reactor: Any) -> None:
        if self.running:  # not already stopping
            log.warn("the parent process is gone: stopping")
            reactor.stop()
