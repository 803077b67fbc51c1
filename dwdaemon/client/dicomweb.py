"""Calls to one remote DICOMweb server: GET/DELETE passthrough, QIDO, STOW, WADO retrieve.

A :class:`DicomWebClient` is built per configured server from the treq client
of :mod:`dwdaemon.client.http`.  Every exchange is bounded by a
:class:`~dwdaemon.client.http.Deadline` (``Timeout`` of the server, else
``HttpTimeout``) and every failure is a :class:`~dwdaemon.client.http.RemoteError`
whose message names the server and the cause.

- STOW streams instance files from disk (read in the ``io`` pool) as
  ``multipart/related; type="application/dicom"`` bodies, cut into several
  requests by ``StowMaxInstances`` / ``StowMaxSize``.
- Retrieve parses the WADO-RS multipart answer as it arrives, spools each
  part to a temporary file (written in the ``io`` pool, the connection paused
  while writes lag) and hands it to the ingest pipeline at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from dwdaemon.client.http import (
    Deadline,
    HttpOptions,
    RemoteError,
    describe_failure,
    make_http_client,
    stream_body,
)
from dwdaemon.dicom import multipart
from dwdaemon.dicom.multipart_reader import MultipartError, MultipartParser, parse_content_type

__all__ = [
    "DicomWebClient",
    "RetrieveOutcome",
    "StowItem",
    "StowOutcome",
    "build_url",
    "plan_stow_chunks",
]

#: Chunk size for reading instance files when sending, and spooling parts when receiving.
CHUNK = 1 << 20
#: Pause the remote while this many bytes wait to be written to temporary files.
MAX_UNWRITTEN = 8 << 20
#: Pause the remote while this many received instances wait for ingest.
MAX_PENDING_INGESTS = 4
#: Bytes of an error answer quoted in the error message.
ERROR_SNIPPET = 300

DICOM_JSON = "application/dicom+json"
RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    return maybeDeferred(fn, *args, **kwargs)


def build_url(base: str, uri: str, arguments: Mapping[str, Any] | None = None) -> str:
    """Join a server's base URL (ending with ``/``) and ``uri``; encode ``arguments``.

    ``uri`` is relative to the base (``/studies`` and ``studies`` are the same);
    characters that are not allowed in a URL path are percent-encoded.
    """
    if uri.startswith(("http://", "https://")):
        raise ValueError("Uri must be relative to the server URL")
    path, sep, query = uri.lstrip("/").partition("?")
    url = base + quote(path, safe="/:@!$&'()*+,;=-._~%")
    params = [(str(k), "" if v is None else str(v)) for k, v in (arguments or {}).items()]
    encoded = urlencode(params, quote_via=quote, safe=",") if params else ""
    if sep and query:
        url += "?" + query + ("&" + encoded if encoded else "")
    elif encoded:
        url += "?" + encoded
    return url


@dataclass(frozen=True)
class StowItem:
    """One instance to send: its file and size (and UID for the answer)."""

    path: str
    size: int
    sop_uid: str = ""
    instance_id: str = ""


def plan_stow_chunks(
    items: Sequence[StowItem], max_instances: int, max_size_mb: int
) -> list[list[StowItem]]:
    """Cut ``items`` into STOW requests of at most ``max_instances`` instances and
    ``max_size_mb`` MB (0 = no limit); an instance larger than the size limit goes
    alone."""
    max_size = max_size_mb * 1024 * 1024
    chunks: list[list[StowItem]] = []
    current: list[StowItem] = []
    size = 0
    for item in items:
        if current and (
            (max_instances and len(current) >= max_instances)
            or (max_size and size + item.size > max_size)
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        chunks.append(current)
    return chunks


@implementer(IBodyProducer)
class MultipartFilesProducer:
    """Streams files as a ``multipart/related`` body, reading chunks in a thread pool."""

    def __init__(
        self,
        items: Sequence[StowItem],
        boundary: str,
        run_io: Callable[..., Deferred] = _inline,
        part_type: str = "application/dicom",
        on_item_sent: Callable[[StowItem], None] | None = None,
    ) -> None:
        self._items = list(items)
        self._boundary = boundary
        self._run_io = run_io
        self._part_type = part_type
        self._on_item_sent = on_item_sent
        self._headers = [
            multipart.part_header(boundary, part_type, [("Content-Length", str(i.size))])
            for i in self._items
        ]
        self._closing = multipart.closing(boundary)
        self.length = (
            sum(len(h) + i.size + 2 for h, i in zip(self._headers, self._items, strict=True))
            + len(self._closing)
        )
        self._paused: Deferred | None = None
        self._stopped = False
        self._pending: Deferred | None = None

    @property
    def content_type(self) -> str:
        return multipart.content_type(self._boundary, self._part_type)

    def startProducing(self, consumer: Any) -> Deferred:
        done: Deferred = Deferred()
        d = self._produce(consumer)

        def finished(result: Any) -> None:
            if not self._stopped:
                done.callback(None) if not isinstance(result, Failure) else done.errback(result)

        d.addBoth(finished)
        return done

    @inlineCallbacks
    def _produce(self, consumer: Any) -> Any:
        for header, item in zip(self._headers, self._items, strict=True):
            yield self._wait()
            consumer.write(header)
            offset = 0
            while offset < item.size:
                yield self._wait()
                want = min(CHUNK, item.size - offset)
                self._pending = self._run_io(_read_chunk, item.path, offset, want)
                data = yield self._pending
                self._pending = None
                if self._stopped:
                    return
                if len(data) != want:
                    raise OSError(f"{item.path}: file changed size while being sent")
                yield self._wait()
                consumer.write(data)
                offset += len(data)
            consumer.write(multipart.part_separator())
            if self._on_item_sent is not None:
                self._on_item_sent(item)
        yield self._wait()
        consumer.write(self._closing)

    def _wait(self) -> Deferred:
        if self._stopped:
            raise CancelledError()
        return self._paused if self._paused is not None else succeed(None)

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()


def _read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as fp:
        fp.seek(offset)
        return fp.read(size)


@dataclass
class StowOutcome:
    """What a STOW to a remote server did."""

    requests: int = 0
    sent: list[str] = field(default_factory=list)  # SOP Instance UIDs accepted
    failed: list[dict[str, Any]] = field(default_factory=list)  # {SOPInstanceUID, FailureReason}
    warnings: int = 0
    bytes_sent: int = 0  # size of the DICOM files sent

    def to_json(self) -> dict[str, Any]:
        """Our counters plus Orthanc's fields (``InstancesCount``, ``NetworkSizeMB``, strings
        as Orthanc gives them)."""
        return {
            "InstancesCount": str(len(self.sent) + len(self.failed)),
            "NetworkSizeMB": str(self.bytes_sent // (1024 * 1024)),
            "Requests": self.requests,
            "Sent": len(self.sent) + len(self.failed),
            "Stored": len(self.sent),
            "Failed": len(self.failed),
            "FailedInstances": self.failed,
        }


@dataclass
class RetrieveOutcome:
    """Instances stored so far by a retrieve (kept even when it fails later)."""

    instances: list[str] = field(default_factory=list)  # Orthanc IDs, as stored
    received: int = 0  # parts received
    bytes_received: int = 0  # body bytes of the parts

    def to_json(self) -> dict[str, Any]:
        """Our fields plus Orthanc's (``ReceivedInstancesCount``, ``NetworkUsageMB``, strings
        as Orthanc gives them)."""
        return {"Instances": list(self.instances), "Received": self.received,
                "ReceivedInstancesCount": str(self.received),
                "NetworkUsageMB": str(self.bytes_received // (1024 * 1024))}


class IngestTarget(Protocol):
    """What retrieve needs from the store."""

    def new_temp(self) -> tuple[str, BinaryIO]: ...

    def ingest_path(self, temp_path: str) -> Deferred: ...


class DicomWebClient:
    """Remote QIDO/WADO/STOW/DELETE calls for one server."""

    def __init__(
        self,
        reactor: Any,
        server: Any,
        options: HttpOptions,
        http: Any = None,
        run_io: Callable[..., Deferred] = _inline,
        stow_max_instances: int = 0,
        stow_max_size: int = 0,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.name: str = server.name
        self.options = options
        self.http = http if http is not None else make_http_client(reactor, options, server)
        self.run_io = run_io
        self.stow_max_instances = stow_max_instances
        self.stow_max_size = stow_max_size
        self.timeout = float(server.timeout or options.timeout or 0)

    # -- plumbing ------------------------------------------------------------------------

    def error(self, cause: str, status: int | None = None) -> RemoteError:
        return RemoteError(self.name, cause, status)

    def headers(self, extra: Mapping[str, str] | None = None) -> Headers:
        """Basic auth, the server's HttpHeaders, then the call's HttpHeaders."""
        h = Headers()
        h.setRawHeaders(b"User-Agent", [b"dwdaemon"])
        if self.server.username is not None:
            cred = f"{self.server.username}:{self.server.password or ''}".encode()
            h.setRawHeaders(b"Authorization", [b"Basic " + base64.b64encode(cred)])
        for source in (self.server.http_headers or {}, extra or {}):
            for name, value in source.items():
                h.setRawHeaders(name.encode("latin-1"), [str(value).encode("latin-1")])
        return h

    def deadline(self) -> Deadline:
        return Deadline(self.reactor, self.timeout)

    def url(self, uri: str, arguments: Mapping[str, Any] | None = None) -> str:
        try:
            return build_url(self.server.url, uri, arguments)
        except ValueError as exc:
            raise self.error(str(exc)) from exc

    @inlineCallbacks
    def open(
        self,
        method: str,
        uri: str,
        *,
        arguments: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        deadline: Deadline | None = None,
        url: str | None = None,
    ) -> Any:
        """Send a request; fire with ``(response, deadline)`` once headers arrived.

        The caller reads the body with :func:`stream_body` (or :meth:`read`) under the
        same deadline, then cancels it.
        """
        deadline = deadline or self.deadline()
        target = url or self.url(uri, arguments)
        try:
            response = yield deadline.guard(
                self.http.request(
                    method, target, headers=self.headers(headers), data=body,
                    allow_redirects=False, unbuffered=True,
                )
            )
        except CancelledError:
            deadline.cancel()
            raise
        except Exception:
            deadline.cancel()
            raise self.error(describe_failure(Failure())) from None
        return response, deadline

    @inlineCallbacks
    def read(self, response: Any, deadline: Deadline, limit: int = 64 << 20) -> Any:
        """Read a whole (small) body under ``deadline``."""
        chunks: list[bytes] = []
        total = [0]

        def add(data: bytes) -> None:
            total[0] += len(data)
            if total[0] > limit:
                raise self.error(f"answer larger than {limit} bytes")
            chunks.append(data)

        try:
            yield stream_body(response, add, deadline)
        except CancelledError:
            raise
        except Exception:
            raise self.error(describe_failure(Failure())) from None
        finally:
            deadline.cancel()
        return b"".join(chunks)

    @inlineCallbacks
    def check_status(self, response: Any, deadline: Deadline, what: str) -> Any:
        """Fail with the remote's status (and the start of its answer) unless 2xx."""
        if 200 <= response.code < 300:
            return None
        snippet = b""
        with contextlib.suppress(Exception):
            snippet = yield self.read(response, deadline, limit=1 << 20)
        text = snippet[:ERROR_SNIPPET].decode("utf-8", "replace").strip()
        phrase = (response.phrase or b"").decode("latin-1", "replace")
        detail = f": {text}" if text else ""
        raise self.error(
            f"{what} answered HTTP {response.code} {phrase}{detail}".rstrip(), response.code
        )

    # -- GET / DELETE passthrough ----------------------------------------------------------

    def get(self, uri: str, arguments: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> Deferred:
        """Start a GET; fire with ``(response, deadline)`` (any status)."""
        return self.open("GET", uri, arguments=arguments, headers=headers)

    @inlineCallbacks
    def delete(self, uri: str, arguments: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None) -> Any:
        """DELETE on the remote; fire with ``(status, content_type, body)``."""
        response, deadline = yield self.open("DELETE", uri, arguments=arguments, headers=headers)
        body = yield self.read(response, deadline, limit=16 << 20)
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode("latin-1")
        return response.code, ctype, body

    # -- QIDO ------------------------------------------------------------------------------

    @inlineCallbacks
    def qido(self, uri: str, arguments: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None) -> Any:
        """A QIDO-RS search; fire with the JSON array of matches."""
        hdrs = {"Accept": DICOM_JSON}
        hdrs.update(headers or {})
        response, deadline = yield self.open("GET", uri, arguments=arguments, headers=hdrs)
        yield self.check_status(response, deadline, "QIDO-RS")
        if response.code == 204:
            deadline.cancel()
            return []
        body = yield self.read(response, deadline)
        if not body.strip():
            return []
        try:
            answer = json.loads(body)
        except ValueError:
            ctype = (response.headers.getRawHeaders(b"content-type") or [b"?"])[0]
            raise self.error(
                f"QIDO-RS answer is not JSON (Content-Type {ctype.decode('latin-1')})"
            ) from None
        if not isinstance(answer, list):
            raise self.error("QIDO-RS answer is not a JSON array")
        return answer

    # -- STOW ------------------------------------------------------------------------------

    @inlineCallbacks
    def stow(
        self,
        items: Sequence[StowItem],
        headers: Mapping[str, str] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        outcome: StowOutcome | None = None,
    ) -> Any:
        """Send ``items`` by STOW-RS in chunks; fire with a :class:`StowOutcome`.

        ``on_progress(sent, total)`` is called as instances go.  On failure the
        :class:`RemoteError` carries ``outcome`` (what was accepted before).
        """
        outcome = outcome if outcome is not None else StowOutcome()
        total = len(items)
        sent = [0]

        def item_sent(item: StowItem) -> None:
            sent[0] += 1
            outcome.bytes_sent += item.size
            if on_progress is not None:
                on_progress(sent[0], total)

        for chunk in plan_stow_chunks(items, self.stow_max_instances, self.stow_max_size):
            producer = MultipartFilesProducer(
                chunk, multipart.new_boundary(), self.run_io, on_item_sent=item_sent
            )
            hdrs = {"Accept": DICOM_JSON, "Content-Type": producer.content_type}
            hdrs.update(headers or {})
            hdrs["Content-Type"] = producer.content_type
            outcome.requests += 1
            try:
                response, deadline = yield self.open(
                    "POST", "studies", headers=hdrs, body=producer
                )
                if response.code == 409:
                    # every instance refused: the body still lists them
                    body = yield self.read(response, deadline)
                else:
                    yield self.check_status(response, deadline, "STOW-RS")
                    body = yield self.read(response, deadline)
            except RemoteError as exc:
                exc.outcome = outcome  # type: ignore[attr-defined]
                raise
            self._account_stow(chunk, response.code, body, outcome)
        return outcome

    def _account_stow(
        self, chunk: list[StowItem], status: int, body: bytes, outcome: StowOutcome
    ) -> None:
        refused: dict[str, Any] = {}
        accepted: set[str] = set()
        if body.strip():
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            if isinstance(answer, list) and answer:  # some servers wrap it in an array
                answer = answer[0]
            if isinstance(answer, dict):
                for item in _seq(answer, "00081198"):
                    uid = _first(item, "00081155")
                    refused[uid or "?"] = _first(item, "00081197")
                for item in _seq(answer, "00081199"):
                    uid = _first(item, "00081155")
                    if uid:
                        accepted.add(uid)
                    if "00081196" in item:
                        outcome.warnings += 1
        for item in chunk:
            if item.sop_uid in refused or (status == 409 and item.sop_uid not in accepted):
                outcome.failed.append(
                    {"SOPInstanceUID": item.sop_uid, "ID": item.instance_id,
                     "FailureReason": refused.pop(item.sop_uid, None)}
                )
            else:
                outcome.sent.append(item.sop_uid)
        for uid, reason in refused.items():  # refused UIDs we did not send?
            outcome.failed.append({"SOPInstanceUID": uid, "FailureReason": reason})

    # -- WADO-RS retrieve ------------------------------------------------------------------

    @inlineCallbacks
    def retrieve(
        self,
        resources: Iterable[Mapping[str, str]],
        target: IngestTarget,
        headers: Mapping[str, str] | None = None,
        arguments: Mapping[str, Any] | None = None,
        on_instance: Callable[[RetrieveOutcome], None] | None = None,
        outcome: RetrieveOutcome | None = None,
    ) -> Any:
        """Pull each ``{Study, Series?, Instance?}`` by WADO-RS into ``target``.

        Fires with a :class:`RetrieveOutcome`; on failure the :class:`RemoteError`
        carries it (``.outcome``): instances stored before the failure stay stored.
        """
        outcome = outcome if outcome is not None else RetrieveOutcome()
        try:
            for res in resources:
                uri = _wado_uri(res)
                yield self._retrieve_one(uri, target, headers, arguments, on_instance, outcome)
        except RemoteError as exc:
            exc.outcome = outcome  # type: ignore[attr-defined]
            raise
        return outcome

    @inlineCallbacks
    def _retrieve_one(
        self,
        uri: str,
        target: IngestTarget,
        headers: Mapping[str, str] | None,
        arguments: Mapping[str, Any] | None,
        on_instance: Callable[[RetrieveOutcome], None] | None,
        outcome: RetrieveOutcome,
    ) -> Any:
        hdrs = {"Accept": RETRIEVE_ACCEPT}
        hdrs.update(headers or {})
        response, deadline = yield self.open("GET", uri, arguments=arguments, headers=hdrs)
        yield self.check_status(response, deadline, "WADO-RS")
        raw_ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        media, params = parse_content_type(raw_ctype)
        if media != "multipart/related" or not params.get("boundary"):
            deadline.cancel()
            _abort(response)
            shown = raw_ctype.decode("latin-1") or "none"
            raise self.error(f"WADO-RS answer is not multipart/related (Content-Type {shown})")
        spool = _RetrieveSpool(self, target, outcome, on_instance)
        parser = MultipartParser(params["boundary"], spool.on_part)
        flow = _Flow()
        spool.flow = flow
        try:
            yield stream_body(response, parser.feed, deadline, flow=flow)
            parser.close()
            if parser.parts == 0:
                raise MultipartError("no part")
            yield spool.drain()
        except CancelledError:
            spool.abort()
            yield spool.settle()
            raise
        except Exception:
            failure = Failure()
            spool.abort()
            yield spool.settle()
            if isinstance(failure.value, RemoteError):
                failure.raiseException()
            if isinstance(failure.value, MultipartError):
                raise self.error(f"malformed multipart answer: {failure.value}") from None
            raise self.error(f"{uri}: {describe_failure(failure)}") from None
        finally:
            deadline.cancel()
        return outcome


def _abort(response: Any) -> None:
    stream_body(response, lambda data: None).addErrback(lambda f: None)
    transport = getattr(getattr(response, "original", response), "_transport", None)
    producer = getattr(transport, "_producer", None)
    if producer is not None and hasattr(producer, "abortConnection"):
        producer.abortConnection()


def _wado_uri(res: Mapping[str, str]) -> str:
    if not isinstance(res, Mapping) or not res.get("Study"):
        raise ValueError("each resource needs at least a Study UID")
    uri = f"studies/{res['Study']}"
    if res.get("Series"):
        uri += f"/series/{res['Series']}"
        if res.get("Instance"):
            uri += f"/instances/{res['Instance']}"
    elif res.get("Instance"):
        raise ValueError("an Instance needs its Series")
    return uri


def _seq(dataset: Mapping[str, Any], tag: str) -> list[Mapping[str, Any]]:
    value = dataset.get(tag)
    if isinstance(value, Mapping):
        items = value.get("Value") or []
        return [i for i in items if isinstance(i, Mapping)]
    return []


def _first(dataset: Mapping[str, Any], tag: str) -> Any:
    value = dataset.get(tag)
    if isinstance(value, Mapping):
        items = value.get("Value") or []
        return items[0] if items else None
    return None


class _Flow:
    """Pauses the response transport while local work lags behind."""

    def __init__(self) -> None:
        self.producer: Any = None
        self._reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self._reasons and self.producer is not None:
            self.producer.pauseProducing()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons and self.producer is not None:
                self.producer.resumeProducing()


class _RetrieveSpool:
    """Spools multipart parts to temporary files and ingests them in order."""

    def __init__(
        self,
        client: DicomWebClient,
        target: IngestTarget,
        outcome: RetrieveOutcome,
        on_instance: Callable[[RetrieveOutcome], None] | None,
    ) -> None:
        self.client = client
        self.target = target
        self.outcome = outcome
        self.on_instance = on_instance
        self.flow: _Flow = _Flow()
        self._chain: Deferred = succeed(None)  # io writes and ingests, serialised
        self._unwritten = 0
        self._pending_ingests = 0
        self._error: Failure | None = None
        self._aborted = False
        self.temps: set[_PartFile] = set()
        self._ingests: set[Deferred] = set()

    def _then(self, part: _PartFile, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` for ``part``.

        After an abort (the remote failed), the work of parts received completely
        still runs, so that what arrived whole is stored; after a local error
        (a part that is not DICOM) nothing more runs.
        """

        def step(_: Any) -> Any:
            if self._error is not None or (self._aborted and not part.complete):
                return None
            return fn(*args)

        def failed(f: Failure) -> None:
            if self._error is None:
                self._error = f
                self.flow.resume("io")
                self.flow.resume("ingest")
                # stop reading the remote: the sink raises on the next chunk
            return None

        self._chain.addCallback(step)
        self._chain.addErrback(failed)

    def on_part(self, headers: dict[str, str]) -> _PartFile:
        self.raise_if_failed()
        media, _ = parse_content_type(headers.get("content-type"))
        if media != "application/dicom":
            raise self.client.error(
                f"WADO-RS answer holds a non-DICOM part (Content-Type "
                f"{headers.get('content-type') or 'none'})"
            )
        self.outcome.received += 1
        part = _PartFile(self, self.outcome.received)
        self._then(part, part.create)
        return part

    def raise_if_failed(self) -> None:
        if self._error is not None:
            self._error.raiseException()

    # called by _PartFile
    def queue_write(self, part: _PartFile, data: bytes) -> None:
        self._unwritten += len(data)
        if self._unwritten > MAX_UNWRITTEN:
            self.flow.pause("io")

        def write() -> Deferred:
            d = self.client.run_io(part.write_blocking, data)

            def written(r: Any) -> Any:
                self._unwritten -= len(data)
                if self._unwritten <= MAX_UNWRITTEN // 2:
                    self.flow.resume("io")
                return r

            return d.addBoth(written)

        self._then(part, write)

    def queue_ingest(self, part: _PartFile) -> None:
        self._pending_ingests += 1
        if self._pending_ingests >= MAX_PENDING_INGESTS:
            self.flow.pause("ingest")
        self._then(part, self._start_ingest, part)

    def _start_ingest(self, part: _PartFile) -> Deferred:
        """In the chain: close the file; then ingest it while the next parts arrive."""

        def launch(_: Any) -> None:
            self.temps.discard(part)  # the store takes the file over
            ingest = self._ingest(part)
            self._ingests.add(ingest)
            ingest.addErrback(self._record_error)
            ingest.addBoth(lambda _: self._ingests.discard(ingest))

        return self.client.run_io(part.close_blocking).addCallback(launch)

    def _record_error(self, failure: Failure) -> None:
        if self._error is None:
            self._error = failure
            self.flow.resume("io")
            self.flow.resume("ingest")

    @inlineCallbacks
    def _ingest(self, part: _PartFile) -> Any:
        try:
            result = yield self.target.ingest_path(part.path)
        except Exception as exc:
            raise self.client.error(
                f"part {part.number} of the WADO-RS answer is not a valid DICOM instance "
                f"({exc})"
            ) from None
        finally:
            self._pending_ingests -= 1
            if self._pending_ingests < MAX_PENDING_INGESTS:
                self.flow.resume("ingest")
        ids = getattr(result, "ids", None)
        self.outcome.instances.append(ids.instance if ids is not None else str(result))
        if self.on_instance is not None:
            self.on_instance(self.outcome)

    @inlineCallbacks
    def _quiet(self) -> Any:
        """Wait until no write, create or ingest is queued or running."""
        while True:
            chain = self._chain
            yield chain
            if self._ingests:
                yield DeferredList(list(self._ingests), consumeErrors=True)
            if chain is self._chain and not self._ingests:
                break

    @inlineCallbacks
    def drain(self) -> Any:
        """Wait for every queued write and ingest; raise the first error."""
        yield self._quiet()
        self.raise_if_failed()

    def abort(self) -> None:
        self._aborted = True

    @inlineCallbacks
    def settle(self) -> Any:
        """After a failure: wait for queued work to stop, remove temporary files."""
        with contextlib.suppress(Exception):
            yield self._quiet()
        temps, self.temps = list(self.temps), set()
        for part in temps:
            yield self.client.run_io(part.discard_blocking)


class _PartFile:
    """One received part, spooled to a temporary file of the store."""

    def __init__(self, spool: _RetrieveSpool, number: int) -> None:
        self.spool = spool
        self.number = number
        self.path = ""
        self._fp: BinaryIO | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.complete = False

    def create(self) -> Deferred:
        def make() -> None:
            self.path, self._fp = self.spool.target.new_temp()

        d = self.spool.client.run_io(make)
        d.addCallback(lambda _: self.spool.temps.add(self))
        return d

    def write(self, data: bytes) -> None:
        self.spool.raise_if_failed()
        self.spool.outcome.bytes_received += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._buffered:
            data = b"".join(self._buffer)
            self._buffer, self._buffered = [], 0
            self.spool.queue_write(self, data)

    def close(self) -> None:
        self._flush()
        self.complete = True
        self.spool.queue_ingest(self)

    def abort(self) -> None:
        self._buffer, self._buffered = [], 0

    # blocking, in the io pool
    def write_blocking(self, data: bytes) -> None:
        assert self._fp is not None
        self._fp.write(data)

    def close_blocking(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def discard_blocking(self) -> None:
        """Close and remove the temporary file (nothing half-written remains)."""
        self.close_blocking()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

