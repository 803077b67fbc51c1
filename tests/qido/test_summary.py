"""The per-study summary (counts, modalities, SOP classes, answer fragment) kept in the studies
row: searches answer the same with it as when computing everything from the instances, through
adds, deletes, overwrites, re-ingest and the migration of a version-1 index."""

from __future__ import annotations

import os
import warnings
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.dicom.matching import parse_query
from dwdaemon.store.index import schema, search, study_summary
from dwdaemon.store.index.postgres import PostgresIndex
from dwdaemon.store.index.sql import NewerSchemaError
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.storage import StorageArea
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from tests.postgres.support import dsn, new_schema
from tests.qido.data import MR_IMAGE, SERIES_A1, STUDY_A, corpus, instance

QUERIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("studies", []),
    ("studies", [("includefield", "all")]),
    ("studies", [("includefield", "00080060"), ("includefield", "00180050")]),
    ("studies", [("ModalitiesInStudy", "MR")]),
    ("studies", [("ModalitiesInStudy", "CT"), ("includefield", "SOPClassesInStudy")]),
    ("studies", [("PatientName", "*")]),
    ("studies", [("PatientName", "m*"), ("fuzzymatching", "true")]),
    ("studies", [("NumberOfStudyRelatedInstances", "3")]),
    ("studies", [("PatientComments", "note x")]),
    ("studies", [("limit", "1"), ("offset", "1")]),
    ("studies", [("includefield", "00080018"), ("includefield", "0020000E")]),
    ("series", []),
    ("series", [("includefield", "all")]),
    ("instances", [("limit", "5")]),
]
BASE = "http://h/dicom-web"


class SummaryMixin:
    """Tests run on each back end (``make_index``)."""

    def make_index(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.dir = self.mktemp()
        self.store = self.open_store()

    def open_store(self) -> Store:
        store = Store(StorageArea(os.path.join(self.dir, "files")), self.make_index(),
                      ThreadPools(), overwrite=True)
        store.open()

        def close() -> None:
            store.pools.stop()
            store.close()

        self.addCleanup(close)
        return store

    def answers(self) -> list[Any]:
        out = []
        for level, pairs in QUERIES:
            result = search.search(self.store.index, level, parse_query(pairs), base_url=BASE,
                                   max_results=1000)
            out.append((level, pairs, result.datasets, result.next_offset))
        return out

    def assertSameAnswers(self) -> list[Any]:
        """Answers with the summary equal answers computed from the instances."""
        summarised = self.answers()
        self.patch(search, "USE_SUMMARY", False)
        computed = self.answers()
        self.patch(search, "USE_SUMMARY", True)
        for got, want in zip(summarised, computed, strict=True):
            self.assertEqual(got, want, f"{got[0]} {got[1]}")
        return summarised

    def stored(self) -> list[tuple[Any, ...]]:
        return self.store.index.fetch_all(
            "SELECT pk, series_count, instance_count, modalities, sop_classes, answer_json"
            " FROM studies ORDER BY pk")

    def assertSummaryFresh(self) -> None:
        """The incrementally kept summary equals one recomputed from scratch."""
        before = self.stored()
        with self.store.index.transaction() as cur:
            study_summary.refresh(self.store.index, cur, [row[0] for row in before])
        self.assertEqual(self.stored(), before)

    @inlineCallbacks
    def test_same_answers_through_writes(self) -> Any:
        for data in corpus():
            result = yield self.store.ingest_bytes(data)
            self.assertEqual(result.status, "Success")
        first = self.assertSameAnswers()
        self.assertSummaryFresh()
        counts = {row[1]: row[2:5] for row in self.store.index.fetch_all(
            "SELECT pk, study_uid, series_count, instance_count, modalities FROM studies")}
        self.assertEqual(counts[STUDY_A], (2, 4, "MR\\SR"))
        self.assertEqual(len(first[0][2]), 3)
        # delete an instance, then a whole series, of study A
        row = self.store.index.instance_by_uid(f"{SERIES_A1}.1")
        self.store.index.delete("instances", row.public_id)
        self.assertSameAnswers()
        self.assertSummaryFresh()
        self.store.index.delete("series", row.series_id)
        self.assertSameAnswers()
        self.assertSummaryFresh()
        self.assertNotEqual(self.answers(), first)
        # re-ingest everything: the same studies (their series in another order)
        for data in corpus():
            yield self.store.ingest_bytes(data)
        again = self.assertSameAnswers()
        self.assertEqual([len(a[2]) for a in again], [len(a[2]) for a in first])
        self.assertSummaryFresh()
        # an overwrite with another SOP class and a new series of another modality
        yield self.store.ingest_bytes(instance(f"{SERIES_A1}.2", STUDY_A, SERIES_A1,
                                               Modality="MR", PatientName="Other^Name",
                                               PatientID="PID1"))
        yield self.store.ingest_bytes(instance(f"{STUDY_A}.9.1", STUDY_A, f"{STUDY_A}.9",
                                               sop_class=MR_IMAGE, Modality="PR",
                                               PatientName="Müller^José", PatientID="PID1"))
        self.assertSameAnswers()
        self.assertSummaryFresh()
        # a study deleted whole, and one left without its first instance
        self.store.index.delete("studies", self.store.index.lookup(STUDY_A)[0]["ID"])
        self.assertSameAnswers()
        self.assertSummaryFresh()

    @inlineCallbacks
    def test_version_1_index_is_migrated(self) -> Any:
        for data in corpus():
            yield self.store.ingest_bytes(data)
        want = self.answers()
        index = self.store.index
        with index.transaction() as cur:
            for name, _kind in schema.ADDED_COLUMNS["studies"]:
                cur.execute(f"ALTER TABLE studies DROP COLUMN {name}")
            index.execute(cur, "UPDATE properties SET value = '1'"
                               " WHERE name = 'schema_version'")
        index.close()
        self.store = self.open_store()
        self.assertEqual(self.store.index.get_property("schema_version"),
                         str(schema.SCHEMA_VERSION))
        self.assertNotIn(None, [row[1] for row in self.stored()])
        self.assertEqual(self.assertSameAnswers(), want)
        self.assertSummaryFresh()

    def test_index_of_a_newer_version_is_refused(self) -> None:
        """An index written by a newer dwdaemon is not opened (nor changed) by this one."""
        index = self.store.index
        newer = str(schema.SCHEMA_VERSION + 1)
        with index.transaction() as cur:
            index.execute(cur, "UPDATE properties SET value = '" + newer + "'"
                               " WHERE name = 'schema_version'")
        index.close()
        again = self.make_index()
        with self.assertRaises(NewerSchemaError) as caught:
            again.open()
        again.close()
        self.assertIn(f"schema version {newer}", str(caught.exception))
        reopened = self.make_index()
        self.addCleanup(reopened.close)
        with reopened.transaction() as cur:
            reopened.execute(cur, "SELECT value FROM properties WHERE name = 'schema_version'")
            self.assertEqual(cur.fetchone()[0], newer)  # left as it was


    @inlineCallbacks
    def test_candidates_read_by_chunks(self) -> Any:
        """A search confirmed in Python (PatientName case-sensitive: the folded pre-filter
        also lets ``smith`` through) pages as the whole answer does, across chunks."""
        for n in range(12):
            name = ("SMITH^A" if n % 3 == 0 else "smith^b") + str(n)
            yield self.store.ingest_bytes(instance(f"1.2.9.{n}.1.1", f"1.2.9.{n}",
                                                   f"1.2.9.{n}.1", PatientName=name,
                                                   Modality="CT"))
        for level in ("studies", "series"):
            whole = search.search(self.store.index, level,
                                  parse_query([("PatientName", "SMITH*")]), base_url=BASE)
            self.assertEqual(len(whole.datasets), 4)
            for offset in range(6):
                page = search.search(self.store.index, level, parse_query(
                    [("PatientName", "SMITH*"), ("limit", "1"), ("offset", str(offset))]),
                    base_url=BASE)
                self.assertEqual(page.datasets, whole.datasets[offset:offset + 1])
                self.assertEqual(page.truncated, offset < 3)


class SqliteSummaryTests(SummaryMixin, TestCase):
    def make_index(self) -> Any:
        return SqliteIndex(os.path.join(self.dir, "index"))


class PostgresSummaryTests(SummaryMixin, TestCase):
    def make_index(self) -> Any:
        if not hasattr(self, "schema"):
            self.schema = new_schema(self)
        return PostgresIndex(dsn(), self.schema)
