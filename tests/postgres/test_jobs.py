"""Jobs and run-time servers persisted in the PostgreSQL index."""

from __future__ import annotations

from twisted.internet import reactor

import tests.client.test_jobs as jobs_tests
from dwdaemon.jobs import JobEngine
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
        index.put_server("a", '{"Url": "http://a/"}')
        index.put_server("b", None)
        index.put_server("a", '{"Url": "http://a2/"}')
        other = open_index(self, self.schema)  # another daemon of the same database
        self.assertEqual(sorted(other.servers()),
                         [("a", '{"Url": "http://a2/"}'), ("b", None)])

    def test_jobs_table_upsert_and_trim(self) -> None:
        index = open_index(self, self.schema)
        for seq in range(1, 6):
            index.save_job((f"j{seq}", "t", "Success", 100, None, "{}", "{}", "c", "d", seq, ""))
        index.save_job(("j5", "t", "Running", 50, None, "{}", "{}", "c", None, 5, ""))
        index.forget_old_jobs(2)
        rows = index.jobs()
        self.assertEqual([(r[0], r[2]) for r in rows], [("j4", "Success"), ("j5", "Running")])
