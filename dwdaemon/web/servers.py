"""DICOMweb client routes under ``{Root}servers`` (as in Orthanc's DICOMweb plugin).

- ``GET servers/`` (``?expand``), ``GET|PUT|DELETE servers/{name}``;
- ``POST servers/{name}/get`` streams a remote answer back;
- ``POST servers/{name}/qido`` answers the remote QIDO-RS matches as a JSON array;
- ``POST servers/{name}/stow`` sends local resources by STOW-RS (a job);
- ``POST servers/{name}/retrieve`` pulls by WADO-RS into the store (a job);
- ``POST servers/{name}/delete`` (servers with ``HasDelete``) sends an HTTP DELETE.

``stow`` and ``retrieve`` always run as jobs (visible in ``/jobs``);
``Synchronous`` (default **true**, as the seed's examples answer with the
result) decides whether the call waits for the job or answers ``{ID, Path}`` at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH, IRequest

from dwdaemon.client.dicomweb import DicomWebClient, RetrieveOutcome, StowItem, StowOutcome
from dwdaemon.client.http import (
    RemoteError,
    RemoteTimeout,
    describe_failure,
    stream_body,
)
from dwdaemon.client.registry import RemoteServers
from dwdaemon.config import Config
from dwdaemon.jobs import SUCCESS, Job, JobHandle, ReadyEngine
from dwdaemon.store.store import Store
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import flag
from dwdaemon.web.responses import json_body
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.urls import Urls

log = Logger()

#: Default of ``Synchronous`` for ``stow`` and ``retrieve``.
DEFAULT_SYNCHRONOUS = True
LEVELS = ("patients", "studies", "series", "instances")


# --------------------------------------------------------------------------
# request bodies


MAX_JSON_BODY = 1 << 20


def _json(request: IRequest) -> Any:
    content = request.content
    if content is None:
        return {}
    content.seek(0, 2)
    if content.tell() > MAX_JSON_BODY:  # JSON bodies are small: never read a big one here
        raise ApiError(413, f"the JSON body is larger than {MAX_JSON_BODY} bytes")
    content.seek(0)
    raw = content.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body must be a JSON document") from None


def _object(request: IRequest) -> dict[str, Any]:
    body = _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _str_map(body: Mapping[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ApiError(400, f"{key} must be a JSON object")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise ApiError(400, f"{key}.{k} must be a string or a number")
        out[k] = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return out


def _uri(body: Mapping[str, Any]) -> str:
    uri = body.get("Uri")
    if not isinstance(uri, str) or not uri:
        raise ApiError(400, "Uri is required (a path relative to the server's URL)")
    if uri.startswith(("http://", "https://")) or "://" in uri.split("?", 1)[0]:
        raise ApiError(400, "Uri must be relative to the server's URL")
    return uri


def _synchronous(body: Mapping[str, Any]) -> bool:
    """``Synchronous`` (or Orthanc's ``Asynchronous``), default :data:`DEFAULT_SYNCHRONOUS`."""
    if "Synchronous" in body:
        value = body["Synchronous"]
    elif "Asynchronous" in body:
        value = body["Asynchronous"]
        value = (not value) if isinstance(value, bool) else value
    else:
        value = DEFAULT_SYNCHRONOUS
    if not isinstance(value, bool):
        raise ApiError(400, "Synchronous must be true or false")
    return value


def _remote_failure(exc: BaseException) -> ApiError:
    """The error answer of a failed remote call (502, or 504 on time-out)."""
    details: dict[str, Any] = {}
    status = 502
    if isinstance(exc, RemoteError):
        if exc.status is not None:
            details["RemoteStatus"] = exc.status
        if "timed out" in exc.cause:
            status = 504
        outcome = getattr(exc, "outcome", None)
        if outcome is not None:
            details.update(outcome.to_json())
    elif isinstance(exc, RemoteTimeout):
        status = 504
    return ApiError(status, str(exc), details=details or None)


# --------------------------------------------------------------------------
# routes


class Servers(RouteGroup):
    """The DICOMweb client routes under ``{Root}servers``."""

    def __init__(self, config: Config, urls: Urls, store: Store, servers: RemoteServers,
                 jobs: ReadyEngine) -> None:
        super().__init__(config)
        self.store = store
        self.servers = servers
        self.jobs = jobs
        base = urls.dw("servers")
        self.route(base, methods=["GET"], endpoint="servers.list", handler=self.list_servers)
        self.route(base + "/", methods=["GET"], endpoint="servers.list_slash",
                   handler=self.list_servers)
        self.route(base + "/<string:name>", methods=["GET"], endpoint="servers.operations",
                   handler=self.operations)
        self.route(base + "/<string:name>", methods=["PUT"], endpoint="servers.put",
                   handler=self.put_server)
        self.route(base + "/<string:name>", methods=["DELETE"], endpoint="servers.delete",
                   handler=self.delete_server)
        self.route(base + "/<string:name>/get", methods=["POST"], endpoint="servers.get",
                   handler=self.remote_get)
        self.route(base + "/<string:name>/delete", methods=["POST"],
                   endpoint="servers.remote_delete", handler=self.remote_delete)
        self.route(base + "/<string:name>/qido", methods=["POST"], endpoint="servers.qido",
                   handler=self.remote_qido)
        self.route(base + "/<string:name>/stow", methods=["POST"], endpoint="servers.stow",
                   handler=self.remote_stow)
        self.route(base + "/<string:name>/retrieve", methods=["POST"], endpoint="servers.retrieve",
                   handler=self.remote_retrieve)
        self.route(base + "/<string:name>/wado", methods=["POST"], endpoint="servers.wado",
                   handler=self.remote_wado)

    def list_servers(self, request: IRequest) -> Any:
        d = self.servers.ready()

        def answer(_: Any) -> bytes:
            names = sorted(self.servers.servers)
            if flag(request, "expand"):
                return json_body(request, {n: self.servers.servers[n].describe() for n in names})
            return json_body(request, names)

        return d.addCallback(answer)

    @inlineCallbacks
    def operations(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        server = self.servers.get(name)
        ops = ["get", "retrieve", "stow", "wado", "qido"]  # Orthanc's order
        if server.has_delete:
            ops.append("delete")
        return json_body(request, ops)

    @inlineCallbacks
    def put_server(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        yield self.servers.put(name, _json(request))
        return json_body(request, {})

    @inlineCallbacks
    def delete_server(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        yield self.servers.delete(name)
        return json_body(request, {})

    @inlineCallbacks
    def remote_get(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        body = _object(request)
        client = yield self.servers.client(name)
        uri = _uri(body)
        headers, arguments = _str_map(body, "HttpHeaders"), _str_map(body, "Arguments")
        try:
            response, deadline = yield client.get(uri, arguments, headers)
        except RemoteError as exc:
            raise _remote_failure(exc) from None
        yield _relay(request, client, response, deadline)

    @inlineCallbacks
    def remote_delete(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        server = self.servers.get(name)
        if not server.has_delete:
            raise ApiError(400, f"DICOMweb server {name!r} does not allow DELETE "
                                "(HasDelete is false)")
        body = _object(request)
        client = yield self.servers.client(name)
        headers, arguments = _str_map(body, "HttpHeaders"), _str_map(body, "Arguments")
        if "Resources" in body:
            uris = [_resource_uri(r) for r in _list(body, "Resources")]
        else:
            uris = [_uri(body)]
        results = []
        for uri in uris:
            try:
                status, ctype, answer = yield client.delete(uri, arguments, headers)
            except RemoteError as exc:
                raise _remote_failure(exc) from None
            results.append((status, ctype, answer))
        if "Resources" not in body:
            status, ctype, answer = results[0]
            request.setResponseCode(status)
            request.setHeader("Content-Type", ctype or "application/octet-stream")
            return answer
        failed = [(u, r[0]) for u, r in zip(uris, results, strict=True) if r[0] >= 300]
        if failed:
            raise ApiError(502, f"remote DICOMweb server {name!r}: DELETE answered "
                                + ", ".join(f"HTTP {s} for {u}" for u, s in failed))
        return json_body(request, {"Deleted": len(uris)})

    @inlineCallbacks
    def remote_qido(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        body = _object(request)
        client = yield self.servers.client(name)
        try:
            answer = yield client.qido(
                _uri(body), _str_map(body, "Arguments"), _str_map(body, "HttpHeaders"))
        except RemoteError as exc:
            raise _remote_failure(exc) from None
        return json_body(request, answer)

    @inlineCallbacks
    def remote_stow(self, request: IRequest, name: str) -> Any:
        yield self.servers.ready()
        self.servers.get(name)
        body = _object(request)
        resources = _list(body, "Resources")
        if not all(isinstance(r, str) for r in resources):
            raise ApiError(400, "Resources must list Orthanc identifiers (strings)")
        headers = _str_map(body, "HttpHeaders")
        synchronous = _synchronous(body)
        items = yield _stow_items(self.store, resources)
        client = yield self.servers.client(name)
        content = {"Server": name, "Resources": resources, "Instances": len(items)}

        def run(handle: JobHandle) -> Deferred:
            outcome = StowOutcome()

            def progress(done: int, total: int) -> None:
                handle.progress(done, total, outcome.to_json())

            d = client.stow(items, headers, on_progress=progress, outcome=outcome)
            return d.addCallback(lambda o: o.to_json())

        engine = yield self.jobs.ready()
        job = engine.submit("DicomWebStowClient", content, run)
        return (yield _answer_job(request, engine, job, synchronous))

    def remote_retrieve(self, request: IRequest, name: str) -> Any:
        return self._retrieve(request, name, "DicomWebRetrieveClient")

    def remote_wado(self, request: IRequest, name: str) -> Any:
        """Orthanc's ``wado`` operation: retrieve the resource a WADO-RS ``Uri`` names, as a
        job (asynchronous unless ``Synchronous`` is true, as in Orthanc)."""
        return self._retrieve(request, name, "DicomWebWadoRetrieveClient")

    @inlineCallbacks
    def _retrieve(self, request: IRequest, name: str, job_type: str) -> Any:
        yield self.servers.ready()
        self.servers.get(name)
        body = _object(request)
        if job_type == "DicomWebWadoRetrieveClient":
            resources = [_wado_resource(_uri(body))]
            synchronous = body.get("Synchronous") is True
        else:
            resources = _list(body, "Resources")
            synchronous = _synchronous(body)
        for r in resources:
            _resource_uri(r)  # validate before starting
        headers, arguments = _str_map(body, "HttpHeaders"), _str_map(body, "Arguments")
        client = yield self.servers.client(name)
        content = {"Server": name, "Resources": resources}

        def run(handle: JobHandle) -> Deferred:
            outcome = RetrieveOutcome()
            total = len(resources)
            state = {"resource": 0}

            def on_instance(o: RetrieveOutcome) -> None:
                n = len(o.instances) - state.get("start", 0)
                fraction = state["resource"] + n / (n + 10.0)
                handle.progress(int(fraction * 1000), total * 1000, o.to_json())

            @inlineCallbacks
            def go() -> Any:
                for i, res in enumerate(resources):
                    state["resource"], state["start"] = i, len(outcome.instances)
                    yield client.retrieve([res], self.store, headers, arguments,
                                          on_instance=on_instance, outcome=outcome)
                    handle.progress(i + 1, total, outcome.to_json())
                return outcome.to_json()

            return go()

        engine = yield self.jobs.ready()
        job = engine.submit(job_type, content, run)
        return (yield _answer_job(request, engine, job, synchronous))


def _wado_resource(uri: str) -> dict[str, str]:
    """The ``{"Study", "Series"?, "Instance"?}`` that a WADO-RS URI of ``.../wado`` names."""
    parts = [p for p in uri.split("?")[0].split("/") if p]
    names = ["studies", "series", "instances"]
    keys = ["Study", "Series", "Instance"]
    resource: dict[str, str] = {}
    if not parts or len(parts) % 2 or len(parts) > 6:
        raise ApiError(400, f"Uri {uri!r} must name a study, series or instance "
                            "(/studies/{uid}[/series/{uid}[/instances/{uid}]])")
    for i in range(0, len(parts), 2):
        if parts[i] != names[i // 2]:
            raise ApiError(400, f"Uri {uri!r} must name a study, series or instance")
        resource[keys[i // 2]] = parts[i + 1]
    return resource


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"{key} must be a non-empty JSON array")
    return value


def _resource_uri(res: Any) -> str:
    if not isinstance(res, dict) or not isinstance(res.get("Study"), str) or not res["Study"]:
        raise ApiError(400, "each resource must be an object with at least a Study UID")
    for key in ("Series", "Instance"):
        if key in res and not isinstance(res[key], str):
            raise ApiError(400, f"{key} must be a UID string")
    if res.get("Instance") and not res.get("Series"):
        raise ApiError(400, "an Instance needs its Series")
    uri = f"studies/{res['Study']}"
    if res.get("Series"):
        uri += f"/series/{res['Series']}"
        if res.get("Instance"):
            uri += f"/instances/{res['Instance']}"
    return uri


@inlineCallbacks
def _stow_items(store: Store, resources: list[str]) -> Any:
    """Every instance below the given Orthanc IDs, as files to send (no duplicates)."""
    seen: set[str] = set()
    items: list[StowItem] = []
    for public_id in resources:
        rows = None
        for level in LEVELS:
            found = yield store.instances_of(level, public_id)
            if found:
                rows = found
                break
        if rows is None:
            raise ApiError(404, f"unknown resource {public_id!r}")
        for row in rows:
            if row.public_id in seen:
                continue
            seen.add(row.public_id)
            items.append(StowItem(store.file_path(row.file_uuid), row.file_size,
                                  row.sop_uid, row.public_id))
    return items


@inlineCallbacks
def _answer_job(request: IRequest, engine: Any, job: Job, synchronous: bool) -> Any:
    if not synchronous:
        return json_body(request, {"ID": job.id, "Path": f"/jobs/{job.id}"})
    yield engine.wait(job)
    if job.state == SUCCESS:
        return json_body(request, job.result)
    status = 504 if "timed out" in (job.error or "") else 502
    if job.error and job.error.startswith("cancelled"):
        status = 500
    raise ApiError(status, job.error or "job failed",
                   details={"Job": job.id, **(job.result or {})})


@inlineCallbacks
def _relay(request: IRequest, client: DicomWebClient, response: Any, deadline: Any) -> Any:
    """Stream a remote answer back: status, Content-Type and body."""
    request.setResponseCode(response.code)
    ctype = response.headers.getRawHeaders(b"content-type")
    request.setHeader(b"content-type", ctype[0] if ctype else b"application/octet-stream")
    if response.length != UNKNOWN_LENGTH and response.code not in (204, 304):
        request.setHeader(b"content-length", str(response.length).encode())
    pump = _Pump(request)
    gone: list[bool] = []
    finished = request.notifyFinish()
    body = stream_body(response, pump.write, deadline, flow=pump)

    def client_left(_: Any) -> None:
        gone.append(True)
        body.cancel()

    finished.addErrback(client_left)
    try:
        yield body
    except CancelledError:
        if gone:
            return None
        raise
    except Exception:
        failure = Failure()
        if request.startedWriting:
            # too late for an error status: break the connection so the client cannot
            # take a truncated body for a complete one
            transport = getattr(request, "transport", None)
            if transport is not None:
                transport.abortConnection()
        error = failure.value
        if not isinstance(error, RemoteError):
            error = client.error(describe_failure(failure))
        raise _remote_failure(error) from None
    finally:
        deadline.cancel()
        request.unregisterProducer()
    return b""


class _Pump:
    """Writes remote body bytes to the request; pauses the remote when the client is slow."""

    def __init__(self, request: IRequest) -> None:
        self.request = request
        self._producer: Any = None
        self._paused = False
        request.registerProducer(self, True)

    @property
    def producer(self) -> Any:
        """The remote body's transport (set by ``stream_body``)."""
        return self._producer

    @producer.setter
    def producer(self, value: Any) -> None:
        self._producer = value
        if value is not None and self._paused:
            value.pauseProducing()

    def write(self, data: bytes) -> None:
        self.request.write(data)

    def pauseProducing(self) -> None:
        self._paused = True
        if self._producer is not None:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._producer is not None:
            self._producer.resumeProducing()

    def stopProducing(self) -> None:
        if self._producer is not None:
            self._producer.stopProducing()
