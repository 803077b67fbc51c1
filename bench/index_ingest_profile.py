#!/usr/bin/env python3
"""Where indexing time goes: ``add_instance`` on SQLite vs PostgreSQL, with a profile (issue 16).

The same ``--studies`` x 2 series x 5 instances of qido_bench's data set are analysed once
(the real ingest analysis), then indexed by one writer into a fresh SQLite file and a fresh
PostgreSQL schema (dropped at the end). Prints instances/s and the top of a ``cProfile`` of
each run (``--top`` lines; the ``execute`` calls count the statements per instance).

Usage (from the repository root)::

    PYTHONPATH=$PWD python bench/index_ingest_profile.py --studies 200
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
import uuid
from typing import Any

import psycopg
from benchlib import ROOT  # noqa: F401  (puts the checkout first on sys.path)
from million_bench import DSN, _seed_chunk
from psycopg import sql


def records(studies: int, directory: str) -> list[dict[str, Any]]:
    import qido_bench as qb

    qb.STUDIES = studies + 1  # no 300-instance series here
    return _seed_chunk((0, studies, directory))


def run(index: Any, recs: list[dict[str, Any]], top: int) -> tuple[float, str]:
    from dwdaemon.store.index.base import InstanceRecord

    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    for rec in recs:
        index.add_instance(InstanceRecord(**dict(rec, file_uuid=str(uuid.uuid4()))), False)
    profile.disable()
    rate = len(recs) / (time.perf_counter() - began)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    return rate, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    from dwdaemon.store.index.postgres import PostgresIndex
    from dwdaemon.store.index.sqlite import SqliteIndex

    with tempfile.TemporaryDirectory() as directory:
        recs = records(args.studies, directory)
        lite = SqliteIndex(directory + "/index")
        lite.open()
        lite_rate, lite_profile = run(lite, recs, args.top)
        lite.close()
        schema = "dwd_ingest_" + uuid.uuid4().hex[:8]
        pg = PostgresIndex(args.dsn, schema)
        pg.open()
        try:
            pg_rate, pg_profile = run(pg, recs, args.top)
        finally:
            pg.close()
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    print(f"{len(recs)} instances, one writer")
    print(f"SQLite     {lite_rate:8.0f} inst/s\n{lite_profile}")
    print(f"PostgreSQL {pg_rate:8.0f} inst/s\n{pg_profile}")


if __name__ == "__main__":
    main()
