"""SQL generation of QIDO-RS searches: what goes to SQL, and that it uses the indexes."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.matching import parse_query
from dwdaemon.store.index.search import build_sql, explain, glob_escape, like_word, plan
from dwdaemon.store.index.sqlite import SqliteIndex


class PlanTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.index = SqliteIndex(self.mktemp())
        self.index.open()
        self.addCleanup(self.index.close)

    def plan_of(self, level: str, pairs: list[tuple[str, str]], **kwargs: Any) -> list[str]:
        query = parse_query(pairs)
        return explain(self.index, level, query, limit=query.limit, **kwargs)

    def assertIndexed(self, lines: list[str]) -> None:
        scans = [line for line in lines if line.startswith("SCAN")]
        self.assertEqual(scans, [], "\n".join(lines))

    def test_issue_queries_use_indexes(self) -> None:
        self.assertIndexed(self.plan_of("studies", [("PatientName", "SMITH^J*")]))
        self.assertIndexed(self.plan_of("studies", [("StudyDate", "20200101-20200131")]))
        self.assertIndexed(self.plan_of("studies", [("ModalitiesInStudy", "NM")]))
        self.assertIndexed(self.plan_of("series", [], study_uid="1.2.3"))
        self.assertIndexed(self.plan_of("instances", [("includefield", "00180050")],
                                        study_uid="1.2", series_uid="1.2.3"))
        self.assertIndexed(self.plan_of("studies", [("StudyInstanceUID", "1.2,1.3")]))
        self.assertIndexed(self.plan_of("studies", [("AccessionNumber", "A1")]))
        self.assertIndexed(self.plan_of("studies", [("Modality", "CT")]))

    def test_all_studies_reads_in_key_order_with_limit(self) -> None:
        query = parse_query([("limit", "100")])
        sql, params, residual, pushed = build_sql("studies", query, limit=100)
        self.assertTrue(pushed)
        self.assertEqual(residual, [])
        # page first: the page's keys in key order, then its rows (issue 16)
        self.assertIn("FROM (SELECT st.pk AS pk FROM studies st ORDER BY st.pk LIMIT ? OFFSET ?)"
                      " page JOIN studies st ON st.pk = page.pk", sql)
        self.assertTrue(sql.endswith("ORDER BY st.pk"))
        self.assertEqual(params[-2:], [101, 0])
        lines = self.plan_of("studies", [("limit", "100")])
        self.assertEqual(lines[:2], ["MATERIALIZE page", "SCAN st"])
        self.assertIn("SEARCH st USING INTEGER PRIMARY KEY (rowid=?)", lines)

    def test_split_between_sql_and_python(self) -> None:
        query = parse_query([("StudyDate", "20200101-"), ("PatientComments", "x"),
                             ("PatientName", "A*"), ("ModalitiesInStudy", "CT")])
        conditions, residual = plan("studies", query)
        self.assertEqual(len(conditions), 3)
        self.assertEqual([c.tag for c in residual], ["00104000", "00100010"])
        exact = [c.exact for c in conditions]
        self.assertEqual(exact, [True, False, True])

    def test_case_insensitive_text_goes_to_python(self) -> None:
        query = parse_query([("StudyDescription", "brain*")], case_sensitive=False)
        conditions, residual = plan("studies", query)
        self.assertEqual(conditions, [])
        self.assertEqual(len(residual), 1)

    def test_escapes(self) -> None:
        self.assertEqual(glob_escape("a[b]*"), "a[[]b]*")
        self.assertEqual(like_word("a%b_c*"), "% a\\%b\\_c%%")


class JsonTests(SynchronousTestCase):
    def test_dumps_json(self) -> None:
        from dwdaemon.web.qido import dumps_json

        value = [{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^José"}]},
                  "00720068": {"vr": "UV", "Value": [2**70]}}]
        self.assertEqual(dumps_json(value),
                         json.dumps(value, ensure_ascii=False,
                                    separators=(",", ":")).encode("utf-8"))
