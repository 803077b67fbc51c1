"""STOW-RS (PS3.18 10.5): ``POST {Root}studies`` and ``POST {Root}studies/{study}``.

The body arrives spooled (Twisted keeps bodies over 100 KB in a temporary file; see
:mod:`dwdaemon.web.bodies` for the size limit).  It is parsed part by part in a worker thread;
each DICOM part is written straight into a temporary file of the storage area and handed to
the store's ingest pipeline, which parses it once, moves it into place and indexes it.  A few
parts are ingested while the next ones are parsed; memory does not depend on the body size.

Metadata + bulk data requests (``type="application/dicom+json"`` / ``+xml``) are parsed the
same way; once the whole body is read every dataset is assembled into a DICOM file from its
bulk parts (:func:`dwdaemon.dicom.stow_model.assemble_instance`) and ingested.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from klein import Klein
from pydicom import dcmread
from twisted.internet import defer
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    gatherResults,
    inlineCallbacks,
)
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from dwdaemon.dicom import stow_model as sm
from dwdaemon.dicom.mediatypes import AcceptError, negotiate
from dwdaemon.dicom.multipart_reader import (
    MultipartError,
    MultipartParser,
    parse_content_type,
)
from dwdaemon.store.ingest import IngestError
from dwdaemon.store.storage import StorageFull, TempFile, discard
from dwdaemon.web.context import Context
from dwdaemon.web.errors import ApiError

log = Logger()

__all__ = ["install"]

#: Bytes of each DICOM part kept in memory to name the instance when ingest refuses it.
HEAD_BYTES = 64 * 1024
#: Parts ingested concurrently per request while the next ones are parsed.
PIPELINE = 3
#: Longest boundary parameter accepted (RFC 2046 allows 70; some clients go beyond).
MAX_BOUNDARY = 200

#: Bytes of the body's end searched for the closing boundary before anything is stored.
TAIL_BYTES = 256 * 1024
CHUNK = 1 << 20
#: A metadata part larger than this spools to disk.
METADATA_MEMORY = 4 << 20

_ACCEPT_OFFERS = [sm.DICOM_JSON, sm.DICOM_XML]
_ACCEPT_ALIASES = {
    "application/json": sm.DICOM_JSON,
    "application/xml": sm.DICOM_XML,
    "text/xml": sm.DICOM_XML,
}
_BODY_TYPES = (sm.DICOM, sm.DICOM_JSON, sm.DICOM_XML)


# -- part sinks ---------------------------------------------------------------------------------

class DicomPartSink:
    """Writes a DICOM part into a temporary file of the storage area (ingest takes it over)."""

    def __init__(self, path: str, fp: TempFile) -> None:
        self.path = path
        self.fp = fp
        self.head = bytearray()
        #: (SOPClassUID, SOPInstanceUID, StudyInstanceUID) read from the head when needed.
        self.uids: tuple[str, str, str] | None = None
        #: What :meth:`Store.prepare` gave (or raised) in the parsing thread.
        self.prepared: Any = None
        self.error: BaseException | None = None
        #: The part belongs to another study than the URL's (removed, named by ``uids``).
        self.other_study = False
        #: Handed to :meth:`StowTransaction.ingest_part` (the store owns its file now).
        self.taken = False

    def write(self, data: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        self.fp.write(data)

    def close(self) -> None:
        self.fp.close()

    def abort(self) -> None:
        self.fp.close()
        discard(self.path)


class MetadataSink:
    """Keeps a metadata part (JSON/XML), spooling to disk when large."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        self.fp = tempfile.SpooledTemporaryFile(METADATA_MEMORY)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self.fp.write(data)

    def close(self) -> None:
        self.fp.seek(0)

    def abort(self) -> None:
        self.fp.close()

    def read(self) -> bytes:
        self.fp.seek(0)
        data = self.fp.read()
        self.fp.close()
        return data


class BulkSink:
    """A bulk data part spooled to a temporary file (removed after the request)."""

    def __init__(self, path: str, fp: IO[bytes], headers: dict[str, str], media: str,
                 params: dict[str, str]) -> None:
        self.path = path
        self.fp = fp
        self.headers = headers
        self.part = sm.BulkPart(path, media, params, headers.get("content-location", ""))

    def write(self, data: bytes) -> None:
        self.fp.write(data)

    def close(self) -> None:
        self.fp.close()

    def abort(self) -> None:
        self.fp.close()
        discard(self.path)


# -- request handling -----------------------------------------------------------------------

@dataclass
class _Request:
    boundary: str
    body_type: str
    expected_study: str | None
    accept: str


def _check_request(request: IRequest, study: str | None) -> _Request:
    """Validate headers: 415 for media types, 406 for Accept, 400 for the rest."""
    try:
        accept = negotiate(request.getHeader(b"accept"), _ACCEPT_OFFERS, _ACCEPT_ALIASES)
    except AcceptError as exc:
        raise ApiError(400, str(exc)) from exc
    media, params = parse_content_type(request.getHeader(b"content-type"))
    if media != "multipart/related":
        raise ApiError(415, "STOW-RS expects a multipart/related body "
                            f"(Content-Type {media or 'missing'})")
    body_type, _ = parse_content_type(params.get("type", sm.DICOM))
    if body_type not in _BODY_TYPES:
        raise ApiError(415, f"unsupported multipart type {body_type!r}: expected "
                            "application/dicom, application/dicom+json or application/dicom+xml")
    if accept is None:
        raise ApiError(406, "cannot answer in any media type the Accept header allows "
                            "(application/dicom+json, application/dicom+xml)")
    boundary = params.get("boundary", "")
    if not boundary:
        raise ApiError(400, "multipart/related Content-Type without a boundary parameter")
    if len(boundary) > MAX_BOUNDARY or not boundary.isascii():
        raise ApiError(400, f"multipart boundary parameter over {MAX_BOUNDARY} characters "
                            "or not ASCII (RFC 2046 allows 70)")
    return _Request(boundary, body_type, study, accept)


def _check_framing(body: IO[bytes], boundary: str) -> None:
    """Refuse (MultipartError) a body without a closing boundary before storing anything."""
    closing = b"--" + boundary.encode("latin-1") + b"--"
    body.seek(0, os.SEEK_END)
    size = body.tell()
    if size == 0:
        raise MultipartError("empty body")
    body.seek(max(0, size - TAIL_BYTES))
    tail = body.read()
    idx = tail.rfind(closing)
    while idx >= 0:
        before = tail[max(0, idx - 1):idx]
        if before == b"\n" or (idx == 0 and size <= TAIL_BYTES):
            body.seek(0)
            return
        idx = tail.rfind(closing, 0, idx)
    if size > TAIL_BYTES:
        # A long epilogue? Check the whole framing (discarding the parts).
        body.seek(0)
        parser = MultipartParser(boundary, lambda headers: None)
        while chunk := body.read(CHUNK):
            parser.feed(chunk)
            if parser.done:
                break
        parser.close()
        body.seek(0)
        return
    raise MultipartError("missing closing boundary (truncated body?)")


def _uids_from_head(head: bytes) -> tuple[str, str, str]:
    """(SOPClassUID, SOPInstanceUID, StudyInstanceUID) from the first bytes of a part."""
    try:
        ds = dcmread(io.BytesIO(bytes(head)), stop_before_pixels=True, force=True,
                     specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return (str(ds.get("SOPClassUID", "") or "").strip(" \x00"),
                str(ds.get("SOPInstanceUID", "") or "").strip(" \x00"),
                str(ds.get("StudyInstanceUID", "") or "").strip(" \x00"))
    except Exception:
        return "", "", ""


class PartPump:
    """Reads the spooled body in a worker thread, a few parts per call.

    :meth:`start` first checks the framing (so a truncated body stores nothing), then each
    call parses until at least one part is complete or the body ends, and returns
    ``(sinks, finished, error)``; a malformed body ends the parts with ``error`` set.
    """

    def __init__(self, body: IO[bytes], boundary: str, sink_factory: Any,
                 expected_study: str | None, prepare: Any) -> None:
        self.body = body
        self.boundary = boundary
        self.expected_study = expected_study
        #: ``Store.prepare``: run on each complete DICOM part in this thread (no extra hop).
        self.prepare = prepare
        self.completed: list[Any] = []
        self.factory = sink_factory
        self.parser = MultipartParser(boundary, self._on_part, zero_copy=True)
        self.finished = False

    def _on_part(self, headers: dict[str, str]) -> Any:
        sink = self.factory(headers)
        return _Completing(sink, self.completed)

    def start(self) -> tuple[list[Any], bool, str | None]:
        _check_framing(self.body, self.boundary)
        return self.pump()

    def pump(self) -> tuple[list[Any], bool, str | None]:
        error = None
        try:
            while not self.completed and not self.finished:
                chunk = self.body.read(CHUNK)
                if chunk:
                    self.parser.feed(chunk)
                if not chunk or self.parser.done:
                    self.finished = True
                    self.parser.close()
        except MultipartError as exc:
            self.finished = True
            error = str(exc)
        out, self.completed[:] = list(self.completed), []
        for sink in out:
            if isinstance(sink, DicomPartSink):
                self._prepare(sink)
        return out, self.finished, error

    def _prepare(self, sink: DicomPartSink) -> None:
        """Prepare a complete part for its commit, unless it belongs to another study than
        the URL's (then it is removed and ``sink.uids`` names it; refused on the reactor)."""
        expected = self.expected_study
        if expected:
            sink.uids = _uids_from_head(sink.head)
            if sink.uids[2] and sink.uids[2] != expected:
                discard(sink.path)
                sink.other_study = True
                return
        try:
            sink.prepared = self.prepare(sink.path, sink.fp.digest())
        except Exception as exc:  # reported per instance on the reactor
            sink.error = exc
            return
        analysis = sink.prepared.analysis
        if expected and analysis.study_uid != expected:
            # The head did not name the study (a long header): the full parse did.
            discard(sink.prepared.temp_path)
            sink.uids = (analysis.sop_class_uid, analysis.sop_uid, analysis.study_uid)
            sink.prepared = None
            sink.other_study = True

    def abort(self) -> None:
        """Drop a part left open (the request failed midway)."""
        if not self.finished:
            self.parser.abort()


def _discard_all(paths: list[str]) -> None:
    """Remove temporary files (worker thread)."""
    for path in paths:
        discard(path)


class _Completing:
    """Wraps a sink to queue it once complete."""

    __slots__ = ("sink", "done")

    def __init__(self, sink: Any, done: list[Any]) -> None:
        self.sink = sink
        self.done = done

    def write(self, data: bytes) -> None:
        self.sink.write(data)

    def close(self) -> None:
        self.sink.close()
        self.done.append(self.sink)

    def abort(self) -> None:
        self.sink.abort()


class StowTransaction:
    """One STOW-RS request: parse, ingest, answer."""

    def __init__(self, ctx: Context, request: IRequest, req: _Request) -> None:
        self.ctx = ctx
        self.request = request
        self.req = req
        self.store = ctx.store
        self.stored: list[tuple[int, sm.StoredInstance]] = []
        self.failed: list[tuple[int, sm.FailedInstance]] = []
        self.metadata: list[tuple[int, MetadataSink]] = []
        self.bulk = sm.BulkIndex()
        self.temp_paths: list[str] = []
        #: DICOM part sinks; those never handed to the store are removed when the request
        #: fails or is lost (a client gone mid-request left them in the storage's .tmp).
        self.dicom_sinks: list[DicomPartSink] = []
        self.order = 0
        #: The DICOMweb root URL as the client sees it (computed once per request).
        self.base_url = ctx.dicomweb_url(request)

    # sinks are created in the parser's thread
    def sink_for(self, headers: dict[str, str]) -> Any:
        media, params = sm.classify_part(headers, self.req.body_type)
        if media in (sm.DICOM_JSON, sm.DICOM_XML):
            return MetadataSink(media)
        if media == sm.DICOM or self.req.body_type == sm.DICOM:
            # In an application/dicom body every other part is an instance too (clients
            # label them application/octet-stream...); a part that is not DICOM fails alone.
            path, fp = self.store.new_temp()
            sink = DicomPartSink(path, fp)
            self.dicom_sinks.append(sink)
            return sink
        path, fp = self.store.new_temp()
        self.temp_paths.append(path)
        return BulkSink(path, fp, headers, media, params)

    @inlineCallbacks
    def run(self) -> Any:
        body = self.request.content
        if body is None:
            raise ApiError(400, "empty body")
        pools = self.ctx.pools
        pump = PartPump(body, self.req.boundary, self.sink_for, self.req.expected_study,
                        self.store.prepare)
        sem = DeferredSemaphore(PIPELINE)
        pending: list[Any] = []
        try:
            try:
                parts, finished, malformed = yield pools.io(pump.start)
            except MultipartError as exc:
                raise ApiError(400, f"malformed multipart body: {exc}") from exc
            while True:
                for sink in parts:
                    order = self.order
                    self.order += 1
                    if isinstance(sink, DicomPartSink):
                        yield sem.acquire()
                        d = self.ingest_part(order, sink)
                        d.addBoth(lambda r: (sem.release(), r)[1])
                        pending.append(d)
                    elif isinstance(sink, MetadataSink):
                        self.metadata.append((order, sink))
                    else:
                        self.bulk.add(sink.headers, sink.part)
                if finished:
                    break
                parts, finished, malformed = yield pools.io(pump.pump)
            yield gatherResults(pending, consumeErrors=True)
            if self.metadata and malformed is None:
                yield self.ingest_metadata()
        finally:
            pump.abort()
            for path in self.temp_paths:
                discard(path)
            leftovers = [s.path for s in self.dicom_sinks if not s.taken]
            if leftovers:
                yield pools.io(_discard_all, leftovers)
            # On failure, let the parts already handed over finish (committed or removed)
            # before the request ends, so nothing of it is left in flight.
            yield DeferredList(pending, consumeErrors=True)
        if malformed is not None:
            if not self.stored and not self.failed:
                raise ApiError(400, f"malformed multipart body: {malformed}")
            self.failed.append((self.order, sm.FailedInstance(
                "", "", sm.CANNOT_UNDERSTAND, f"malformed multipart body: {malformed}")))
        if not self.stored and not self.failed:
            raise ApiError(400, "the multipart body holds no DICOM instance")
        return self.answer()

    def ingest_part(self, order: int, sink: DicomPartSink) -> Any:
        """Commit one prepared DICOM part; record success or failure."""
        sink.taken = True
        if sink.other_study:
            sop_class, sop_uid, study = sink.uids or ("", "", "")
            self.fail(order, sop_class, sop_uid, sm.PROCESSING_FAILURE,
                      f"instance belongs to study {study}, not {self.req.expected_study}")
            return defer.succeed(None)
        if sink.error is not None:
            return self.record(order, defer.fail(sink.error), sink.head)
        return self.record(order, self.store.index_prepared(sink.prepared), sink.head)

    @inlineCallbacks
    def record(self, order: int, pending: Any, head: bytes | None) -> Any:
        """Record the outcome of an ingest (a Deferred of an :class:`IngestResult`)."""
        try:
            result = yield pending
        except IngestError as exc:
            sop_class, sop_uid = "", ""
            if head:
                sop_class, sop_uid, _ = yield self.ctx.pools.parse(_uids_from_head, head)
            self.fail(order, sop_class, sop_uid, getattr(exc, "reason", sm.CANNOT_UNDERSTAND),
                      str(exc))
            return
        except StorageFull as exc:
            self.fail(order, "", "", sm.OUT_OF_RESOURCES, str(exc))
            return
        except Exception as exc:
            log.failure("STOW ingest failed")
            self.fail(order, "", "", sm.PROCESSING_FAILURE, str(exc))
            return
        url = (f"{self.base_url}/studies/{result.study_uid}/series/{result.series_uid}"
               f"/instances/{result.sop_uid}")
        warning = sm.WARNING_COERCION if result.warnings else None
        self.stored.append((order, sm.StoredInstance(
            result.sop_class_uid, result.sop_uid, result.study_uid, url, warning)))

    def fail(self, order: int, sop_class: str, sop_uid: str, reason: int, message: str) -> None:
        refusals = self.ctx.limits.refusals if self.ctx.limits is not None else None
        if refusals is not None:  # one warning line, rate-limited per client address
            host = getattr(self.request.getClientAddress(), "host", "?")
            refusals.refused(host, f"STOW-RS instance {reason:#06x}", message)
        else:
            log.info("STOW-RS refused an instance ({reason:#06x}): {message}", reason=reason,
                     message=message)
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.part_refused(reason)
        self.failed.append((order, sm.FailedInstance(sop_class, sop_uid, reason, message)))

    @inlineCallbacks
    def ingest_metadata(self) -> Any:
        """Assemble and ingest every dataset of the metadata parts."""
        for order, sink in self.metadata:
            try:
                datasets = yield self.ctx.pools.io(
                    lambda s=sink: sm.metadata_datasets(s.media_type, s.read()))
            except sm.StowError as exc:
                self.fail(order, "", "", exc.reason, str(exc))
                continue
            for ds_json in datasets:
                try:
                    path, digest = yield self.ctx.pools.parse(self.assemble, ds_json)
                except sm.StowError as exc:
                    self.fail(order, exc.sop_class_uid, exc.sop_instance_uid, exc.reason,
                              str(exc))
                    continue
                sop_class = sm.first_text(ds_json, "00080016")
                sop_uid = sm.first_text(ds_json, "00080018")
                study = sm.first_text(ds_json, "0020000D")
                expected = self.req.expected_study
                if expected and study != expected:
                    discard(path)
                    self.fail(order, sop_class, sop_uid, sm.PROCESSING_FAILURE,
                              f"instance belongs to study {study}, not {expected}")
                    continue
                yield self.record(order, self.store.ingest_path(path, digest), None)

    def assemble(self, ds_json: dict[str, Any]) -> tuple[str, tuple[int, str] | None]:
        path, fp = self.store.new_temp()
        try:
            with fp:
                sm.assemble_instance(ds_json, self.bulk, fp)
        except BaseException:
            discard(path)
            raise
        return path, fp.digest()

    def answer(self) -> bytes:
        stored = [s for _, s in sorted(self.stored, key=lambda p: p[0])]
        failed = [f for _, f in sorted(self.failed, key=lambda p: p[0])]
        study_url = sm.study_url_for(stored, self.req.expected_study,
                                     lambda s: f"{self.base_url}/studies/{s}")
        doc = sm.build_response(stored, failed, study_url)
        status = sm.response_status(stored, failed)
        request = self.request
        request.setResponseCode(status)
        if self.req.accept == sm.DICOM_XML:
            from dwdaemon.dicom.xmlmodel import dataset_json_to_xml

            body = dataset_json_to_xml(doc)
            request.setHeader(b"content-type", b"application/dicom+xml")
        else:
            body = json.dumps(doc).encode("utf-8")
            request.setHeader(b"content-type", b"application/dicom+json")
        if failed and stored:
            request.setHeader(b"warning", b'299 dwdaemon "some instances were not stored"')
        request.setHeader(b"content-length", str(len(body)).encode())
        return body


def install(app: Klein, ctx: Context) -> None:
    """Register the STOW-RS routes under the DICOMweb root."""

    @ctx.route(ctx.dw("studies"), methods=["POST"])
    def stow_studies(request: IRequest) -> Any:
        return _uncancellable(StowTransaction(ctx, request, _check_request(request, None)).run())

    @ctx.route(ctx.dw("studies/<string:study>"), methods=["POST"])
    def stow_study(request: IRequest, study: str) -> Any:
        return _uncancellable(StowTransaction(ctx, request, _check_request(request, study)).run())


def _uncancellable(work: Any) -> Any:
    """``work`` as seen by Klein, which cancels a handler's Deferred when the client leaves.

    Cancelling would stop the transaction at its current wait (a worker thread still parsing,
    parts still in flight) and skip its clean-up; instead the transaction runs to its end
    (the lost body fails it soon) and removes its temporary files, and its result is dropped.
    """
    out: Deferred[Any] = Deferred(lambda _: None)

    def forward(result: Any) -> None:
        if not out.called:
            out.callback(result)  # a Failure goes to the errbacks

    work.addBoth(forward)
    return out
