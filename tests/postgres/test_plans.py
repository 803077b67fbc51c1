"""PostgreSQL plans that do not depend on a connection's history, and paging (issue 16)."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.matching import parse_query
from dwdaemon.store.index.base import InstanceRecord
from dwdaemon.store.index.postgres import SESSION_SETTINGS, PostgresIndex
from dwdaemon.store.index.search import build_sql
from dwdaemon.store.index.sql import SqlIndex
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.ingest import analyse, record_fields
from tests.postgres.support import new_schema, open_index
from tests.qido.data import instance

BASE = "http://localhost/dicom-web"
STUDIES = 4000


def fill_studies(index: PostgresIndex, count: int) -> None:
    """``count`` studies, nearly all of patient SMITH, a few of JONES (bulk SQL, analysed)."""
    conn = index.connection()
    conn.execute("INSERT INTO patients (public_id, patient_id, main_tags, last_update)"
                 " VALUES ('p', 'P', '{}', '')")
    conn.execute(
        "INSERT INTO studies (public_id, patient_pk, study_uid, patient_id, patient_name,"
        " patient_name_ci, main_tags, patient_main_tags, last_update)"
        " SELECT 's' || n, (SELECT pk FROM patients), '1.2.' || n, 'P', name, lower(name),"
        " '{}', '{}', '' FROM (SELECT n, CASE WHEN n %% 1000 = 0 THEN 'JONES^A'"
        " ELSE 'SMITH^' || n END AS name FROM generate_series(1, %s) n) t", (count,))
    conn.execute("ANALYZE")


class PlanStabilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.schema = new_schema(self)

    def selective_plan_after_broad_runs(self, index: PostgresIndex) -> str:
        """Search ``SMITH*`` 10 times on one connection (psycopg prepares the statement
        server-side after 5), then ``EXPLAIN EXECUTE`` that prepared statement for ``DOE*``."""
        fill_studies(index, STUDIES)
        broad = parse_query([("PatientName", "SMITH*"), ("limit", "50")])
        for _ in range(10):  # (no stored JSON here: the names are not confirmed, no answers)
            index.search("studies", broad, base_url=BASE)
        conn = index.connection()
        rows = conn.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE"
                            " 'SELECT st.pk, st.study_uid, %%patient_name_ci LIKE $1%%'"
                            ).fetchall()
        self.assertEqual(len(rows), 1, "the search statement was not prepared server-side")
        selective = parse_query([("PatientName", "DOE*"), ("limit", "50")])
        # the first chunk of candidates of a search confirmed in Python (as search runs it)
        _, params, _, _ = build_sql("studies", selective, limit=50, dialect=index.dialect,
                                    fragment=True, after=0, chunk=51)
        literals = ", ".join(conn.execute("SELECT quote_nullable(%s::text)", (p,)).fetchone()[0]
                             for p in params)
        lines = conn.execute(f'EXPLAIN EXECUTE "{rows[0][0]}"({literals})').fetchall()
        return "\n".join(line[0] for line in lines)

    def test_selective_search_uses_the_name_index_after_broad_ones(self) -> None:
        index = open_index(self, self.schema)
        self.assertEqual(index.connection().execute("SHOW plan_cache_mode").fetchone()[0],
                         "force_custom_plan")
        plan = self.selective_plan_after_broad_runs(index)
        self.assertIn("studies_patient_name_ci", plan)
        self.assertNotIn("Seq Scan on studies", plan)

    def test_without_the_setting_the_plan_can_turn_generic(self) -> None:
        """The failure the setting prevents (PostgreSQL 15 defaults: ``auto``)."""
        saved = dict(SESSION_SETTINGS)
        SESSION_SETTINGS.clear()
        self.addCleanup(SESSION_SETTINGS.update, saved)
        index = open_index(self, self.schema)
        self.assertEqual(index.connection().execute("SHOW plan_cache_mode").fetchone()[0],
                         "auto")
        plan = self.selective_plan_after_broad_runs(index)
        self.assertNotIn("studies_patient_name_ci", plan)


def add(index: SqlIndex, directory: str, data: bytes) -> None:
    """Index one generated instance (the real ingest analysis)."""
    path = os.path.join(directory, uuid.uuid4().hex)
    with open(path, "wb") as f:
        f.write(data)
    index.add_instance(InstanceRecord(
        file_uuid=uuid.uuid4().hex, file_size=len(data), file_md5=hashlib.md5(data).hexdigest(),
        **record_fields(analyse(path))), False)


class PagingTests(SynchronousTestCase):
    """A page (``limit``/``offset`` pushed into SQL, page first) is the same slice of the answers
    as without paging, on both back ends."""

    def fill(self, index: SqlIndex) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        for st in range(7):
            for se in range(1, 3):
                for n in range(1, 4 - se):
                    study = f"1.2.826.0.1.3680043.8.498.60.{st}"
                    add(index, directory, instance(
                        f"{study}.{se}.{n}", study, f"{study}.{se}", PatientName=f"P{st % 3}^X",
                        Modality=["CT", "MR"][(st + se) % 2], InstanceNumber=4 - n,
                        StudyDate=f"2020010{1 + st % 3}"))

    def check(self, index: SqlIndex) -> None:
        self.fill(index)
        cases: list[tuple[str, list[tuple[str, str]], dict[str, Any]]] = [
            ("studies", [], {}),
            ("studies", [("ModalitiesInStudy", "CT")], {}),
            ("studies", [("StudyDate", "20200102-")], {}),
            ("series", [("Modality", "MR")], {}),
            ("instances", [], {}),
            ("instances", [], {"study_uid": "1.2.826.0.1.3680043.8.498.60.3",
                               "series_uid": "1.2.826.0.1.3680043.8.498.60.3.1"}),
            ("instances", [], {"study_uid": "1.2.826.0.1.3680043.8.498.60.3"}),
        ]
        for level, pairs, kwargs in cases:
            full = index.search(level, parse_query(pairs), base_url=BASE, **kwargs).datasets
            self.assertTrue(full, (level, pairs))
            for offset in range(len(full) + 1):
                for limit in (None, 1, 2, 5):
                    extra = [("offset", str(offset))]
                    if limit is not None:
                        extra.append(("limit", str(limit)))
                    page = index.search(level, parse_query(pairs + extra), base_url=BASE,
                                        **kwargs).datasets
                    stop = None if limit is None else offset + limit
                    self.assertEqual(page, full[offset:stop], (level, pairs, offset, limit))

    def test_sqlite(self) -> None:
        index = SqliteIndex(self.mktemp())
        index.open()
        self.addCleanup(index.close)
        self.check(index)

    def test_postgresql(self) -> None:
        self.check(open_index(self, new_schema(self)))
