"""twistd plugin entry: ``twistd -n dicomweb [--config FILE] [--listen DESCRIPTION]``."""

from __future__ import annotations

import os
from typing import Any

from klein import Klein
from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from dwdaemon.client.registry import RemoteServers, RemoteServersService
from dwdaemon.config import Config, ConfigError, load_config
from dwdaemon.dicom.dictionary import register as register_dictionary
from dwdaemon.jobs import JobsService, ReadyEngine, job_owner
from dwdaemon.store.index.base import Index
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.storage import StorageArea
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web.app import install_routes
from dwdaemon.web.bodies import limited_request_class
from dwdaemon.web.context import Context
from dwdaemon.web.cors import install as install_cors
from dwdaemon.web.limits import HttpLimits, LimitedChannel
from dwdaemon.web.metrics import Metrics
from dwdaemon.web.observe import Observer, observed_request_class
from dwdaemon.web.routing import access_error
from dwdaemon.web.wado_rs import WadoService

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
        self.store.open()

    def stopService(self) -> None:
        super().stopService()
        self.store.close()


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


def build_context(config: Config, store: Store, pools: ThreadPools, reactor: Any = None
                  ) -> Context:
    """Every long-lived collaborator of the web resources, built here and nowhere else."""
    ctx = Context(config=config, store=store, pools=pools, app=Klein(), reactor=reactor)
    ctx.limits = HttpLimits.from_config(config)
    ctx.metrics = Metrics(ctx)
    store.listeners.append(
        lambda result, size: ctx.metrics.instance_ingested(result.status, size))
    ctx.jobs = ReadyEngine(store.index, pools, reactor, job_owner(config))
    ctx.services.append(JobsService(ctx.jobs))
    if config.dicomweb.enable:
        ctx.servers = RemoteServers(store.index, config, pools, reactor)
        ctx.services.append(RemoteServersService(ctx.servers))
    ctx.wado = WadoService(ctx)
    return ctx


def build_site(config: Config, reactor: Any = None, pools: ThreadPools | None = None
               ) -> tuple[Site, Store, ThreadPools, Context]:
    """The web site, store and pools of a daemon (used by makeService and by tests)."""
    pools = pools or ThreadPools(reactor, pixels=config.maximum_pixel_jobs)
    os.makedirs(config.storage_directory, exist_ok=True)
    os.makedirs(config.index_directory, exist_ok=True)
    index, orphan_min_age = build_index(config)
    register_dictionary(config.dictionary, config.default_private_creator)
    store = Store(StorageArea(config.storage_directory), index, pools,
                  overwrite=config.overwrite_instances, orphan_min_age=orphan_min_age,
                  default_encoding=config.default_encoding)
    ctx = build_context(config, store, pools, reactor)
    # no route takes an HTML form: Twisted need not parse the Content-Type of every POST
    site = Site(install_routes(ctx).resource(), parsePOSTFormSubmission=False)
    mb = 1024 * 1024
    site.requestFactory = observed_request_class(
        limited_request_class(config.maximum_request_size * mb, config.maximum_upload_size * mb,
                              upload_paths=(config.dicomweb.root + "studies", "/instances")),
        Observer(ctx.metrics))
    site.displayTracebacks = False
    site.log = lambda request: None  # the access line is dwdaemon.web.observe's (request id)
    site.protocol = LimitedChannel
    site.dw_limits = ctx.limits
    site.dw_access_check = lambda request: access_error(ctx, request)
    install_cors(site, config)
    return site, store, pools, ctx


def makeService(options: Options) -> service.MultiService:
    """Build the daemon: thread pools, store, and the HTTP(S) server."""
    config: Config = options.config
    for warning in options.warnings:
        log.warn("configuration: {warning}", warning=warning)
    top = service.MultiService()
    if config.log_format == "json":
        from dwdaemon.logs import JsonLogService

        JsonLogService().setServiceParent(top)  # first: later start-up lines are JSON too
    site, store, pools, ctx = build_site(config)
    pools.setServiceParent(top)
    StoreService(store).setServiceParent(top)
    for long_lived in ctx.services:  # the job engine, the remote servers
        long_lived.setServiceParent(top)
    description = options["listen"] or listen_description(config)
    strports.service(description, site).setServiceParent(top)
    log.info("dwdaemon {name}: listening on {description}, storage {storage}",
             name=config.name, description=description, storage=config.storage_directory)
    return top
