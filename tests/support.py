"""Test helpers: pydicom's shipped files, and real daemons on loopback ports."""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

import pydicom
import treq
from pydicom.data import get_testdata_file
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from dwdaemon.config import Config
from dwdaemon.tap import build_daemon

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
CHARSET_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "charset_files")


def testdata(name: str) -> str:
    """Path of a file shipped with pydicom (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(name)
    return str(path)


def shipped_files(pattern: str = "*.dcm") -> list[str]:
    """All shipped pydicom files matching ``pattern`` (recursive)."""
    return sorted(glob.glob(os.path.join(TEST_FILES, "**", pattern), recursive=True))


def charset_files() -> list[str]:
    """pydicom's shipped character-set test files (``chrRuss.dcm``, ``chrH31.dcm``...)."""
    return sorted(glob.glob(os.path.join(CHARSET_FILES, "*.dcm")))


def read(path: str) -> bytes:
    with open(path, "rb") as fp:
        return fp.read()


def make_config(directory: str | None = None, **overrides: Any) -> Config:
    """A configuration for tests: storage in ``directory`` (a new temp dir if None)."""
    directory = directory or tempfile.mkdtemp(prefix="dwd-test-")
    storage = os.path.join(directory, "storage")
    config = Config(storage_directory=storage, index_directory=os.path.join(directory, "index"),
                    http_port=0)
    return config.with_overrides(**overrides) if overrides else config


class Daemon:
    """A daemon serving on an ephemeral loopback port in this process."""

    def __init__(self, config: Config, interface: str = "127.0.0.1") -> None:
        self.config = config
        self.parts = build_daemon(config, reactor)
        self.site, self.store, self.pools = self.parts.site, self.parts.store, self.parts.pools
        self.pools.start()
        self.store.open()
        for service in self.parts.services:
            service.startService()  # as twistd does, after the store is open
        self.connections: list[Any] = []
        build = self.site.buildProtocol

        def build_and_track(addr: Any) -> Any:
            protocol = build(addr)
            self.connections.append(protocol)
            return protocol

        self.site.buildProtocol = build_and_track  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, self.site, interface=interface)
        host = self.port.getHost()
        self.url = f"http://{interface}:{host.port}" if ":" not in interface else \
            f"http://[{interface}]:{host.port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    @property
    def dicomweb(self) -> str:
        return self.url + self.config.dicomweb.root.rstrip("/")

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.port.stopListening()
        for protocol in self.connections:
            transport = getattr(protocol, "transport", None)
            if transport is not None and transport.connected:
                transport.abortConnection()
        if self.connections:
            yield deferLater(reactor, 0.05, lambda: None)
        for service in self.parts.services:
            if service.running:
                yield service.stopService()
        self.pools.stop()
        self.store.close()

    @inlineCallbacks
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``(response, body)`` of a request to ``path`` (relative to the daemon's URL)."""
        url = path if path.startswith("http") else self.url + path
        response = yield self.http.request(method, url, **kwargs)
        body = yield treq.content(response)
        return response, body


def start_daemon(case: Any, directory: str | None = None, **overrides: Any) -> Daemon:
    """Start a daemon for a trial test case; it is stopped at clean-up."""
    directory = directory or case.mktemp()
    os.makedirs(directory, exist_ok=True)
    daemon = Daemon(make_config(directory, **overrides))
    case.addCleanup(daemon.stop)
    return daemon
