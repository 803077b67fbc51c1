#!/usr/bin/env python3
"""QIDO-RS on a one-million-instance PostgreSQL index (issue 16).

Data (built once, kept in schema ``--schema`` of the database of ``--dsn``):

1. *seed*: qido_bench's data set (``--seed-studies`` studies x 2 series x 5 instances plus one
   300-instance series) generated in memory, parsed by the real ingest analysis
   (:func:`dwdaemon.store.ingest.analyse`) in worker processes and indexed through
   :meth:`PostgresIndex.add_instance` by one writer (its rate is printed: the ingest figure);
2. *bulk replication*: ``--copies - 1`` copies of every seed row made in SQL
   (``INSERT ... SELECT ... CROSS JOIN generate_series``): copy ``k`` gets primary keys shifted
   by ``k`` times the seed's maximum, ``.k`` appended to every UID and public identifier, and
   ``-k`` appended to PatientID and AccessionNumber (so those stay selective); names, dates,
   modalities and the stored DICOM JSON are the seed's (so the JSON of a copy still shows the
   seed's UIDs: only the typed columns, which QIDO matches and answers with, are changed).
   Then ``VACUUM ANALYZE``. The default (10,001 x 10) gives 1,003,000 instances and 100,010
   studies, the size of the issue's table. (The per-study summary columns of schema version 2
   are copied with the rows; a schema built by an older version is migrated when the daemon
   opens it: about 50 s at this size, then ``VACUUM ANALYZE studies`` is worth running.)

The files are kept in ``$TMPDIR/million-bench-cache/<schema>/storage`` (a copy's file is a hard
link to its seed's: the daemon drops index rows whose file is gone). Then a daemon
(``python -m twisted dicomweb``, this checkout) serves that schema and storage on
127.0.0.1:``--port``, and every query is run
``--repeat`` times on one keep-alive connection after two warm-ups; median / p95 ms and the
number of answers are printed, then ``EXPLAIN (ANALYZE)`` of each statement. Paging through
all studies 100 at a time (OHIF's study list) is measured on every ``--page-step``-th page.

Usage (from the repository root)::

    PYTHONPATH=$PWD python bench/million_bench.py               # build if needed, measure
    PYTHONPATH=$PWD python bench/million_bench.py --rebuild     # drop the schema first
    PYTHONPATH=$PWD python bench/million_bench.py --copies 1 --schema dwd_100k   # 100k only
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import orjson
import psycopg
from benchlib import DICOM_JSON, ROOT, Client, Ours
from psycopg import sql

sys.path.insert(0, ROOT)

import qido_bench as qb  # noqa: E402  (bench/ is on sys.path; qido_bench's data set)

PORT = 8261
DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
MARK = "bench_million"

TABLE_COPY = {
    "patients": ("pk", {"public_id": "public_id || '.' || k",
                        "patient_id": "patient_id || '-' || k"}),
    "studies": ("pk", {"public_id": "public_id || '.' || k",
                       "patient_pk": "patient_pk + k * {patients}",
                       "study_uid": "study_uid || '.' || k",
                       "patient_id": "patient_id || '-' || k",
                       "accession_number": "accession_number || '-' || k"}),
    "series": ("pk", {"public_id": "public_id || '.' || k",
                      "study_pk": "study_pk + k * {studies}",
                      "series_uid": "series_uid || '.' || k"}),
    "instances": ("pk", {"public_id": "public_id || '.' || k",
                         "series_pk": "series_pk + k * {series}",
                         "sop_uid": "sop_uid || '.' || k",
                         "file_uuid": "file_uuid || '.' || k"}),
}


# -- building -----------------------------------------------------------------------------------

def storage_path(storage: str, file_uuid: str) -> str:
    """Where the daemon's storage area keeps ``file_uuid`` (its two-level layout)."""
    return os.path.join(storage, file_uuid[0:2], file_uuid[2:4], file_uuid)


def _seed_chunk(args: tuple[int, int, str]) -> list[dict[str, Any]]:
    """Index records of studies ``start..stop``: files generated into the storage area, then
    parsed by the real ingest analysis."""
    from dwdaemon.store.ingest import analyse, record_fields

    start, stop, storage = args
    out = []
    for index in range(start, stop):
        if index == qb.STUDIES:  # the 300-instance series
            study = qb.study_plan(qb.STUDIES + 1) | {"uid": qb.BIG_STUDY,
                                                     "PatientName": "BIG^SERIES"}
            files = [qb.make_file(study, 1, "CT", n, qb.BIG_SERIES_UID)
                     for n in range(1, qb.BIG_SERIES + 1)]
        else:
            study = qb.study_plan(index)
            files = [qb.make_file(study, s, modality, n, f"{study['uid']}.{s}")
                     for s, modality in enumerate(study["modalities"], 1)
                     for n in range(1, qb.INSTANCES_PER_SERIES + 1)]
        for data in files:
            file_uuid = str(uuid.uuid4())
            path = storage_path(storage, file_uuid)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            fields = record_fields(analyse(path))
            out.append(dict(fields, file_uuid=file_uuid, file_size=len(data),
                            file_md5=hashlib.md5(data).hexdigest()))
    return out


def seed(dsn: str, schema: str, studies: int, storage: str) -> tuple[int, float]:
    """Index the seed set; returns (instances, seconds spent in ``add_instance``)."""
    from dwdaemon.store.index.base import InstanceRecord
    from dwdaemon.store.index.postgres import PostgresIndex

    index = PostgresIndex(dsn, schema)
    index.open()
    qb.STUDIES = studies
    chunks = [(i, min(i + 100, studies + 1), storage) for i in range(0, studies + 1, 100)]
    count, writing, began = 0, 0.0, time.perf_counter()
    with multiprocessing.Pool(max(1, (os.cpu_count() or 2) - 1)) as pool:
        for records in pool.imap(_seed_chunk, chunks):
            t0 = time.perf_counter()
            for record in records:
                index.add_instance(InstanceRecord(**record), False)
            writing += time.perf_counter() - t0
            count += len(records)
            if count % 10000 < len(records):
                print(f"  seed: {count} instances ({time.perf_counter() - began:.0f} s)",
                      flush=True)
    index.close()
    return count, writing


def link_copies(conn: psycopg.Connection, storage: str, copies: int) -> None:
    """The copies' files: hard links to the seed's (the daemon drops index rows without file)."""
    seeds = [r[0] for r in conn.execute("SELECT file_uuid FROM instances"
                                        " WHERE file_uuid NOT LIKE '%%.%%'")]
    for file_uuid in seeds:
        source = storage_path(storage, file_uuid)
        for k in range(1, copies):
            target = storage_path(storage, f"{file_uuid}.{k}")
            if not os.path.exists(target):
                os.link(source, target)


def replicate(conn: psycopg.Connection, copies: int) -> None:
    """Copies 1..copies-1 of every seed row, in SQL (see the module docstring)."""
    top = {t: conn.execute(sql.SQL("SELECT COALESCE(MAX(pk), 0) FROM {}").format(
        sql.Identifier(t))).fetchone()[0] for t in TABLE_COPY}
    for table, (_, changed) in TABLE_COPY.items():
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " AND table_schema = current_schema() ORDER BY ordinal_position", (table,))]
        exprs = [f"pk + k * {top[table]}" if c == "pk" else
                 changed.get(c, c).format(**top) for c in columns]
        began = time.perf_counter()
        for k in range(1, copies):
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)}"
                f" FROM {table} CROSS JOIN (SELECT {k} AS k) c WHERE pk <= {top[table]}")
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'),"
                     f" (SELECT MAX(pk) FROM {table}))")
        print(f"  replicated {table} x{copies} in {time.perf_counter() - began:.0f} s",
              flush=True)


def build(dsn: str, schema: str, studies: int, copies: int, rebuild: bool,
          directory: str) -> None:
    """Build the data set unless the schema (and ``directory``, the daemon's storage and
    configuration) already holds the one asked for."""
    wanted = f"seed={studies} copies={copies}"
    storage = os.path.join(directory, "storage")
    with psycopg.connect(dsn, autocommit=True) as conn:
        if rebuild:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
            shutil.rmtree(directory, True)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        have = None
        if conn.execute("SELECT to_regclass('properties')").fetchone()[0]:
            row = conn.execute("SELECT value FROM properties WHERE name = %s",
                               (MARK,)).fetchone()
            have = row[0] if row else None
        if have == wanted:
            return
        if have is not None or conn.execute("SELECT to_regclass('instances')").fetchone()[0]:
            raise SystemExit(f"schema {schema} holds another data set ({have}); use --rebuild")
        began = time.perf_counter()
        shutil.rmtree(directory, True)
        os.makedirs(storage)
        count, writing = seed(dsn, schema, studies, storage)
        print(f"seed: {count} instances through PostgresIndex.add_instance in"
              f" {time.perf_counter() - began:.0f} s; writer alone {count / writing:.0f}"
              " inst/s", flush=True)
        t0 = time.perf_counter()
        replicate(conn, copies)
        link_copies(conn, storage, copies)
        conn.execute("VACUUM ANALYZE")
        print(f"bulk replication + VACUUM ANALYZE: {time.perf_counter() - t0:.0f} s",
              flush=True)
        conn.execute("INSERT INTO properties (name, value) VALUES (%s, %s)", (MARK, wanted))


# -- measuring ----------------------------------------------------------------------------------

def queries(studies: int, copies: int) -> dict[str, str]:
    """Name -> path under the DICOMweb root."""
    sample = qb.study_plan(1234)
    last = copies - 1
    study = sample["uid"] + (f".{last}" if last else "")
    suffix = f"-{last}" if last else ""
    deep = max(0, min(100000, (studies + 1) * copies - 100))
    return {
        "studies limit=100": "studies?limit=100",
        "PatientName=SMITH* (no limit)": "studies?PatientName=SMITH*",
        "StudyDate one month (no limit)": "studies?StudyDate=20200101-20200131",
        "ModalitiesInStudy=NM (no limit)": "studies?ModalitiesInStudy=NM",
        "series of a study": f"studies/{study}/series",
        "studies offset=0 limit=100": "studies?offset=0&limit=100",
        "studies offset=100000 limit=100": f"studies?offset={deep}&limit=100",
        "PatientName=DOE* (0 hits)": "studies?PatientName=DOE*",
        "PatientID exact": f"studies?PatientID={sample['PatientID']}{suffix}",
        "AccessionNumber": f"studies?AccessionNumber={sample['AccessionNumber']}{suffix}",
        "StudyDate 1 year + ModalitiesInStudy=NM": "studies?StudyDate=20200101-20201231"
                                                   "&ModalitiesInStudy=NM",
        "includefield=all limit=100": "studies?includefield=all&limit=100",
        "series level Modality=MR limit=100": "series?Modality=MR&limit=100",
        "instances level limit=100": "instances?limit=100",
        "instances of a 300-instance series": f"studies/{qb.BIG_STUDY}/series/"
                                              f"{qb.BIG_SERIES_UID}/instances",
    }


def measure(client: Client, path: str, repeat: int) -> tuple[list[float], int]:
    times, count = [], 0
    for n in range(repeat + 2):
        status, body, elapsed = client.get("/dicom-web/" + path, DICOM_JSON)
        if status not in (200, 204):
            raise RuntimeError(f"{path}: HTTP {status} {body[:200]!r}")
        count = len(orjson.loads(body)) if body else 0
        if n >= 2:
            times.append(elapsed * 1000)
    return times, count


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def paging(client: Client, total: int, step: int) -> tuple[list[float], int]:
    """Latencies of every ``step``-th page of all studies, 100 per page (OHIF's study list)."""
    times, seen = [], 0
    for offset in range(0, total, 100 * step):
        status, body, elapsed = client.get(
            f"/dicom-web/studies?limit=100&offset={offset}&includefield=00081030"
            "&includefield=00080060", DICOM_JSON)
        if status not in (200, 204):
            raise RuntimeError(f"paging at {offset}: HTTP {status}")
        seen += len(orjson.loads(body)) if body else 0
        times.append(elapsed * 1000)
    return times, seen


def explain_all(dsn: str, schema: str, paths: dict[str, str]) -> None:
    """``EXPLAIN (ANALYZE)`` of each query's main statement, on a dwdaemon connection."""
    from urllib.parse import parse_qsl, urlsplit

    from dwdaemon.dicom.matching import parse_query
    from dwdaemon.store.index.postgres import PostgresIndex
    from dwdaemon.store.index.search import explain

    index = PostgresIndex(dsn, schema)
    print("\nEXPLAIN ANALYZE (dwdaemon's statements, PostgreSQL):")
    for name, path in paths.items():
        parts = urlsplit(path)
        segments = parts.path.split("/")
        kwargs: dict[str, Any] = {}
        if len(segments) >= 3:
            kwargs["study_uid"] = segments[1]
        if len(segments) >= 5:
            kwargs["series_uid"] = segments[3]
        query = parse_query(parse_qsl(parts.query))
        cap = None if segments[-1] == "instances" else 1000  # LimitFindResults' default
        print(f"  {name}")
        for line in explain(index, segments[-1], query, analyze=True,
                            limit=query.limit or cap, **kwargs):
            print(f"      {line}")
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--schema", default="dwd_million")
    parser.add_argument("--seed-studies", type=int, default=qb.STUDIES)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--page-step", type=int, default=10,
                        help="measure every N-th page when paging through all studies")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-plans", action="store_true")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    directory = os.path.join(tempfile.gettempdir(), "million-bench-cache", args.schema)
    build(args.dsn, args.schema, args.seed_studies, args.copies, args.rebuild, directory)
    info = psycopg.conninfo.conninfo_to_dict(args.dsn)
    uri = (f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
           f"{info.get('port', 5432)}/{info.get('dbname', 'test')}"
           f"?options=-csearch_path%3D{args.schema}")
    total = (args.seed_studies + 1) * args.copies
    paths = queries(args.seed_studies, args.copies)
    results: dict[str, tuple[list[float], int]] = {}
    with Ours(args.port, directory, {"PostgreSQL": {"EnableIndex": True, "ConnectionUri": uri}},
              ready_path="/dicom-web/studies?limit=1", ready_timeout=300):
        client = Client(args.port)
        for name, path in paths.items():
            results[name] = measure(client, path, args.repeat)
        pages = paging(client, total, args.page_step)
        client.close()
    print(f"\nQIDO-RS on PostgreSQL, {total} studies ({args.copies} x"
          f" {args.seed_studies + 1}), ms over HTTP ({args.repeat} runs after 2 warm-ups)")
    print(f"{'query':<44} {'median':>8} {'p95':>8} {'answers':>8}")
    for name, (times, count) in results.items():
        print(f"{name:<44} {statistics.median(times):8.1f} {p95(times):8.1f} {count:8d}")
    times, seen = pages[0], pages[1]
    print(f"{'paging all studies, 100/page (' + str(len(times)) + ' pages)':<44}"
          f" {statistics.median(times):8.1f} {p95(times):8.1f} {seen:8d}"
          f"   first {times[0]:.1f}, last {times[-1]:.1f}")
    if not args.no_plans:
        explain_all(args.dsn, args.schema, paths)


if __name__ == "__main__":
    main()
