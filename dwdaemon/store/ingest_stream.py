"""Ingest of a multipart/related body (STOW-RS): the store's side of a STOW request.

The web layer checks the HTTP headers and hands the spooled body to :class:`IngestStream`
(through :meth:`dwdaemon.store.store.Store.ingest_stream`), which parses it part by part in a
worker thread. Each DICOM part is written straight into a temporary file of the storage area,
parsed and validated in that thread (:meth:`Store.prepare`), and committed with group commit
(:meth:`Store.index_prepared`: fsync, rename, index in one transaction) while the next parts
are parsed; memory does not depend on the body size.

Metadata + bulk data bodies (``type="application/dicom+json"`` / ``+xml``) are parsed the same
way; once the whole body is read every dataset is assembled into a DICOM file from its bulk
parts (:func:`dwdaemon.dicom.stow_model.assemble_instance`) and ingested.

Every outcome is reported per part through two callbacks (stored / failed with a PS3.18
failure reason); temporary files never handed over are removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from typing import IO, TYPE_CHECKING, Any

from pydicom import dcmread
from twisted.internet import defer
from twisted.internet.defer import DeferredList, DeferredSemaphore, gatherResults, inlineCallbacks
from twisted.logger import Logger

from dwdaemon.dicom import stow_model as sm
from dwdaemon.dicom.multipart_reader import MultipartError, MultipartParser
from dwdaemon.store.ingest import IngestError
from dwdaemon.store.storage import StorageFullError, TempFile, discard

if TYPE_CHECKING:
    from dwdaemon.store.store import IngestResult, Store

log = Logger()

__all__ = ["IngestStream", "MultipartError"]

#: Bytes of each DICOM part kept in memory to name the instance when ingest refuses it.
HEAD_BYTES = 64 * 1024
#: DICOM parts a worker-thread call parses and prepares before handing them over: they are
#: committed together (one index transaction, one thread hand-off for all of them).
GROUP = 8
#: Parts ingested concurrently per request while the next ones are parsed (two groups).
PIPELINE = 2 * GROUP
#: Bytes of the body's end searched for the closing boundary before anything is stored.
TAIL_BYTES = 256 * 1024
CHUNK = 1 << 20
#: A metadata part larger than this spools to disk.
METADATA_MEMORY = 4 << 20

#: ``on_stored(order, result)``: part ``order`` was stored.
StoredCallback = Callable[[int, "IngestResult"], None]
#: ``on_failed(order, sop_class_uid, sop_instance_uid, reason, message)``: part refused.
FailedCallback = Callable[[int, str, str, int, str], None]


# -- part sinks ---------------------------------------------------------------------------------

class _TempFileSink:
    """A part written to a temporary file ``path``; an aborted part leaves nothing."""

    def __init__(self, path: str, fp: IO[bytes] | TempFile) -> None:
        self.path = path
        self.fp = fp

    def write(self, data: bytes) -> None:
        self.fp.write(data)

    def close(self) -> None:
        self.fp.close()

    def abort(self) -> None:
        self.fp.close()
        discard(self.path)


class DicomPartSink(_TempFileSink):
    """Writes a DICOM part into a temporary file of the storage area (ingest takes it over)."""

    def __init__(self, path: str, fp: TempFile, syncer: Executor | None = None) -> None:
        super().__init__(path, fp)
        #: Where the part is synced once complete (``None``: by the parsing thread).
        self.syncer = syncer
        self.head = bytearray()
        #: (SOPClassUID, SOPInstanceUID, StudyInstanceUID) read from the head when needed.
        self.uids: tuple[str, str, str] | None = None
        #: What :meth:`Store.prepare` gave (or raised) in the parsing thread.
        self.prepared: Any = None
        self.error: BaseException | None = None
        #: The part belongs to another study than the URL's (removed, named by ``uids``).
        self.other_study = False

    def write(self, data: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        self.fp.write(data)

    def close(self) -> None:
        """The part is complete: sync it now, in the background while the parsing thread
        parses it (and the parts after it), so that its commit only waits for that sync,
        renames and indexes it. A part that cannot be synced fails alone (a full disk is
        reported as such, by the commit)."""
        try:
            self.fp.close(sync=True, background=self.syncer)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.fp.close()
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            self.error = StorageFullError(exc.errno, "storage area is full") if full else exc


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


class BulkSink(_TempFileSink):
    """A bulk data part spooled to a temporary file (removed after the request)."""

    def __init__(self, path: str, fp: IO[bytes], headers: dict[str, str], media: str,
                 params: dict[str, str]) -> None:
        super().__init__(path, fp)
        self.headers = headers
        self.part = sm.BulkPart(path, media, params, headers.get("content-location", ""))


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


# -- parsing (worker thread) ------------------------------------------------------------------

def check_framing(body: IO[bytes], boundary: str) -> None:
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


def uids_from_head(head: bytes) -> tuple[str, str, str]:
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
    call parses until ``want`` parts are complete or the body ends, and returns
    ``(sinks, finished, error)``; a malformed body ends the parts with ``error`` set.
    """

    #: Complete parts a call waits for (fewer at the end of the body).
    want = GROUP

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
        check_framing(self.body, self.boundary)
        return self.pump()

    def pump(self) -> tuple[list[Any], bool, str | None]:
        error = None
        try:
            while len(self.completed) < self.want and not self.finished:
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
        if sink.error is not None:  # not synced: reported as it is
            discard(sink.path)
            return
        expected = self.expected_study
        if expected:
            sink.uids = uids_from_head(sink.head)
            if sink.uids[2] and sink.uids[2] != expected:
                discard(sink.path)
                sink.other_study = True
                return
        try:
            sink.prepared = self.prepare(sink.path, sink.fp.digest(), synced=sink.fp.synced)
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


# -- the stream (reactor) ----------------------------------------------------------------------

class IngestStream:
    """Ingest every instance of one multipart/related body.

    ``body`` is the spooled body (read in worker threads), ``body_type`` the multipart
    ``type`` parameter (application/dicom, +json or +xml), ``expected_study`` the study of
    the URL (parts of another study are refused). Outcomes go to ``on_stored`` and
    ``on_failed`` in the reactor thread; :attr:`order` counts the parts seen.
    """

    def __init__(self, store: Store, body: IO[bytes], boundary: str, body_type: str,
                 expected_study: str | None, on_stored: StoredCallback,
                 on_failed: FailedCallback) -> None:
        self.store = store
        self.body = body
        self.boundary = boundary
        self.body_type = body_type
        self.expected_study = expected_study
        self.on_stored = on_stored
        self.on_failed = on_failed
        self.metadata: list[tuple[int, MetadataSink]] = []
        self.bulk = sm.BulkIndex()
        self.temp_paths: list[str] = []
        #: DICOM part sinks not handed to the commit yet: removed when the request fails or
        #: is lost (a client gone mid-request left them as temporary files). A sink leaves
        #: the set once handed over, so that the request does not keep every part's head
        #: (64 KB) and parsed data until its end (4,089 parts once kept 370 MB).
        self.dicom_sinks: set[DicomPartSink] = set()
        self.order = 0

    # sinks are created in the parser's thread
    def sink_for(self, headers: dict[str, str]) -> Any:
        media, params = sm.classify_part(headers, self.body_type)
        if media in (sm.DICOM_JSON, sm.DICOM_XML):
            return MetadataSink(media)
        if media == sm.DICOM or self.body_type == sm.DICOM:
            # In an application/dicom body every other part is an instance too (clients
            # label them application/octet-stream...); a part that is not DICOM fails alone.
            path, fp = self.store.new_temp()
            sink = DicomPartSink(path, fp, self.store.storage.background_sync())
            self.dicom_sinks.add(sink)
            return sink
        path, fp = self.store.new_temp()
        self.temp_paths.append(path)
        return BulkSink(path, fp, headers, media, params)

    @inlineCallbacks
    def run(self) -> Any:
        """Parse and ingest the whole body. Fires with None, or with the message of a
        malformed body found after its first parts (those parts are reported); fails with
        :class:`MultipartError` when the body is refused before anything is stored."""
        pools = self.store.pools
        pump = PartPump(self.body, self.boundary, self.sink_for, self.expected_study,
                        self.store.prepare)
        sem = DeferredSemaphore(PIPELINE)
        pending: list[Any] = []
        try:
            parts, finished, malformed = yield pools.ingest(pump.start)
            while True:
                group: list[tuple[int, DicomPartSink]] = []
                for sink in parts:
                    order = self.order
                    self.order += 1
                    if isinstance(sink, DicomPartSink):
                        if group and not sem.tokens:
                            # No room left: commit what is gathered before waiting.
                            pending += self.ingest_group(group, sem)
                            group = []
                        yield sem.acquire()
                        group.append((order, sink))
                    elif isinstance(sink, MetadataSink):
                        self.metadata.append((order, sink))
                    else:
                        self.bulk.add(sink.headers, sink.part)
                if group:
                    pending += self.ingest_group(group, sem)
                if finished:
                    break
                parts, finished, malformed = yield pools.ingest(pump.pump)
            yield gatherResults(pending, consumeErrors=True)
            if self.metadata and malformed is None:
                yield self.ingest_metadata()
        finally:
            pump.abort()
            for path in self.temp_paths:
                discard(path)
            leftovers = [s.path for s in list(self.dicom_sinks)]
            if leftovers:
                yield pools.io(_discard_all, leftovers)
            # On failure, let the parts already handed over finish (committed or removed)
            # before the request ends, so nothing of it is left in flight.
            yield DeferredList(pending, consumeErrors=True)
        return malformed

    def ingest_group(self, group: list[tuple[int, DicomPartSink]],
                     sem: DeferredSemaphore) -> list[Any]:
        """Commit prepared DICOM parts together (one group-commit batch); report each
        part's success or failure. Each part releases a token of ``sem`` when done."""
        out: list[Any] = []
        ready: list[tuple[int, DicomPartSink]] = []
        for order, sink in group:
            self.dicom_sinks.discard(sink)  # the commit owns its file now
            if sink.other_study:
                sop_class, sop_uid, study = sink.uids or ("", "", "")
                self.on_failed(order, sop_class, sop_uid, sm.PROCESSING_FAILURE,
                               f"instance belongs to study {study}, not {self.expected_study}")
                out.append(defer.succeed(None))
            elif sink.error is not None:
                out.append(self.record(order, defer.fail(sink.error), sink.head))
            else:
                ready.append((order, sink))
        commits = self.store.index_prepared_group([sink.prepared for _, sink in ready])
        for (order, sink), commit in zip(ready, commits, strict=True):
            out.append(self.record(order, commit, sink.head))
        for d in out:
            d.addBoth(lambda r: (sem.release(), r)[1])
        return out

    @inlineCallbacks
    def record(self, order: int, pending: Any, head: bytes | None) -> Any:
        """Report the outcome of an ingest (a Deferred of an :class:`IngestResult`)."""
        try:
            result = yield pending
        except IngestError as exc:
            sop_class, sop_uid = "", ""
            if head:
                sop_class, sop_uid, _ = yield self.store.pools.parse(uids_from_head, head)
            self.on_failed(order, sop_class, sop_uid,
                           getattr(exc, "reason", sm.CANNOT_UNDERSTAND), str(exc))
            return
        except StorageFullError as exc:
            self.on_failed(order, "", "", sm.OUT_OF_RESOURCES, str(exc))
            return
        except Exception as exc:
            log.failure("STOW ingest failed")
            self.on_failed(order, "", "", sm.PROCESSING_FAILURE, str(exc))
            return
        self.on_stored(order, result)

    @inlineCallbacks
    def ingest_metadata(self) -> Any:
        """Assemble and ingest every dataset of the metadata parts."""
        pools = self.store.pools
        for order, sink in self.metadata:
            try:
                datasets = yield pools.io(
                    lambda s=sink: sm.metadata_datasets(s.media_type, s.read()))
            except sm.StowError as exc:
                self.on_failed(order, "", "", exc.reason, str(exc))
                continue
            for ds_json in datasets:
                try:
                    path, digest = yield pools.parse(self.assemble, ds_json)
                except sm.StowError as exc:
                    self.on_failed(order, exc.sop_class_uid, exc.sop_instance_uid, exc.reason,
                                   str(exc))
                    continue
                sop_class = sm.first_text(ds_json, "00080016")
                sop_uid = sm.first_text(ds_json, "00080018")
                study = sm.first_text(ds_json, "0020000D")
                expected = self.expected_study
                if expected and study != expected:
                    discard(path)
                    self.on_failed(order, sop_class, sop_uid, sm.PROCESSING_FAILURE,
                                   f"instance belongs to study {study}, not {expected}")
                    continue
                yield self.record(order, self.store.ingest_path(path, digest), None)

    def assemble(self, ds_json: dict[str, Any]) -> tuple[str, tuple[int, str] | None]:
        """Blocking: write the DICOM file of a metadata dataset into a temporary file."""
        path, fp = self.store.new_temp()
        try:
            with fp:
                sm.assemble_instance(ds_json, self.bulk, fp)
        except BaseException:
            discard(path)
            raise
        return path, fp.digest()
