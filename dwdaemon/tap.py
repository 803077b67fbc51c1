"""twistd plugin entry: ``twistd -n dicomweb [--config FILE] [--listen DESCRIPTION]``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from dwdaemon.client.registry import RemoteServers, RemoteServersService
from dwdaemon.config import Config, ConfigError, load_config
from dwdaemon.dicom.dictionary import register as register_dictionary
from dwdaemon.jobs import JobsService, ReadyEngine, job_owner
from dwdaemon.store.index.base import Index
from dwdaemon.store.index.sql import NewerSchemaError
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.storage import StorageArea
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web.capabilities import Capabilities
from dwdaemon.web.core_images import CoreImages
from dwdaemon.web.default_encoding import DefaultEncoding
from dwdaemon.web.jobs import Jobs
from dwdaemon.web.limits import HttpLimits
from dwdaemon.web.metrics import Metrics, MetricsPage
from dwdaemon.web.qido import Qido
from dwdaemon.web.rest import CoreRest
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.servers import Servers
from dwdaemon.web.site import Routes, make_site
from dwdaemon.web.stow import Stow
from dwdaemon.web.tools import Tools
from dwdaemon.web.urls import Urls
from dwdaemon.web.wado_rs import WadoRs, WadoService
from dwdaemon.web.wado_uri import WadoUri
from dwdaemon.web.webpage import WebPage
from dwdaemon.workers import WORKER_ENV

log = Logger()


class Options(usage.Options):
    """Command-line options of the ``dicomweb`` twistd plugin."""

    optParameters = [
        ["config", "c", None, "Orthanc-style JSON configuration file (default: embedded defaults)"],
        ["listen", "l", None,
         "endpoint description overriding HttpPort/HttpBindAddress/SslEnabled "
         "(e.g. tcp:8042:interface=127.0.0.1)"],
    ]

    def postOptions(self) -> None:
        try:
            self.config, self.warnings = load_config(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(f"configuration error: {exc}") from exc
        except OSError as exc:
            raise usage.UsageError(f"cannot read configuration: {exc}") from exc


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def listen_description(config: Config) -> str:
    """The server endpoint description for the configuration (HTTP or HTTPS)."""
    interface = _escape(config.listen_address())
    if config.ssl_enabled:
        pem = _escape(config.ssl_certificate)
        return (f"ssl:port={config.http_port}:interface={interface}:privateKey={pem}"
                f":certKey={pem}")
    return f"tcp:port={config.http_port}:interface={interface}"


class StoreService(service.Service):
    """Opens the store (recovery included) at start-up and closes it at shutdown."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        opening_or_exit(self.store.open)

    def stopService(self) -> None:
        super().stopService()
        self.store.close()


def opening_or_exit(open_store: Callable[[], Any]) -> Any:
    """Run ``open_store`` at start-up; if the store cannot be opened, log why (an index of a
    newer dwdaemon, a disk or database error) and stop twistd with exit status 1 instead of
    serving without a store."""
    try:
        return open_store()
    except NewerSchemaError as exc:
        log.critical("cannot open the store: {error}", error=exc)
    except Exception:
        log.failure("cannot open the store")
    # startService runs inside the reactor, which would log a SystemExit and serve on: end the
    # process here, with the log written out (nothing was accepted yet)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


#: With a shared index, start-up clean-up leaves files younger than this (seconds) alone: they
#: may be another daemon's uploads in progress.
SHARED_ORPHAN_MIN_AGE = 3600.0


def build_index(config: Config) -> tuple[Index, float]:
    """The index back-end of the configuration, and the orphan-file age safe with it."""
    pg = config.postgresql
    if pg.enable_index:
        from dwdaemon.store.index.postgres import PostgresIndex, conninfo

        dsn = conninfo(pg.host, pg.port, pg.database, pg.username, pg.password,
                       pg.connection_uri)
        return PostgresIndex(dsn), SHARED_ORPHAN_MIN_AGE
    return SqliteIndex(config.index_directory), 0.0


def build_store(config: Config, pools: ThreadPools) -> Store:
    """The store: the storage area and the index of the configuration."""
    os.makedirs(config.storage_directory, exist_ok=True)
    os.makedirs(config.index_directory, exist_ok=True)
    index, orphan_min_age = build_index(config)
    register_dictionary(config.dictionary, config.default_private_creator)
    storage = StorageArea(config.storage_directory,
                          recent_cache_bytes=config.recently_stored_cache_size << 20)
    return Store(storage, index, pools,
                 overwrite=config.overwrite_instances, orphan_min_age=orphan_min_age,
                 default_encoding=config.default_encoding)


def route_groups(config: Config, urls: Urls, store: Store, pools: ThreadPools,
                 jobs: ReadyEngine, servers: RemoteServers | None, metrics: Metrics,
                 limits: HttpLimits) -> list[RouteGroup]:
    """The route groups of the configuration: Orthanc's core always, DICOMweb when
    ``DicomWeb.Enable``, WADO-URI when ``DicomWeb.EnableWado`` too."""
    wado = WadoService(config, urls, store, pools)  # shared by WADO-RS, WADO-URI, core images
    groups: list[RouteGroup] = [
        CoreRest(config, store, pools),
        Jobs(config, jobs),
        Tools(config, store),
        DefaultEncoding(config, store),
        CoreImages(config, store, wado),
        MetricsPage(config, store, metrics),
        WebPage(config),
    ]
    if config.dicomweb.enable:
        if servers is None:
            raise ValueError("the DICOMweb routes need the remote-server registry")
        groups += [
            Stow(config, urls, store, metrics, limits.refusals),
            Qido(config, urls, store, pools),
            WadoRs(config, urls, wado),
            Servers(config, urls, store, servers, jobs),
        ]
        if config.dicomweb.enable_wado:
            groups.append(WadoUri(config, store, pools, wado))
    return groups


@dataclass
class Daemon:
    """Every long-lived object of a daemon (built by :func:`build_daemon`)."""

    config: Config
    pools: ThreadPools
    store: Store
    jobs: ReadyEngine
    servers: RemoteServers | None
    metrics: Metrics
    limits: HttpLimits
    site: Site
    #: Started after the store is open, stopped before it closes: the job engine, the
    #: remote servers (the pools and the store are started first, see :func:`makeService`).
    services: list[service.Service] = field(default_factory=list)


def build_daemon(config: Config, reactor: Any = None, pools: ThreadPools | None = None
                 ) -> Daemon:
    """Build the daemon from its configuration; every long-lived object is made here."""
    pools = pools or ThreadPools(reactor, pixels=config.maximum_pixel_jobs)
    store = build_store(config, pools)
    jobs = ReadyEngine(store.index, pools, reactor, job_owner(config))
    servers = (RemoteServers(store.index, config, pools, reactor)
               if config.dicomweb.enable else None)
    metrics = Metrics(pools, jobs)
    store.listeners.append(
        lambda result, size: metrics.instance_ingested(result.status, size))
    limits = HttpLimits.from_config(config)
    urls = Urls(config)
    groups = route_groups(config, urls, store, pools, jobs, servers, metrics, limits)
    capabilities = Capabilities(config, urls, groups)  # last: it describes the others
    routes = Routes(config, [*groups, capabilities], options=capabilities.unrouted)
    site = make_site(config, routes, metrics, limits)
    services: list[service.Service] = [JobsService(jobs)]
    if servers is not None:
        services.append(RemoteServersService(servers))
    return Daemon(config, pools, store, jobs, servers, metrics, limits, site, services)


def makeService(options: Options) -> service.MultiService:
    """The daemon as a twistd service: logs, the daemon's services, the HTTP(S) listener."""
    config: Config = options.config
    for warning in options.warnings:
        log.warn("configuration: {warning}", warning=warning)
    top = service.MultiService()
    if config.log_format == "json":
        from dwdaemon.logs import JsonLogService

        JsonLogService().setServiceParent(top)  # first: later start-up lines are JSON too
    if config.workers > 1 or WORKER_ENV in os.environ:  # a parent of workers, or a worker
        # (a worker is pinned to one CPU: its own count of CPUs, the default of Workers,
        # would be 1; its parent's environment says what it is)
        from dwdaemon.workers import make_service

        return make_service(options, top, options["listen"] or listen_description(config))
    daemon = build_daemon(config)
    daemon.pools.setServiceParent(top)
    StoreService(daemon.store).setServiceParent(top)
    for background in daemon.services:  # the job engine, the remote servers
        background.setServiceParent(top)
    description = options["listen"] or listen_description(config)
    strports.service(description, daemon.site).setServiceParent(top)
    log.info("dwdaemon {name}: listening on {description}, storage {storage}",
             name=config.name, description=description, storage=config.storage_directory)
    return top
