"""The remote DICOMweb servers: configured ones overlaid with those added at run time.

Servers put or deleted through the API are kept in the index (``servers()`` /
``put_server()``); each server gets one :class:`DicomWebClient` with its own connection pool.
Built by :func:`dwdaemon.tap.build_daemon`; the web routes of ``{Root}servers`` use it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool

from dwdaemon.client.dicomweb import DicomWebClient
from dwdaemon.client.http import ClientConfigError, HttpOptions, make_http_client
from dwdaemon.config import Config, ConfigError, RemoteServer, parse_server
from dwdaemon.threads import ThreadPools

log = Logger()


class UnknownServer(LookupError):
    """No server of that name (the web answers 404)."""


class InvalidServer(ValueError):
    """A server definition that cannot be used (the web answers 400)."""


class ServerTable(Protocol):
    """Where run-time servers are kept (the index)."""

    def servers(self) -> list[tuple[str, str | None]]:
        """``(name, JSON definition or None when deleted)`` rows."""

    def put_server(self, name: str, definition: str | None) -> None:
        """Keep (or, with None, delete) a server definition."""


class RemoteServers:
    """The configured servers, overlaid with those added/removed at run time."""

    def __init__(self, table: ServerTable, config: Config, pools: ThreadPools,
                 reactor: Any = None) -> None:
        self.table = table
        self.config = config
        self.pools = pools
        self.reactor = reactor
        self.options = HttpOptions.from_config(config)
        self.base_dir = os.path.dirname(config.source) if config.source else "."
        self.servers: dict[str, RemoteServer] = dict(config.dicomweb.servers)
        self._clients: dict[str, DicomWebClient] = {}
        self._pools: list[HTTPConnectionPool] = []
        #: The parsed servers of the index, by name: (definition, server).
        self._parsed: dict[str, tuple[str, RemoteServer]] = {}

    @inlineCallbacks
    def ready(self) -> Any:
        """The servers as the index has them now: re-read on each use, since other worker
        processes (or daemons sharing the index) may have added or removed some."""
        rows = yield self.pools.db_read(self._load_rows)
        servers = dict(self.config.dicomweb.servers)
        for name, definition in rows:
            if definition is None:
                servers.pop(name, None)
                continue
            known = self._parsed.get(name)
            if known is not None and known[0] == definition:
                servers[name] = known[1]  # unchanged: the same object keeps its client
                continue
            try:
                servers[name] = parse_server(name, json.loads(definition), self.base_dir)
            except (ConfigError, ValueError) as exc:
                log.error("DICOMweb server {name} stored in the index is unusable: {exc}",
                          name=name, exc=exc)
                continue
            self._parsed[name] = (definition, servers[name])
        self.servers = servers
        return self

    def _load_rows(self) -> list[tuple[str, str | None]]:
        return self.table.servers()

    def get(self, name: str) -> RemoteServer:
        server = self.servers.get(name)
        if server is None:
            raise UnknownServer(f"unknown DICOMweb server {name!r}")
        return server

    @inlineCallbacks
    def client(self, name: str) -> Any:
        """The :class:`DicomWebClient` of a server (certificate files read in a thread)."""
        server = self.get(name)
        client = self._clients.get(name)
        if client is None or client.server is not server:
            http = yield self._build_http(server)
            dw = self.config.dicomweb
            client = DicomWebClient(
                self.reactor or _reactor(), server, self.options, http,
                run_io=self.pools.io,
                stow_max_instances=dw.stow_max_instances, stow_max_size=dw.stow_max_size,
            )
            self._clients[name] = client
        return client

    @inlineCallbacks
    def _build_http(self, server: RemoteServer) -> Any:
        reactor = self.reactor or _reactor()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        pool.cachedConnectionTimeout = 30
        try:
            http = yield self.pools.io(make_http_client, reactor, self.options, server, pool)
        except ClientConfigError as exc:
            raise InvalidServer(str(exc)) from None
        self._pools.append(pool)
        return http

    def close(self) -> Deferred:
        """Close the idle connections to remote servers (at shutdown)."""
        pools, self._pools = self._pools, []
        return DeferredList([p.closeCachedConnections() for p in pools])

    @inlineCallbacks
    def put(self, name: str, value: Any) -> Any:
        try:
            server = parse_server(name, value, self.base_dir)
        except ConfigError as exc:
            raise InvalidServer(str(exc)) from None
        yield self._build_http(server)  # refuse unusable certificates now
        definition = json.dumps(server.to_json())
        yield self.pools.db_write(self.table.put_server, name, definition)
        self.servers[name] = server
        self._parsed[name] = (definition, server)
        self._clients.pop(name, None)

    @inlineCallbacks
    def delete(self, name: str) -> Any:
        self.get(name)
        yield self.pools.db_write(self.table.put_server, name, None)
        self.servers.pop(name, None)
        self._clients.pop(name, None)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class RemoteServersService(Service):
    """Loads the run-time servers at start-up; closes remote connections at shutdown."""

    def __init__(self, servers: RemoteServers) -> None:
        self.servers = servers

    def startService(self) -> None:
        super().startService()
        self.servers.ready()

    def stopService(self) -> Deferred:
        super().stopService()
        return self.servers.close()
