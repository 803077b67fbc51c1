"""Prometheus metrics: ``GET /metrics`` and Orthanc's ``GET /tools/metrics-prometheus``.

Each daemon has its own :class:`prometheus_client.CollectorRegistry` (several daemons in one
process, as in the tests, do not mix their counts). Counters are updated as requests end and
instances are ingested; sizes (index, storage, jobs, thread-pool queues) are read when scraped,
the index counts in the database thread pool.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.jobs import ReadyEngine
from dwdaemon.web.auth import client_host, is_loopback
from dwdaemon.web.errors import ApiError
from dwdaemon.web.routing import RouteGroup, check_access, guarded

if TYPE_CHECKING:
    from dwdaemon.store.store import Store
    from dwdaemon.threads import ThreadPools

#: Latency buckets (seconds): 1 ms to 2 min.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 120.0)

#: Names of the STOW-RS failure reasons (PS3.18 table 10.5.3-2 and the daemon's uses).
REASONS = {0xC000: "cannot-understand", 0xA900: "dataset-mismatch", 0xA700: "out-of-resources",
           0xC122: "transfer-syntax", 0x0110: "processing-failure"}

JOB_STATES = ("Pending", "Running", "Success", "Failure")


class Metrics:
    """The metrics of one daemon."""

    def __init__(self, pools: ThreadPools | None = None, jobs: ReadyEngine | None = None
                 ) -> None:
        self.pools = pools
        self.jobs = jobs
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("dwdaemon_http_requests", "HTTP requests answered (or lost)",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("dwdaemon_http_request_duration_seconds",
                                 "Time from the request head to the end of the answer",
                                 ["service"], buckets=BUCKETS, registry=r)
        self.in_progress = Gauge("dwdaemon_http_requests_in_progress",
                                 "Requests being handled", registry=r)
        self.lost = Counter("dwdaemon_http_requests_lost",
                            "Requests whose client left before the answer ended", registry=r)
        self.ingested = Counter("dwdaemon_ingested_instances",
                                "Instances ingested, by outcome (Success, AlreadyStored)",
                                ["status"], registry=r)
        self.ingested_bytes = Counter("dwdaemon_ingested_bytes",
                                      "Bytes of the DICOM files ingested", registry=r)
        self.refused = Counter("dwdaemon_stow_refused_instances",
                               "STOW-RS parts refused, by failure reason", ["reason"],
                               registry=r)
        self.stats: dict[str, int] = {}  # index statistics of the last render (/metrics)
        r.register(_Live(self))

    # -- updates (reactor thread) -----------------------------------------------------------
    def request_done(self, method: str, route: str, service: str, status: int,
                     duration: float, lost: bool) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(service).observe(duration)
        if lost:
            self.lost.inc()

    def instance_ingested(self, status: str, size: int) -> None:
        self.ingested.labels(status).inc()
        if status == "Success":
            self.ingested_bytes.inc(size)

    def part_refused(self, reason: int) -> None:
        self.refused.labels(REASONS.get(reason, f"{reason:#06x}")).inc()

    def render(self, stats: dict[str, int]) -> bytes:
        """The text exposition, with the index counts just read."""
        self.stats = stats
        return generate_latest(self.registry)


class _Live:
    """Collector of what is read when scraped: index, storage, jobs, thread pools."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        stats = self.metrics.stats
        pools = self.metrics.pools
        index = GaugeMetricFamily("dwdaemon_index_resources", "Resources in the index",
                                  labels=["level"])
        for level in ("patients", "studies", "series", "instances"):
            if level in stats:
                index.add_metric([level], stats[level])
        yield index
        if "size" in stats:
            yield GaugeMetricFamily("dwdaemon_storage_bytes",
                                    "Bytes of the stored DICOM files", value=stats["size"])
        if pools is None:
            return
        jobs = GaugeMetricFamily("dwdaemon_jobs", "Remote jobs of this daemon, by state",
                                 labels=["state"])
        engine = getattr(self.metrics.jobs, "engine", None)
        tally = Tally(job.state for job in engine.list()) if engine is not None else Tally()
        for state in JOB_STATES:
            jobs.add_metric([state], tally.get(state, 0))
        yield jobs
        queued = GaugeMetricFamily("dwdaemon_threadpool_queue_depth",
                                   "Work items waiting for a thread", labels=["pool"])
        busy = GaugeMetricFamily("dwdaemon_threadpool_busy_threads",
                                 "Threads running work", labels=["pool"])
        for name, pool in pools.pools.items():
            team = getattr(pool, "_team", None)  # Twisted's pool keeps its counts there
            numbers = team.statistics() if team is not None else None
            queued.add_metric([name], getattr(numbers, "backloggedWorkCount", 0))
            busy.add_metric([name], getattr(numbers, "busyWorkerCount", 0))
        yield queued
        yield busy


def _stats_numbers(raw: dict[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        try:
            out[key] = int(value)
        except (TypeError, ValueError):
            continue
    return out


class MetricsPage(RouteGroup):
    """``GET /metrics`` and ``GET /tools/metrics-prometheus`` (404 unless ``MetricsEnabled``)."""

    def __init__(self, config: Config, store: Store, metrics: Metrics) -> None:
        super().__init__(config)
        self.store = store
        self.metrics = metrics
        for path in ("/metrics", "/tools/metrics-prometheus"):
            handler = guarded(config, self.scrape, access=self.access, template=path)
            self.app.route(path, methods=["GET"], endpoint=f"metrics:{path}")(handler)

    def access(self, config: Config, request: IRequest) -> None:
        """Loopback scrapers may skip authentication (``MetricsLoopbackWithoutAuth``)."""
        if config.metrics_loopback_without_auth and is_loopback(client_host(request)):
            return
        check_access(config, request)

    @inlineCallbacks
    def scrape(self, request: IRequest) -> Any:
        if not self.config.metrics_enabled:
            raise ApiError(404, "metrics are disabled (MetricsEnabled is false)")
        raw = yield self.store.statistics()
        body = self.metrics.render(_stats_numbers(raw))
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return body
