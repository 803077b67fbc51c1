"""The store: ingest pipeline, storage area and index behind Deferred-returning methods."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import IO, Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure

from dwdaemon.dicom.ids import ResourceIds
from dwdaemon.dicom.part10 import add_file_meta
from dwdaemon.store.index.base import (
    AddResult,
    DuplicateInstanceError,
    Index,
    InstanceRecord,
    InstanceRow,
)
from dwdaemon.store.ingest import (
    REASON_DUPLICATE_SOP_INSTANCE,
    Analysis,
    IngestError,
    analyse,
    record_fields,
)
from dwdaemon.store.ingest_stream import FailedCallback, IngestStream, StoredCallback
from dwdaemon.store.storage import StorageArea, TempFile, discard, is_temp_name
from dwdaemon.threads import ThreadPools

log = Logger()

#: Most instances indexed in one group-commit transaction.
GROUP_COMMIT_MAX = 64


@dataclass
class Prepared:
    """A parsed, validated temporary file and its index record, waiting for its commit."""

    analysis: Analysis
    record: InstanceRecord
    temp_path: str
    #: The temporary file is on the disk already (its writer synced it), or the Future of
    #: its sync in the background (waited for before the rename).
    synced: bool | Future[None] = False


@dataclass
class IngestResult:
    """The outcome of storing one instance."""

    status: str  # "Success" or "AlreadyStored"
    ids: ResourceIds
    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    overwritten: bool = False
    warnings: list[str] = field(default_factory=list)

    def orthanc_json(self) -> dict[str, Any]:
        """The answer of Orthanc's ``POST /instances``."""
        return {
            "ID": self.ids.instance,
            "ParentPatient": self.ids.patient,
            "ParentStudy": self.ids.study,
            "ParentSeries": self.ids.series,
            "Path": f"/instances/{self.ids.instance}",
            "Status": self.status,
        }


class Store:
    """Storage area + index, with blocking work in the thread pools."""

    def __init__(self, storage: StorageArea, index: Index, pools: ThreadPools,
                 overwrite: bool = False, orphan_min_age: float = 0.0,
                 default_encoding: str = "Latin1") -> None:
        self.storage = storage
        self.index = index
        self.pools = pools
        self.overwrite = overwrite
        self.orphan_min_age = orphan_min_age
        #: Orthanc's ``DefaultEncoding`` (canonical name), changed by PUT /tools/default-encoding.
        self.default_encoding = default_encoding
        self._pending: list[tuple[Prepared, Deferred[AddResult]]] = []
        self._flushing = False
        #: Set while :meth:`index_prepared_group` queues a group (its batch starts after).
        self._grouping = False
        #: Called with ``(IngestResult, file size)`` for each instance ingested (metrics).
        self.listeners: list[Any] = []

    # -- life cycle --------------------------------------------------------------------------
    def open(self) -> dict[str, int]:
        """Blocking start-up: open the area and index, then make them agree.

        Interrupted writes are removed, and so are files the index does not know (a crash between
        the rename and the index commit, or during a delete). Index rows whose file is gone are
        removed too (the file system lost them). Returns what was cleaned.
        """
        self.storage.open_area()
        self.index.open()
        temps = self._clean_temp()
        known = self.index.file_uuids()
        removed = self.storage.remove_orphans(known, self.orphan_min_age)
        orphans = [name for name in removed if not is_temp_name(name)]
        temps += len(removed) - len(orphans)
        missing = 0
        for row_file in known:
            if not self.storage.exists(row_file):
                missing += self._drop_rows_of_file(row_file)
        if temps or orphans or missing:
            log.warn("store recovery: removed {temps} temporary files, {orphans} orphan files, "
                     "{missing} index rows without file", temps=temps, orphans=len(orphans),
                     missing=missing)
        return {"temporary": temps, "orphans": len(orphans), "missing": missing}

    def _clean_temp(self) -> int:
        """Remove interrupted writes; with ``orphan_min_age`` (a storage area shared by several
        daemons) only those older than it, the others may be uploads in progress."""
        if not self.orphan_min_age:
            return self.storage.clean_temp()
        count = 0
        limit = time.time() - self.orphan_min_age
        with os.scandir(self.storage.tmp) as entries:
            for entry in entries:
                try:
                    old = entry.stat().st_mtime < limit
                except FileNotFoundError:
                    continue  # finished meanwhile
                if old:
                    discard(entry.path)
                    count += 1
        return count

    def _drop_rows_of_file(self, file_uuid: str) -> int:
        ids = self.index.instance_ids_with_file(file_uuid)
        for public_id in ids:
            self.index.delete("instances", public_id)
        return len(ids)

    def close(self) -> None:
        self.index.close()

    # -- ingest ------------------------------------------------------------------------------
    def new_temp(self, file_uuid: str | None = None) -> tuple[str, TempFile]:
        """A temporary file in the storage area for a caller to fill, then :meth:`ingest_path`
        (``file_uuid``: the stored file's name, see :func:`new_file_uuid`)."""
        return self.storage.new_temp(file_uuid)

    def ingest_stream(self, body: IO[bytes], boundary: str, body_type: str,
                      expected_study: str | None, on_stored: StoredCallback,
                      on_failed: FailedCallback) -> IngestStream:
        """The ingest of a multipart/related body (STOW-RS); see
        :class:`~dwdaemon.store.ingest_stream.IngestStream` (start it with ``run()``)."""
        return IngestStream(self, body, boundary, body_type, expected_study, on_stored,
                            on_failed)

    @inlineCallbacks
    def ingest_path(self, temp_path: str, digest: tuple[int, str] | None = None,
                    uids_from_meta: bool = False) -> Any:
        """Store the DICOM file at ``temp_path`` (taken over: moved or removed).

        The file is parsed once and validated in a worker thread (:meth:`prepare`), then
        fsynced, renamed into the storage area and indexed with group commit
        (:meth:`index_prepared`). ``digest`` is the ``(size, md5)`` of a :class:`TempFile`
        (saves reading the file back). Fires with an :class:`IngestResult`; fails with
        :class:`IngestError` (nothing kept) for bad input. ``uids_from_meta``: see
        :func:`~dwdaemon.store.ingest.analyse` (Orthanc's ``POST /instances``).
        """
        prepared = yield self.pools.parse(self.prepare, temp_path, digest, uids_from_meta)
        result = yield self.index_prepared(prepared)
        return result

    def prepare(self, temp_path: str, digest: tuple[int, str] | None = None,
                uids_from_meta: bool = False, synced: bool | Future[None] = False
                ) -> Prepared:
        """Blocking (worker thread): parse and validate a temporary file, build its index
        record (JSON encoding included, kept off the reactor thread).

        Callers already in a worker thread (STOW-RS parses its parts in one) use this directly,
        then :meth:`index_prepared` on the reactor. The file stays a temporary file until its
        batch is committed; on failure it is removed.
        """
        if not self.storage.is_temp(temp_path):
            own = self.storage.temp_path()
            shutil.copyfile(temp_path, own)
            temp_path, digest = own, None
        try:
            if add_file_meta(temp_path):  # a raw data set, as Orthanc stores them
                digest, synced = None, False
            analysis = analyse(temp_path, self.default_encoding, uids_from_meta)
            size, md5 = self.storage.measure_temp(temp_path, digest)
            file_uuid = self.storage.temp_uuid(temp_path) or self.storage.new_file_uuid()
            record = InstanceRecord(file_uuid=file_uuid, file_size=size, file_md5=md5,
                                    **record_fields(analysis))
        except BaseException:
            discard(temp_path)
            raise
        return Prepared(analysis, record, temp_path, synced)

    @inlineCallbacks
    def index_prepared(self, prepared: Prepared) -> Any:
        """Commit a :meth:`prepare`-d file: fsync, rename and index it with the other files
        of its group-commit batch. Fires with an :class:`IngestResult`."""
        analysis = prepared.analysis
        try:
            added: AddResult = yield self._add_grouped(prepared)
        except DuplicateInstanceError as exc:
            yield self.pools.io(self._drop, prepared)
            raise IngestError(str(exc), REASON_DUPLICATE_SOP_INSTANCE, http_status=409) from exc
        except Exception:
            yield self.pools.io(self._drop, prepared)
            raise
        if added.obsolete_file:
            yield self.pools.io(self.storage.remove, added.obsolete_file)
        result = IngestResult(
            status=added.status, ids=analysis.ids, sop_class_uid=analysis.sop_class_uid,
            sop_uid=analysis.sop_uid, study_uid=analysis.study_uid,
            series_uid=analysis.series_uid, transfer_syntax=analysis.transfer_syntax,
            overwritten=added.overwritten, warnings=analysis.warnings)
        for listener in self.listeners:
            listener(result, prepared.record.file_size)
        return result

    def index_prepared_group(self, group: list[Prepared]) -> list[Deferred[IngestResult]]:
        """:meth:`index_prepared` for several files at once: they join one group-commit
        batch (one index transaction, one index sync) unless a batch is being written, then
        they all wait for the next one. One Deferred per file, in order."""
        self._grouping = True
        try:
            out = [self.index_prepared(prepared) for prepared in group]
        finally:
            self._grouping = False
        if self._pending and not self._flushing:
            self._flush_pending()
        return out

    def _drop(self, prepared: Prepared) -> None:
        """Remove what a failed commit left: the temporary or the renamed file."""
        discard(prepared.temp_path)
        self.storage.remove(prepared.record.file_uuid)

    def _add_grouped(self, prepared: Prepared) -> Deferred[AddResult]:
        """Commit ``prepared`` with group commit.

        Files arriving while a batch is being written wait for the next batch; a batch fsyncs
        and renames its files, syncs their directories, and then indexes every record in one
        transaction (one sync of the index instead of one per instance). Each file still
        succeeds or fails alone.
        """
        d: Deferred[AddResult] = Deferred()
        self._pending.append((prepared, d))
        if not self._flushing and not self._grouping:
            self._flush_pending()
        return d

    @inlineCallbacks
    def _flush_pending(self) -> Any:
        self._flushing = True
        try:
            while self._pending:
                batch = self._pending[:GROUP_COMMIT_MAX]
                del self._pending[:GROUP_COMMIT_MAX]
                try:
                    results = yield self.pools.db_write(self._add_batch,
                                                        [p for p, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, d), result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        d.errback(Failure(result))
                    else:
                        d.callback(result)
        finally:
            self._flushing = False

    def _add_batch(self, batch: list[Prepared]) -> list[AddResult | Exception]:
        """Fsync and rename the batch's files, sync their directories, then index them in
        one transaction. A file that cannot be synced or renamed fails alone (not indexed)."""
        results: list[AddResult | Exception | None] = [None] * len(batch)
        installed: list[int] = []
        directories = set()
        for i, prepared in enumerate(batch):
            try:
                directories.add(self.storage.install_temp(
                    prepared.temp_path, prepared.record.file_uuid, prepared.synced))
            except OSError as exc:
                results[i] = exc
            else:
                installed.append(i)
        for directory in directories:
            self.storage.sync_dir(directory)
        one_transaction = self.index.batch() if len(installed) > 1 else nullcontext()
        with one_transaction:
            for i in installed:
                results[i] = self._add_one(batch[i].record)
        return results  # type: ignore[return-value]

    def _add_one(self, record: InstanceRecord) -> AddResult | Exception:
        try:
            return self.index.add_instance(record, self.overwrite)
        except Exception as exc:
            return exc

    def ingest_bytes(self, data: bytes, uids_from_meta: bool = False) -> Deferred[IngestResult]:
        """Store a DICOM file given in memory (small bodies); ``uids_from_meta`` as in
        :meth:`ingest_path`."""
        d = self.pools.io(self._write_temp, data)
        d.addCallback(lambda written: self.ingest_path(*written, uids_from_meta=uids_from_meta))
        return d

    def _write_temp(self, data: bytes) -> tuple[str, tuple[int, str] | None]:
        path, fp = self.storage.new_temp()
        with fp:
            fp.write(data)
        return path, fp.digest()

    # -- reads -------------------------------------------------------------------------------
    def resource(self, level: str, public_id: str) -> Deferred[dict[str, Any] | None]:
        return self.pools.db_read(self.index.resource, level, public_id)

    def list_ids(self, level: str, limit: int = 0, since: int = 0) -> Deferred[list[str]]:
        return self.pools.db_read(self.index.list_ids, level, limit, since)

    def instance(self, public_id: str) -> Deferred[InstanceRow | None]:
        return self.pools.db_read(self.index.instance, public_id)

    def instance_by_uid(self, sop_uid: str, study_uid: str | None = None,
                        series_uid: str | None = None) -> Deferred[InstanceRow | None]:
        return self.pools.db_read(self.index.instance_by_uid, sop_uid, study_uid, series_uid)

    def instances_by_uids(self, study_uid: str, series_uid: str | None = None
                          ) -> Deferred[list[InstanceRow]]:
        return self.pools.db_read(self.index.instances_by_uids, study_uid, series_uid)

    def instances_of(self, level: str, public_id: str) -> Deferred[list[InstanceRow]]:
        return self.pools.db_read(self.index.instances_of, level, public_id)

    def find_ids(self, level: str, predicate: Callable[[dict[str, str]], bool],
                 since: int = 0, limit: int = 0,
                 dataset_predicate: Callable[[dict[str, Any]], bool] | None = None,
                 exact: dict[str, str] | None = None) -> Deferred[list[str]]:
        """Identifiers of the resources of ``level`` whose main tags (their ancestors' merged
        in) satisfy ``predicate`` and, with ``dataset_predicate``, whose first instance's
        DICOM JSON satisfies it; in arrival order, after skipping ``since`` matches and at
        most ``limit`` of them (0 = all). ``exact`` identifiers narrow the candidates by index
        columns (the predicates still decide). Matching runs in the database thread."""
        def wanted(public_id: str, tags: dict[str, str]) -> bool:
            if not predicate(tags):
                return False
            if dataset_predicate is None:
                return True
            metadata = self.index.first_instance_metadata(level, public_id)
            return metadata is not None and dataset_predicate(json.loads(metadata))

        def find() -> list[str]:
            found = []
            for public_id, tags in self.index.main_tags_of_level(level, exact):
                if wanted(public_id, tags):
                    found.append(public_id)
                    if limit and len(found) >= since + limit:
                        break
            return found[since:]
        return self.pools.db_read(find)

    def lookup(self, identifier: str) -> Deferred[list[dict[str, str]]]:
        return self.pools.db_read(self.index.lookup, identifier)

    def changes(self, since: int = 0, limit: int = 100, last: bool = False
                ) -> Deferred[dict[str, Any]]:
        return self.pools.db_read(self.index.changes, since, limit, last)

    def clear_changes(self) -> Deferred[None]:
        return self.pools.db_write(self.index.clear_changes)

    def statistics(self) -> Deferred[dict[str, int]]:
        return self.pools.db_read(self.index.statistics)

    def file_path(self, file_uuid: str) -> str:
        """Where a stored file is (open it in a thread)."""
        return self.storage.path(file_uuid)

    # -- deletes -----------------------------------------------------------------------------
    @inlineCallbacks
    def delete(self, level: str, public_id: str) -> Any:
        """Delete a resource and everything below: index rows first, then files.

        Fires with True, or False if there is no such resource.
        """
        files = yield self.pools.db_write(self.index.delete, level, public_id)
        if files is None:
            return False
        yield self.pools.io(lambda: [self.storage.remove(f) for f in files])
        return True


__all__ = ["IngestError", "IngestResult", "Store"]
