#!/usr/bin/env python3
"""QIDO-RS benchmark: dwdaemon vs Orthanc + DICOMweb plugin on the same data, same run.

Data: 10,000 studies x 2 series x 5 instances, plus one study with a 300-instance series
(100,300 small synthetic instances, no pixel data), generated once and cached in
``$TMPDIR/qido-bench-cache`` (with both servers' storage, so re-runs skip loading).

- dwdaemon: loaded in-process through the ingest analysis and the index API (files hard-linked
  into its storage area), then served by ``python -m twisted dicomweb`` on 127.0.0.1:8243;
- Orthanc: started here on 127.0.0.1:8242 with the DICOMweb plugin; loaded with parallel
  ``POST /instances``.

With ``--postgres DSN`` dwdaemon's index is PostgreSQL instead (schema ``dwd_qido_bench`` of
that database, loaded once the same way and kept between runs; ``--fresh`` drops it too).

Queries (a)-(f) of issue 4, each run ``--repeat`` times per server after a warm-up, on one
keep-alive connection; median and p95 latency are printed, then ``EXPLAIN QUERY PLAN`` of our
statements for (a)-(e).

Usage (from the repository root)::

    python bench/qido_bench.py                 # generate/load if needed, then measure
    python bench/qido_bench.py --repeat 30
    python bench/qido_bench.py --fresh         # drop the cache first
    python bench/qido_bench.py --skip-orthanc --postgres "host=127.0.0.1 dbname=test"
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchlib import DICOM_JSON, ROOT, Client, Orthanc, Ours, request, upload

sys.path.insert(0, ROOT)  # dwdaemon is loaded in-process (ingest analysis, index)

OURS_PORT = 8243
ORTHANC_PORT = 8242
CACHE = os.path.join(tempfile.gettempdir(), "qido-bench-cache")
STUDIES = 10_000
SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 5
BIG_SERIES = 300
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
BIG_STUDY = f"{UID_ROOT}.9999999"
BIG_SERIES_UID = f"{BIG_STUDY}.1"
PG_SCHEMA = "dwd_qido_bench"

SURNAMES = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS",
            "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON",
            "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON",
            "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER",
            "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES",
            "GREEN", "ADAMS", "NELSON", "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL",
            "CARTER", "ROBERTS"]
GIVEN = ["JAMES", "MARY", "JOHN", "PATRICIA", "ROBERT", "JENNIFER", "MICHAEL", "LINDA",
         "WILLIAM", "ELIZABETH", "DAVID", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA"]
# NM is rare (about 1.5% of series): query (d) selects a few hundred studies.
MODALITIES = ["CT"] * 30 + ["MR"] * 25 + ["CR"] * 15 + ["US"] * 10 + ["DX"] * 10 + \
    ["XA"] * 5 + ["PT"] * 3 + ["NM"] * 2
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
             "CR": "1.2.840.10008.5.1.4.1.1.1", "US": "1.2.840.10008.5.1.4.1.1.6.1",
             "DX": "1.2.840.10008.5.1.4.1.1.1.1", "XA": "1.2.840.10008.5.1.4.1.1.12.1",
             "PT": "1.2.840.10008.5.1.4.1.1.128", "NM": "1.2.840.10008.5.1.4.1.1.20"}

QUERIES = {
    "a": ("all studies, limit 100", "studies?limit=100"),
    "b": ("PatientName wildcard", "studies?PatientName=SMITH*"),
    "c": ("StudyDate range (1 month)", "studies?StudyDate=20200101-20200131"),
    "d": ("ModalitiesInStudy", "studies?ModalitiesInStudy=NM"),
    "e": ("series of a study", "studies/{study}/series"),
    "f": ("instances of a 300-instance series, includefield",
          f"studies/{BIG_STUDY}/series/{BIG_SERIES_UID}/instances"
          "?includefield=00180050&includefield=00200032&includefield=00200037"),
}


# -- data ---------------------------------------------------------------------------------------

def study_plan(index: int) -> dict[str, Any]:
    rnd = random.Random(index)
    date = f"{rnd.randint(2000, 2024)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
    return {
        "uid": f"{UID_ROOT}.{index + 1}",
        "PatientName": f"{rnd.choice(SURNAMES)}^{rnd.choice(GIVEN)}",
        "PatientID": f"P{index // 2:06d}",
        "PatientBirthDate": f"{rnd.randint(1930, 2010)}0101",
        "PatientSex": rnd.choice("MF"),
        "StudyDate": date,
        "StudyTime": f"{rnd.randint(7, 19):02d}{rnd.randint(0, 59):02d}00",
        "AccessionNumber": f"A{index:08d}",
        "StudyID": str(index % 1000),
        "StudyDescription": rnd.choice(["HEAD", "CHEST", "ABDOMEN", "KNEE", "SPINE"]),
        "ReferringPhysicianName": f"DR^{rnd.choice(SURNAMES)}",
        "modalities": [rnd.choice(MODALITIES) for _ in range(SERIES_PER_STUDY)],
    }


def make_file(study: dict[str, Any], series_no: int, modality: str, number: int,
               series_uid: str) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_uid = f"{series_uid}.{number}"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study["uid"]
    ds.SeriesInstanceUID = series_uid
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
                "ReferringPhysicianName"):
        setattr(ds, key, study[key])
    ds.Modality = modality
    ds.SeriesNumber = series_no
    ds.SeriesDescription = f"{modality} series {series_no}"
    ds.InstanceNumber = number
    ds.SliceThickness = "2.5"
    ds.ImagePositionPatient = [0, 0, number * 2.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _generate_chunk(args: tuple[int, int, str]) -> int:
    start, stop, directory = args
    count = 0
    for index in range(start, stop):
        study = study_plan(index)
        for s, modality in enumerate(study["modalities"], 1):
            series_uid = f"{study['uid']}.{s}"
            for n in range(1, INSTANCES_PER_SERIES + 1):
                _write(directory, f"{series_uid}.{n}",
                       make_file(study, s, modality, n, series_uid))
                count += 1
    return count


def _write(directory: str, name: str, data: bytes) -> None:
    bucket = int(hashlib.md5(name.encode()).hexdigest()[:4], 16) % 100
    path = os.path.join(directory, f"{bucket:02d}", name + ".dcm")
    with open(path, "wb") as f:
        f.write(data)


def generate(directory: str) -> list[str]:
    """Generate (once) the files; returns their paths."""
    marker = os.path.join(directory, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(directory, True)
        for n in range(100):
            os.makedirs(os.path.join(directory, f"{n:02d}"), exist_ok=True)
        started = time.time()
        step = 250
        chunks = [(i, min(i + step, STUDIES), directory) for i in range(0, STUDIES, step)]
        with multiprocessing.Pool(os.cpu_count() or 2) as pool:
            total = sum(pool.map(_generate_chunk, chunks))
        big = study_plan(STUDIES + 1) | {"uid": BIG_STUDY, "PatientName": "BIG^SERIES"}
        for n in range(1, BIG_SERIES + 1):
            _write(directory, f"{BIG_SERIES_UID}.{n}",
                   make_file(big, 1, "CT", n, BIG_SERIES_UID))
            total += 1
        open(marker, "w").close()
        print(f"generated {total} files in {time.time() - started:.0f} s", flush=True)
    return sorted(os.path.join(root, f) for root, _, files in os.walk(directory)
                  for f in files if f.endswith(".dcm"))


# -- loading ------------------------------------------------------------------------------------

def _analyse(args: tuple[str, str]) -> Any:
    path, storage = args
    from dwdaemon.store.ingest import analyse, record_fields

    analysis = analyse(path)
    file_uuid = str(uuid.uuid4())
    final = os.path.join(storage, file_uuid[0:2], file_uuid[2:4], file_uuid)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.link(path, final)
    with open(path, "rb") as f:
        data = f.read()
    return record_fields(analysis), file_uuid, len(data), hashlib.md5(data).hexdigest()


def open_index(directory: str, postgres: str | None) -> Any:
    """dwdaemon's index of the benchmark: SQLite in ``directory``, or PostgreSQL."""
    if postgres:
        from dwdaemon.store.index.postgres import PostgresIndex

        index: Any = PostgresIndex(postgres, schema_name=PG_SCHEMA)
    else:
        from dwdaemon.store.index.sqlite import SqliteIndex

        index = SqliteIndex(os.path.join(directory, "index"))
    index.open()
    return index


def postgres_uri(dsn: str) -> str:
    """A connection URI to the benchmark's schema (for the daemon's configuration)."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.get("user") or os.environ.get("PGUSER") or "postgres"
    return (f"postgresql://{user}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/"
            f"{info.get('dbname', 'test')}?options=-csearch_path%3D{PG_SCHEMA}")


def load_ours(files: list[str], directory: str, postgres: str | None = None) -> None:
    """Index every file in-process (analysis in worker processes, one writer)."""
    from dwdaemon.store.index.base import InstanceRecord

    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return
    shutil.rmtree(directory, True)
    storage = os.path.join(directory, "storage")
    os.makedirs(storage)
    if postgres:
        import psycopg

        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
    index = open_index(directory, postgres)
    index.connection().execute("SET synchronous_commit TO off" if postgres
                               else "PRAGMA synchronous=OFF")
    started = time.time()
    with multiprocessing.Pool(os.cpu_count() or 2) as pool:
        for n, (fields, file_uuid, size, md5) in enumerate(
                pool.imap(_analyse, ((p, storage) for p in files), chunksize=64), 1):
            index.add_instance(InstanceRecord(file_uuid=file_uuid, file_size=size,
                                              file_md5=md5, **fields), False)
            if n % 20000 == 0:
                print(f"  dwdaemon: {n} indexed ({time.time() - started:.0f} s)", flush=True)
    if not postgres:
        index.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        index.connection().execute("ANALYZE")
    index.close()
    open(marker, "w").close()
    print(f"dwdaemon: loaded {len(files)} instances in {time.time() - started:.0f} s",
          flush=True)


def load_orthanc(files: list[str], port: int, workers: int = 4) -> None:
    """Upload every file with parallel ``POST /instances`` (skipped if already there)."""
    have = json.loads(request(port, "GET", "/statistics")[1])["CountInstances"]
    if have >= len(files):
        return
    started = time.time()
    chunks = [files[i::workers] for i in range(workers)]

    def read(paths: list[str]) -> Iterator[bytes]:
        for path in paths:
            with open(path, "rb") as f:
                yield f.read()

    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(lambda paths: upload(port, read(paths)), chunks))
    print(f"orthanc: loaded {total} instances in {time.time() - started:.0f} s", flush=True)


# -- measuring ----------------------------------------------------------------------------------

def measure(port: int, paths: list[str], warmup: int = 2) -> tuple[list[float], int, int]:
    """Latencies (ms) of GETs of ``paths`` (cycled), the last status and answer count."""
    client = Client(port)
    times = []
    status, count = 0, 0
    for n, path in enumerate(paths[:warmup] + paths):
        status, body, elapsed = client.get("/dicom-web/" + path, DICOM_JSON)
        count = len(json.loads(body)) if body else 0
        if n >= warmup:
            times.append(elapsed * 1000)
    client.close()
    return times, status, count


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def explain_plans(directory: str, postgres: str | None = None) -> None:
    from dwdaemon.dicom.matching import parse_query
    from dwdaemon.store.index.search import explain

    index = open_index(directory, postgres)
    study = study_plan(1234)["uid"]
    cases = {
        "a": ("studies", [("limit", "100")], {}),
        "b": ("studies", [("PatientName", "SMITH*")], {}),
        "c": ("studies", [("StudyDate", "20200101-20200131")], {}),
        "d": ("studies", [("ModalitiesInStudy", "NM")], {}),
        "e": ("series", [], {"study_uid": study}),
        "f": ("instances", [("includefield", "00180050")],
              {"study_uid": BIG_STUDY, "series_uid": BIG_SERIES_UID}),
    }
    print(f"\nquery plans (dwdaemon, {index.backend_name}):")
    for key, (level, pairs, kwargs) in cases.items():
        query = parse_query(pairs)
        print(f"  ({key})")
        for line in explain(index, level, query, limit=query.limit, **kwargs):
            print(f"      {line}")
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="drop the cache first")
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--port", type=int, default=OURS_PORT, help="dwdaemon's HTTP port")
    parser.add_argument("--postgres", metavar="DSN",
                        help="dwdaemon's index in PostgreSQL (schema dwd_qido_bench)")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(CACHE, True)
    os.makedirs(CACHE, exist_ok=True)
    files = generate(os.path.join(CACHE, "files"))
    print(f"{len(files)} instances, {STUDIES + 1} studies", flush=True)
    ours_dir = os.path.join(CACHE, "dwdaemon-pg" if args.postgres else "dwdaemon")
    if args.fresh and args.postgres:
        shutil.rmtree(ours_dir, True)
    load_ours(files, ours_dir, args.postgres)
    ours_config: dict[str, Any] = {"Name": "qido-bench"}
    if args.postgres:
        ours_config["PostgreSQL"] = {"EnableIndex": True,
                                     "ConnectionUri": postgres_uri(args.postgres)}

    rnd = random.Random(7)
    studies = [study_plan(rnd.randrange(STUDIES))["uid"] for _ in range(args.repeat)]
    paths = {}
    for key, (_, template) in QUERIES.items():
        if "{study}" in template:
            paths[key] = [template.format(study=s) for s in studies]
        else:
            paths[key] = [template] * args.repeat

    results: dict[str, dict[str, tuple[list[float], int, int]]] = {}
    with Ours(args.port, ours_dir, ours_config,
              ready_path="/dicom-web/studies?limit=1", ready_timeout=300):
        results["dwdaemon"] = {k: measure(args.port, p) for k, p in paths.items()}
    if not args.skip_orthanc:
        with Orthanc(ORTHANC_PORT, os.path.join(CACHE, "orthanc"), {"Name": "qido-bench-orthanc"},
                     ready_timeout=300):
            load_orthanc(files, ORTHANC_PORT)
            results["orthanc"] = {k: measure(ORTHANC_PORT, p) for k, p in paths.items()}

    print(f"\nQIDO-RS latency, ms ({args.repeat} runs each after 2 warm-ups; "
          "answers = number of datasets returned)")
    header = f"{'query':<52} {'dwdaemon med/p95':>18} {'answers':>7}"
    if "orthanc" in results:
        header += f" {'orthanc med/p95':>18} {'answers':>7} {'speed-up':>8}"
    print(header)
    for key, (title, _) in QUERIES.items():
        ours, _, n_ours = results["dwdaemon"][key]
        line = (f"({key}) {title:<48} {statistics.median(ours):8.1f}/{p95(ours):8.1f} "
                f"{n_ours:7d}")
        if "orthanc" in results:
            theirs, _, n_theirs = results["orthanc"][key]
            ratio = statistics.median(theirs) / statistics.median(ours)
            line += (f" {statistics.median(theirs):8.1f}/{p95(theirs):8.1f} {n_theirs:7d}"
                     f" {ratio:7.1f}x")
        print(line)
    explain_plans(ours_dir, args.postgres)


if __name__ == "__main__":
    main()
