"""Jobs and run-time servers persisted in the PostgreSQL index."""

from __future__ import annotations

from twisted.internet import reactor

import tests.client.test_jobs as jobs_tests
from dwdaemon.jobs import JobEngine
from dwdaemon.store.index import jobs_sql, servers_sql
from tests.postgres.support import new_schema, open_index


class JobEngineTests(jobs_tests.JobEngineTests):
    """The job engine suite, with its index (shared by restarts) in a PostgreSQL schema."""

    def setUp(self) -> None:
        super().setUp()
        self.schema = new_schema(self)

    def engine(self, owner: str = "") -> JobEngine:
        return JobEngine(open_index(self, self.schema), self.pools, reactor, owner=owner)

    def test_servers_table(self) -> None:
        index = open_index(self, self.schema)
        servers_sql.ensure_tables(index)
        servers_sql.put(index, "a", '{"Url": "http://a/"}')
        servers_sql.put(index, "b", None)
        servers_sql.put(index, "a", '{"Url": "http://a2/"}')
        other = open_index(self, self.schema)  # another daemon of the same database
        self.assertEqual(sorted(servers_sql.load_all(other)),
                         [("a", '{"Url": "http://a2/"}'), ("b", None)])

    def test_jobs_table_upsert_and_trim(self) -> None:
        index = open_index(self, self.schema)
        jobs_sql.ensure_tables(index)
        for seq in range(1, 6):
            jobs_sql.save(index, (f"j{seq}", "t", "Success", 100, None, "{}", "{}", "c", "d", seq,
                                  ""))
        jobs_sql.save(index, ("j5", "t", "Running", 50, None, "{}", "{}", "c", None, 5, ""))
        jobs_sql.delete_older(index, 2)
        rows = jobs_sql.load_all(index)
        self.assertEqual([(r[0], r[2]) for r in rows], [("j4", "Success"), ("j5", "Running")])
