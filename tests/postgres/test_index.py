"""PostgresIndex: the SqlIndex behaviour, checked against the SQLite back-end on the same data."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import warnings
from typing import Any

import psycopg
from psycopg import sql
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.dicom.matching import parse_query
from dwdaemon.store.index import schema
from dwdaemon.store.index.base import InstanceRecord
from dwdaemon.store.index.dialect import P
from dwdaemon.store.index.postgres import PostgresIndex
from dwdaemon.store.index.search import search
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.ingest import analyse, record_fields
from dwdaemon.store.storage import StorageArea
from dwdaemon.store.store import Store
from dwdaemon.tap import SHARED_ORPHAN_MIN_AGE, build_index
from dwdaemon.threads import ThreadPools
from tests.core.test_store import CT, assert_consistent
from tests.postgres.support import dsn, new_schema, open_index, postgres_config
from tests.qido.data import instance
from tests.support import make_config, read, testdata

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtdose.dcm",
         "SC_rgb_rle_2frame.dcm", "liver_1frame.dcm", "reportsi.dcm", "JPEG-lossy.dcm"]


def make_store(directory: str, index: Any, overwrite: bool = False,
               orphan_min_age: float = 0.0) -> Store:
    store = Store(StorageArea(os.path.join(directory, "files")), index, ThreadPools(),
                  overwrite=overwrite, orphan_min_age=orphan_min_age)
    store.open()
    return store


def comparable(row: Any) -> dict[str, Any]:
    out = dataclasses.asdict(row)
    for key in ("file_uuid", "received_at", "last_update"):
        del out[key]
    return out


class PostgresStoreCase(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.dir = self.mktemp()
        self.schema = new_schema(self)
        self.store = self.pg_store()

    def pg_store(self, overwrite: bool = False, orphan_min_age: float = 0.0) -> Store:
        store = make_store(os.path.join(self.dir, "pg"), PostgresIndex(dsn(), self.schema),
                           overwrite=overwrite, orphan_min_age=orphan_min_age)
        self.addCleanup(self._close, store)
        return store

    def _close(self, store: Store) -> None:
        store.pools.stop()
        store.close()


class SameAsSqliteTests(PostgresStoreCase):
    @inlineCallbacks
    def test_same_answers_as_sqlite(self) -> Any:
        lite = make_store(os.path.join(self.dir, "lite"),
                          SqliteIndex(os.path.join(self.dir, "lite", "index")))
        self.addCleanup(self._close, lite)
        for name in FILES:
            data = read(testdata(name))
            for store in (self.store, lite):
                result = yield store.ingest_bytes(data)
                self.assertEqual(result.status, "Success", name)
        pg, sq = self.store.index, lite.index
        self.assertEqual(pg.statistics(), sq.statistics())
        self.assertEqual(pg.statistics()["instances"], len(FILES))
        for level in ("patients", "studies", "series", "instances"):
            ids = sq.list_ids(level)
            self.assertEqual(pg.list_ids(level), ids)
            self.assertEqual(pg.list_ids(level, limit=2, since=1), ids[1:3])
            self.assertEqual(pg.list_ids(level, since=2), ids[2:])
            for public_id in ids:
                want, got = sq.resource(level, public_id), pg.resource(level, public_id)
                for answer in (want, got):
                    answer.pop("LastUpdate", None)
                    answer.pop("FileUuid", None)
                self.assertEqual(got, want)
                self.assertEqual([comparable(r) for r in pg.instances_of(level, public_id)],
                                 [comparable(r) for r in sq.instances_of(level, public_id)])
            self.assertIsNone(pg.resource(level, "nope"))
        for row in sq.instances_of("instances", CT):
            self.assertEqual(comparable(pg.instance_by_uid(row.sop_uid, row.study_uid,
                                                           row.series_uid)), comparable(row))
            self.assertEqual([comparable(r) for r in pg.instances_by_uids(row.study_uid)],
                             [comparable(r) for r in sq.instances_by_uids(row.study_uid)])
            self.assertIsNone(pg.instance_by_uid(row.sop_uid, "1.2.3"))
        self.assertEqual(assert_consistent(self, self.store), len(FILES))

    @inlineCallbacks
    def test_instance_numbers_order_leniently(self) -> Any:
        # SQLite's CAST: leading number, else 0 (PostgreSQL's own CAST would raise).
        numbers = ["10", "9", "", "2", "3"]
        for n, number in enumerate(numbers):
            extra = {"InstanceNumber": number} if number else {}
            yield self.store.ingest_bytes(instance(f"1.2.3.{n}", "1.2.3", "1.2.3.9", **extra))
        rows = self.store.index.instances_by_uids("1.2.3")
        self.assertEqual([r.instance_number for r in rows], [None, "2", "3", "9", "10"])
        first = self.store.index.resource("instances", rows[1].public_id)
        self.assertEqual(first["IndexInSeries"], 1)  # the first numbered one
        d = self.store.index.dialect
        self.assertEqual(self.store.index.fetch_all(
            f"SELECT {d.int_of(P)}, {d.real_of(P)}, {d.int_of(P)}, {d.int_of(P)}",
            (" +12abc", "1.5e3x", "x", "")), [(12, 1500.0, 0, 0)])

    def test_every_statement_is_composed_by_the_dialect(self) -> None:
        # What reaches psycopg is a statement the dialect built with psycopg.sql (and cached),
        # never a text rewritten from another dialect's spelling.
        index = open_index(self, self.schema)
        seen: list[Any] = []

        class Recording(psycopg.Cursor):  # type: ignore[type-arg]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                seen.append(query)
                return super().execute(query, params, **kwargs)

        index.connection().cursor_factory = Recording
        fields = record_fields(analyse(testdata("CT_small.dcm")))
        record = InstanceRecord(file_uuid="f-a", file_size=1, file_md5="m", **fields)
        self.assertEqual(index.add_instance(record, False).status, "Success")
        self.assertEqual(index.add_instance(record, True).status, "Success")
        found = index.search("instances", parse_query([("InstanceNumber", "1")]),
                             base_url="http://h", series_uid=fields["series_uid"])
        self.assertEqual(len(found.datasets), 1)
        self.assertEqual(len(index.instances_of("studies", fields["ids"].study)), 1)
        self.assertEqual(index.list_ids("studies", since=1), [])
        index.save_job(("j", "T", "Pending", 0, None, "{}", "{}", "c", None, 1, "o"))
        index.forget_old_jobs(0)
        index.put_server("s", "{}")
        self.assertEqual(index.delete("patients", fields["ids"].patient), ["f-a"])
        self.assertGreater(len(seen), 20)
        built = {id(q) for q in index.dialect.built.values()}
        self.assertEqual([q for q in seen if id(q) not in built or not isinstance(q, sql.SQL)],
                         [])
        texts = [q.as_string(index.connection()) for q in seen]
        self.assertEqual([t for t in texts if "?" in t or "CAST(" in t], [])
        self.assertTrue(any("dw_int(i.instance_number) NULLS FIRST" in t for t in texts))

class WriteTests(PostgresStoreCase):
    @inlineCallbacks
    def test_already_stored_and_concurrent_uploads(self) -> Any:
        data = read(testdata("CT_small.dcm"))
        first = yield self.store.ingest_bytes(data)
        self.assertEqual(first.status, "Success")
        again = yield gatherResults([self.store.ingest_bytes(data) for _ in range(6)])
        self.assertEqual({r.status for r in again}, {"AlreadyStored"})
        self.assertEqual(assert_consistent(self, self.store), 1)

    @inlineCallbacks
    def test_overwrite_replaces_the_file(self) -> Any:
        store = self.pg_store(overwrite=True)
        data = read(testdata("CT_small.dcm"))
        yield store.ingest_bytes(data)
        changed = data.replace(b"CompressedSamples^CT1", b"CompressedSamples^CT2")
        result = yield store.ingest_bytes(changed)
        self.assertEqual((result.status, result.overwritten), ("Success", True))
        row = yield store.instance(CT)
        self.assertEqual(read(store.file_path(row.file_uuid)), changed)
        self.assertIn("CompressedSamples^CT2", row.metadata)
        self.assertEqual(assert_consistent(self, store), 1)

    @inlineCallbacks
    def test_delete_removes_rows_files_and_empty_parents(self) -> Any:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            yield self.store.ingest_bytes(read(testdata(name)))
        row = yield self.store.instance(CT)
        deleted = yield self.store.delete("patients", row.patient_id)
        self.assertTrue(deleted)
        stats = yield self.store.statistics()
        self.assertEqual((stats["patients"], stats["studies"], stats["instances"]), (1, 1, 1))
        self.assertEqual(assert_consistent(self, self.store), 1)
        missing = yield self.store.delete("studies", row.study_id)
        self.assertFalse(missing)
        other = self.store.index.list_ids("instances")[0]
        yield self.store.delete("instances", other)
        self.assertEqual(self.store.index.statistics(),
                         {"patients": 0, "studies": 0, "series": 0, "instances": 0, "size": 0})

    @inlineCallbacks
    def test_nul_in_text_values(self) -> Any:
        # PostgreSQL text cannot hold NUL: stored and searched as U+FFFF, alike on both sides.
        result = yield self.store.ingest_bytes(
            instance("1.2.4.1", "1.2.4", "1.2.4.9", PatientID="P\x00Q", AccessionNumber="A"))
        self.assertEqual(result.status, "Success")
        for value, count in (("P\x00Q", 1), ("P\x00*", 1), ("\x00", 0), ("PQ", 0)):
            found = search(self.store.index, "studies", parse_query([("PatientID", value)]),
                           base_url="http://h")
            self.assertEqual(len(found.datasets), count, repr(value))

    def test_lost_race_is_retried(self) -> None:
        # Daemon "a" has indexed an instance (patient, study, series...) but not committed yet;
        # daemon "b" indexes the same one: it waits on the unique keys, fails once a commits,
        # and its retry sees a's rows: AlreadyStored, nothing duplicated.
        a, b = open_index(self, self.schema), open_index(self, self.schema)
        fields = record_fields(analyse(testdata("CT_small.dcm")))
        record = InstanceRecord(file_uuid="f-a", file_size=1, file_md5="m", **fields)
        other = dataclasses.replace(record, file_uuid="f-b")
        results: list[Any] = []
        conn = a.connection()
        with conn.transaction():
            self.assertEqual(a.add_instance(record, False).status, "Success")
            thread = threading.Thread(target=lambda: results.append(b.add_instance(other, False)))
            thread.start()
            time.sleep(0.3)
            self.assertEqual(results, [])  # b is waiting for a
        thread.join(10)
        self.assertEqual([(r.status, r.obsolete_file) for r in results],
                         [("AlreadyStored", "f-b")])
        self.assertEqual(b.races_lost, 1)
        self.assertEqual(b.statistics(), {"patients": 1, "studies": 1, "series": 1,
                                          "instances": 1, "size": 1})

    def test_properties(self) -> None:
        index = self.store.index
        self.assertEqual(index.get_property("schema_version"), str(schema.SCHEMA_VERSION))
        self.assertIsNone(index.get_property("x"))
        index.set_property("x", "1")
        index.set_property("x", "2")
        self.assertEqual(index.get_property("x"), "2")
        index.set_property("x", None)
        self.assertIsNone(index.get_property("x"))

    def test_open_twice_and_reconnect(self) -> None:
        index = open_index(self, self.schema)
        index.open()
        self.assertEqual(index.statistics()["instances"], 0)
        index.connection().close()  # a lost connection is replaced
        self.assertEqual(index.statistics()["instances"], 0)
        index.set_property("y", "1")
        self.assertEqual(self.store.index.get_property("y"), "1")


class StartupTests(PostgresStoreCase):
    def test_build_index_picks_postgresql(self) -> None:
        config = make_config(self.mktemp())
        index, age = build_index(config)
        self.assertEqual((index.backend_name, age), ("SQLite", 0.0))
        index, age = build_index(dataclasses.replace(config,
                                                     postgresql=postgres_config(self.schema)))
        self.assertIsInstance(index, PostgresIndex)
        self.assertEqual(age, SHARED_ORPHAN_MIN_AGE)

    @inlineCallbacks
    def test_shared_start_up_keeps_young_files(self) -> Any:
        # Files another daemon is writing (a temporary file; a file renamed into place whose
        # index row is not committed yet) survive a start-up; old leftovers do not.
        yield self.store.ingest_bytes(read(testdata("CT_small.dcm")))
        area = self.store.storage
        young_tmp, fp = area.new_temp()
        fp.close()
        old_tmp, fp = area.new_temp()
        fp.close()
        young_file = area.write(b"young")[0]
        old_file = area.write(b"old")[0]
        past = time.time() - 2 * SHARED_ORPHAN_MIN_AGE
        for path in (old_tmp, area.path(old_file)):
            os.utime(path, (past, past))
        second = self.pg_store(orphan_min_age=SHARED_ORPHAN_MIN_AGE)
        self.assertTrue(os.path.exists(young_tmp))
        self.assertFalse(os.path.exists(old_tmp))
        self.assertTrue(area.exists(young_file))
        self.assertFalse(area.exists(old_file))
        self.assertEqual(second.index.statistics()["instances"], 1)
