"""Index logic common to the SQL back-ends (statement templates built by their dialect)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

from dwdaemon.dicom.jsonmodel import dumps
from dwdaemon.dicom.matching import Query
from dwdaemon.store.index import jobs_sql, schema, search, servers_sql, study_summary
from dwdaemon.store.index.base import (
    CHILD_LEVEL,
    LEVEL_TYPES,
    AddResult,
    DuplicateInstanceError,
    InstanceRecord,
    InstanceRow,
)
from dwdaemon.store.index.dialect import SQLITE, Dialect, P, placeholders
from dwdaemon.store.index.search import SearchResult

TABLES = {"patients": "patients", "studies": "studies", "series": "series",
          "instances": "instances"}
log = Logger()

PARENT_FK = {"studies": "patient_pk", "series": "study_pk", "instances": "series_pk"}

INSTANCE_COLUMNS = (
    "i.public_id, se.public_id, st.public_id, p.public_id, st.study_uid, se.series_uid, i.sop_uid,"
    " i.sop_class_uid, i.transfer_syntax, i.number_of_frames, i.instance_number, i.file_uuid,"
    " i.file_size, i.file_md5, i.main_tags, i.metadata, i.bulk, i.frames, i.received_at,"
    " i.last_update"
)
INSTANCE_JOIN = (
    "instances i JOIN series se ON i.series_pk = se.pk JOIN studies st ON se.study_pk = st.pk"
    " JOIN patients p ON st.patient_pk = p.pk"
)


CHANGE_NEW = {"patients": "NewPatient", "studies": "NewStudy", "series": "NewSeries",
              "instances": "NewInstance"}
CHANGE_COLUMNS = "seq, change_type, resource_type, public_id, date"
LEVEL_PATHS = {"Patient": "patients", "Study": "studies", "Series": "series",
               "Instance": "instances"}


#: SOP Instance UIDs held by several instances (indexes written before the rule "one SOP
#: Instance UID, one instance").
DUPLICATE_SOPS = ("SELECT sop_uid, COUNT(*) FROM instances GROUP BY sop_uid HAVING COUNT(*) > 1"
                  " ORDER BY sop_uid LIMIT 20")


def warn_duplicate_sops(rows: list[tuple[Any, ...]]) -> None:
    """Start-up goes on without the unique index; say which UIDs to clean up."""
    log.warn("the index holds several instances with the same SOP Instance UID ({uids}); "
             "new duplicates are still refused, but delete the extra copies "
             "(DELETE /instances/{{id}}) so that the unique index can be created at the next "
             "start", uids=", ".join(f"{uid} x{count}" for uid, count in rows))


#: Index columns of the identifiers, per level of ``main_tags_of_level``'s query.
FIND_COLUMNS: dict[str, dict[str, str]] = {
    "patients": {"PatientID": "p.patient_id"},
    "studies": {"PatientID": "st.patient_id", "StudyInstanceUID": "st.study_uid"},
    "series": {"PatientID": "st.patient_id", "StudyInstanceUID": "st.study_uid",
               "SeriesInstanceUID": "se.series_uid"},
    "instances": {"PatientID": "st.patient_id", "StudyInstanceUID": "st.study_uid",
                  "SeriesInstanceUID": "se.series_uid", "SOPInstanceUID": "i.sop_uid"},
}


class NewerSchemaError(RuntimeError):
    """The index was written by a newer dwdaemon (its schema version is higher than ours)."""


def now_text() -> str:
    """Orthanc's timestamp format (``20260101T120000``), UTC."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def _row_to_instance(row: tuple[Any, ...]) -> InstanceRow:
    values = list(row)
    values[14] = json.loads(values[14])
    return InstanceRow(*values)


class SqlIndex:
    """Shared SQL implementation; subclasses provide connections and transactions.

    Besides the :class:`~dwdaemon.store.index.base.Index` interface, it offers the SQL
    primitives used by the statement modules of this package (``search``, ``jobs_sql``,
    ``servers_sql``) and by tests: :meth:`connection`, :meth:`transaction`,
    :meth:`execute` and :meth:`fetch_all`, which take statement templates of
    :mod:`~dwdaemon.store.index.dialect` (``{p}`` for a parameter). Code outside
    ``store/index/`` uses the interface only.
    """

    backend_name = "SQL"
    #: How the back end spells SQL (see :mod:`~dwdaemon.store.index.dialect`).
    dialect: Dialect = SQLITE

    # -- to be provided by back-ends -------------------------------------------------------
    def connection(self) -> Any:
        """This thread's database connection (opened on first use)."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one write transaction (committed on exit, rolled back on error)."""
        raise NotImplementedError
        yield

    def execute(self, cur: Any, template: str, params: tuple[Any, ...] = ()) -> None:
        """Run a statement template on a cursor (built by the dialect, cached)."""
        cur.execute(self.dialect.statement(template), params)

    # -- helpers ---------------------------------------------------------------------------
    def fetch_all(self, template: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of a read statement template, outside any transaction."""
        cur = self.connection().cursor()
        try:
            cur.execute(self.dialect.statement(template), params)
            return cur.fetchall()
        finally:
            cur.close()

    def _one(self, cur: Any, template: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        cur.execute(self.dialect.statement(template), params)
        return cur.fetchone()

    def migrate(self, cur: Any) -> None:
        """Bring an index of an older schema version up to date (in the schema's transaction):
        add the missing columns and record the version (their values are computed after, see
        :func:`~dwdaemon.store.index.study_summary.fill_missing`)."""
        self.execute(cur, "SELECT value FROM properties WHERE name = 'schema_version'")
        row = cur.fetchone()
        found = int(row[0]) if row and str(row[0]).isdigit() else schema.SCHEMA_VERSION
        if found > schema.SCHEMA_VERSION:
            raise NewerSchemaError(
                f"the index has schema version {found}, newer than this dwdaemon's "
                f"({schema.SCHEMA_VERSION}): upgrade dwdaemon (an older version would leave the "
                "newer one's derived data stale)")
        existing = {}
        for table in schema.ADDED_COLUMNS:
            self.execute(cur, f"SELECT * FROM {table} LIMIT 0")
            existing[table] = {d[0] for d in cur.description}
        for statement in schema.migrations(existing, self.dialect):
            cur.execute(statement)
        self.execute(cur, f"UPDATE properties SET value = {P} WHERE name = 'schema_version'",
                     (str(schema.SCHEMA_VERSION),))

    # -- writes ----------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several writes of this thread in one transaction (group commit), when the back end
        supports it; here each write stays its own transaction."""
        yield

    def add_instance(self, record: InstanceRecord, overwrite: bool) -> AddResult:
        """Index one instance (and its parents) in one transaction, with its changes.

        One SOP Instance UID, one instance: when another instance (another patient, study or
        series) already has this SOP Instance UID, :class:`DuplicateInstanceError` is raised, or,
        with ``overwrite``, that instance is removed (and its parents left empty) in the same
        transaction, its file named in ``obsolete_file`` for removal after the commit.
        """
        stamp = now_text()
        with self.transaction() as cur:
            existing = self._one(cur, f"SELECT pk, file_uuid FROM instances WHERE public_id = {P}",
                                 (record.ids.instance,))
            other = None
            if existing is None:
                other = self._one(cur, "SELECT pk, public_id, file_uuid FROM instances"
                                       f" WHERE sop_uid = {P}", (record.sop_uid,))
                if other is not None and other[1] == record.ids.instance:
                    # the same instance, committed by another daemon between the two reads
                    # (PostgreSQL's read committed: each statement sees a new snapshot)
                    existing, other = (other[0], other[2]), None
            if existing is not None and not overwrite:
                return AddResult("AlreadyStored", record.ids.instance,
                                 obsolete_file=record.file_uuid)
            replaced = None
            if existing is None and other is not None:
                if not overwrite:
                    raise DuplicateInstanceError(
                        f"SOP Instance UID {record.sop_uid} is already used by instance "
                        f"{other[1]} (another patient, study or series)")
                replaced = other[2]
                other_study = study_summary.study_of_instance(self, cur, other[0])
                self._delete_below(cur, "instances", other[0], stamp)
                self._delete_empty_parents(cur, "instances", stamp)
                if other_study is not None:
                    study_summary.refresh(self, cur, [other_study])
            patient_pk, new_patient = self._upsert(cur, "patients", record.ids.patient, None, {
                "patient_id": record.patient_id,
                "main_tags": dumps(record.patient_tags),
            }, stamp)
            study_pk, new_study = self._upsert(
                cur, "studies", record.ids.study, ("patient_pk", patient_pk), {
                    "study_uid": record.study_uid,
                    "patient_id": record.patient_id,
                    "main_tags": dumps(record.study_tags),
                    "patient_main_tags": dumps(record.patient_tags),
                    **record.study_columns,
                }, stamp)
            series_pk, new_series = self._upsert(
                cur, "series", record.ids.series, ("study_pk", study_pk), {
                    "series_uid": record.series_uid,
                    "main_tags": dumps(record.series_tags),
                    **record.series_columns,
                }, stamp)
            values = {
                "sop_uid": record.sop_uid,
                "sop_class_uid": record.sop_class_uid,
                "instance_number": record.instance_number,
                "transfer_syntax": record.transfer_syntax,
                "number_of_frames": record.number_of_frames,
                "rows_": record.rows,
                "columns_": record.columns,
                "file_uuid": record.file_uuid,
                "file_size": record.file_size,
                "file_md5": record.file_md5,
                "main_tags": dumps(record.instance_tags),
                "metadata": record.metadata,
                "bulk": record.bulk,
                "frames": record.frames,
            }
            # Orthanc's order: the instance first, then the parents it created
            self._change(cur, "NewInstance", "instances", record.ids.instance, stamp)
            for created, level, public_id in ((new_series, "series", record.ids.series),
                                              (new_study, "studies", record.ids.study),
                                              (new_patient, "patients", record.ids.patient)):
                if created:
                    self._change(cur, CHANGE_NEW[level], level, public_id, stamp)
            if existing is not None:
                sets = ", ".join(f"{k} = {P}" for k in values)
                self.execute(cur, f"UPDATE instances SET {sets}, series_pk = {P},"
                                  f" last_update = {P} WHERE pk = {P}",
                             (*values.values(), series_pk, stamp, existing[0]))
                study_summary.refresh(self, cur, [study_pk])
                return AddResult("Success", record.ids.instance, obsolete_file=existing[1],
                                 overwritten=True)
            names = ", ".join(values)
            marks = placeholders(len(values))
            self.execute(cur, f"INSERT INTO instances (public_id, series_pk, {names},"
                              f" received_at, last_update) VALUES ({P}, {P}, {marks}, {P}, {P})",
                         (record.ids.instance, series_pk, *values.values(), stamp, stamp))
            study_summary.on_add(self, cur, study_pk, new_series,
                                 record.series_columns.get("modality"), record.sop_class_uid,
                                 new_study=new_study, metadata=record.metadata)
            return AddResult("Success", record.ids.instance, obsolete_file=replaced,
                             overwritten=replaced is not None)

    def _change(self, cur: Any, change_type: str, level: str, public_id: str,
                stamp: str) -> None:
        """Log a change (``GET /changes``) in the current transaction."""
        self.execute(cur, "INSERT INTO changes (change_type, resource_type, public_id, date)"
                          f" VALUES ({placeholders(4)})",
                     (change_type, LEVEL_TYPES[level], public_id, stamp))

    def _upsert(self, cur: Any, table: str, public_id: str, parent: tuple[str, int] | None,
                values: dict[str, Any], stamp: str) -> tuple[int, bool]:
        """The row's pk, and whether it was created."""
        row = self._one(cur, f"SELECT pk FROM {table} WHERE public_id = {P}", (public_id,))
        if row is not None:
            self.execute(cur, f"UPDATE {table} SET last_update = {P} WHERE pk = {P}",
                         (stamp, row[0]))
            return int(row[0]), False
        cols = ["public_id", *([parent[0]] if parent else []), *values, "last_update"]
        params = (public_id, *([parent[1]] if parent else []), *values.values(), stamp)
        marks = placeholders(len(cols))
        return self.dialect.insert_pk(
            cur, f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", params), True

    def delete(self, level: str, public_id: str) -> list[str] | None:
        """Delete a resource and everything below; empty parents go too (each logged as a
        ``Deleted`` change).

        Returns the file uuids to remove (after the commit), or None if there is no such resource.
        """
        table = TABLES[level]
        stamp = now_text()
        with self.transaction() as cur:
            row = self._one(cur, f"SELECT pk FROM {table} WHERE public_id = {P}", (public_id,))
            if row is None:
                return None
            pk = row[0]
            study = (study_summary.study_of_instance(self, cur, pk) if level == "instances"
                     else study_summary.study_of_series(self, cur, pk) if level == "series"
                     else None)
            files = self._delete_below(cur, level, pk, stamp)
            self._delete_empty_parents(cur, level, stamp)
            if study is not None:
                study_summary.refresh(self, cur, [study])
            return files

    def _delete_below(self, cur: Any, level: str, pk: int, stamp: str) -> list[str]:
        files: list[str] = []
        if level == "instances":
            got = self._one(cur, f"SELECT file_uuid FROM instances WHERE pk = {P}", (pk,))
            files.append(got[0])
        else:
            child = CHILD_LEVEL[level]
            self.execute(cur, f"SELECT pk FROM {TABLES[child]} WHERE {PARENT_FK[child]} = {P}",
                         (pk,))
            for (child_pk,) in cur.fetchall():
                files += self._delete_below(cur, child, child_pk, stamp)
        gone = self._one(cur, f"SELECT public_id FROM {TABLES[level]} WHERE pk = {P}", (pk,))
        self.execute(cur, f"DELETE FROM {TABLES[level]} WHERE pk = {P}", (pk,))
        if gone is not None:
            self._change(cur, "Deleted", level, gone[0], stamp)
        return files

    def _delete_empty_parents(self, cur: Any, level: str, stamp: str) -> None:
        """Walk up: remove parents left without children."""
        chain = {"instances": ("series", "series_pk"), "series": ("studies", "study_pk"),
                 "studies": ("patients", "patient_pk")}
        while level in chain:
            parent, fk = chain[level]
            self.execute(cur, f"SELECT pk, public_id FROM {parent} WHERE NOT EXISTS "
                              f"(SELECT 1 FROM {TABLES[level]} c WHERE c.{fk} = {parent}.pk)")
            for pk, public_id in cur.fetchall():
                self.execute(cur, f"DELETE FROM {parent} WHERE pk = {P}", (pk,))
                self._change(cur, "Deleted", parent, public_id, stamp)
            level = parent

    # -- Orthanc tools ---------------------------------------------------------------------
    def main_tags_of_level(self, level: str, exact: dict[str, str] | None = None
                           ) -> list[tuple[str, dict[str, str]]]:
        """``(public_id, main tags)`` of every resource of ``level`` in arrival order, the tags
        of its ancestors merged in (``/tools/find`` matches on them). ``exact``
        (``{"PatientID"|"StudyInstanceUID"|"SeriesInstanceUID"|"SOPInstanceUID": value}``)
        restricts them by the index columns (the identifiers of levels below are ignored)."""
        joins = {
            "patients": ("p.public_id, p.main_tags", "patients p", "p.pk"),
            "studies": ("st.public_id, st.main_tags, st.patient_main_tags",
                        "studies st", "st.pk"),
            "series": ("se.public_id, se.main_tags, st.main_tags, st.patient_main_tags",
                       "series se JOIN studies st ON se.study_pk = st.pk", "se.pk"),
            "instances": ("i.public_id, i.main_tags, se.main_tags, st.main_tags,"
                          " st.patient_main_tags",
                          "instances i JOIN series se ON i.series_pk = se.pk"
                          " JOIN studies st ON se.study_pk = st.pk", "i.pk"),
        }
        columns, source, order = joins[level]
        where, params = [], []
        for keyword, value in (exact or {}).items():
            column = FIND_COLUMNS[level].get(keyword)
            if column is not None:
                where.append(f"{column} = {P}")
                params.append(value)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        out = []
        for row in self.fetch_all(f"SELECT {columns} FROM {source}{condition} ORDER BY {order}",
                               tuple(params)):
            tags: dict[str, str] = {}
            for text in reversed(row[1:]):  # ancestors first, the resource's own tags win
                tags.update(json.loads(text))
            out.append((row[0], tags))
        return out

    def first_instance_metadata(self, level: str, public_id: str) -> str | None:
        """The stored DICOM JSON of the first instance of a resource."""
        column = {"patients": "p", "studies": "st", "series": "se", "instances": "i"}[level]
        rows = self.fetch_all(f"SELECT i.metadata FROM {INSTANCE_JOIN}"
                           f" WHERE {column}.public_id = {P} ORDER BY i.pk LIMIT 1", (public_id,))
        return rows[0][0] if rows else None

    def lookup(self, identifier: str) -> list[dict[str, str]]:
        """Orthanc's ``/tools/lookup``: resources whose PatientID, StudyInstanceUID,
        SeriesInstanceUID or SOPInstanceUID is ``identifier``."""
        out = []
        for level, column in (("patients", "patient_id"), ("studies", "study_uid"),
                              ("series", "series_uid"), ("instances", "sop_uid")):
            for (public_id,) in self.fetch_all(
                    f"SELECT public_id FROM {TABLES[level]} WHERE {column} = {P} ORDER BY pk",
                    (identifier,)):
                out.append({"ID": public_id, "Path": f"/{level}/{public_id}",
                            "Type": LEVEL_TYPES[level]})
        return out

    # -- changes ---------------------------------------------------------------------------
    def changes(self, since: int = 0, limit: int = 100, last: bool = False) -> dict[str, Any]:
        """Orthanc's ``GET /changes`` document: changes after ``since`` (at most ``limit``),
        or only the last one."""
        if last:
            rows = self.fetch_all(f"SELECT {CHANGE_COLUMNS} FROM changes ORDER BY seq DESC LIMIT 1")
            done = True
        else:
            rows = self.fetch_all(f"SELECT {CHANGE_COLUMNS} FROM changes WHERE seq > {P}"
                               f" ORDER BY seq LIMIT {P}", (since, limit + 1))
            done = len(rows) <= limit
            rows = rows[:limit]
        out = [{"ChangeType": change_type, "Date": date, "ID": public_id,
                "Path": f"/{LEVEL_PATHS[resource_type]}/{public_id}",
                "ResourceType": resource_type, "Seq": seq}
               for seq, change_type, resource_type, public_id, date in rows]
        if out:
            last_seq = out[-1]["Seq"]
        else:
            last_seq = self.fetch_all("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0]
        return {"Changes": out, "Done": done, "Last": int(last_seq)}

    def clear_changes(self) -> None:
        """Orthanc's ``DELETE /changes`` (sequence numbers keep growing)."""
        with self.transaction() as cur:
            self.execute(cur, "DELETE FROM changes")

    # -- reads -----------------------------------------------------------------------------
    def resource(self, level: str, public_id: str) -> dict[str, Any] | None:
        """The Orthanc JSON description of a resource (``GET /{level}/{id}``)."""
        table = TABLES[level]
        extra = {"patients": "", "studies": ", patient_main_tags",
                 "series": "", "instances": ", file_size, file_uuid"}[level]
        rows = self.fetch_all(
            f"SELECT pk, main_tags, last_update{extra} FROM {table} WHERE public_id = {P}",
            (public_id,))
        if not rows:
            return None
        row = rows[0]
        pk = row[0]
        out: dict[str, Any] = {"ID": public_id, "Type": LEVEL_TYPES[level],
                               "MainDicomTags": json.loads(row[1])}
        if level != "instances":
            out["IsStable"] = True
            out["LastUpdate"] = row[2]
        if level in ("studies", "series", "instances"):
            parent_table = {"studies": "patients", "series": "studies",
                            "instances": "series"}[level]
            key = {"studies": "ParentPatient", "series": "ParentStudy",
                   "instances": "ParentSeries"}[level]
            parent = self.fetch_all(
                f"SELECT p.public_id FROM {parent_table} p JOIN {table} c"
                f" ON c.{PARENT_FK[level]} = p.pk WHERE c.pk = {P}", (pk,))
            out[key] = parent[0][0]
        if level != "instances":
            child = CHILD_LEVEL[level]
            key = {"patients": "Studies", "studies": "Series", "series": "Instances"}[level]
            if child == "instances":
                kids = self.fetch_all(
                    f"SELECT public_id FROM instances WHERE series_pk = {P}"
                    f" ORDER BY {self.dialect.int_sort('instance_number')}, public_id", (pk,))
            else:
                kids = self.fetch_all(
                    f"SELECT public_id FROM {TABLES[child]} WHERE {PARENT_FK[child]} = {P}"
                    " ORDER BY public_id", (pk,))
            out[key] = [k[0] for k in kids]
        if level == "studies":
            out["PatientMainDicomTags"] = json.loads(row[3])
        if level == "series":
            out["ExpectedNumberOfInstances"] = None
            out["Status"] = "Unknown"
        if level == "instances":
            out["FileSize"] = row[3]
            out["FileUuid"] = row[4]
            index = self.fetch_all(
                "SELECT COUNT(*) FROM instances o JOIN instances me ON o.series_pk = me.series_pk"
                f" WHERE me.pk = {P} AND {self.dialect.int_of('o.instance_number')} <"
                f" {self.dialect.int_of('me.instance_number')}", (pk,))
            out["IndexInSeries"] = (index[0][0] + 1) if out["MainDicomTags"].get(
                "InstanceNumber") else None
        return out

    def list_ids(self, level: str, limit: int = 0, since: int = 0) -> list[str]:
        """Orthanc identifiers of a level, in insertion order, with Orthanc's since/limit."""
        statement = f"SELECT public_id FROM {TABLES[level]} ORDER BY pk"
        params: tuple[Any, ...] = ()
        if limit:
            statement += f" LIMIT {P} OFFSET {P}"
            params = (limit, since)
        elif since:
            statement += " " + self.dialect.offset_only()
            params = (since,)
        return [r[0] for r in self.fetch_all(statement, params)]

    def instance(self, public_id: str) -> InstanceRow | None:
        rows = self.fetch_all(f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCE_JOIN}"
                           f" WHERE i.public_id = {P}", (public_id,))
        return _row_to_instance(rows[0]) if rows else None

    def instance_by_uid(self, sop_uid: str, study_uid: str | None = None,
                        series_uid: str | None = None) -> InstanceRow | None:
        statement = f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCE_JOIN} WHERE i.sop_uid = {P}"
        params: list[Any] = [sop_uid]
        if study_uid is not None:
            statement += f" AND st.study_uid = {P}"
            params.append(study_uid)
        if series_uid is not None:
            statement += f" AND se.series_uid = {P}"
            params.append(series_uid)
        rows = self.fetch_all(statement + " ORDER BY i.pk LIMIT 1", tuple(params))
        return _row_to_instance(rows[0]) if rows else None

    def instances_by_uids(self, study_uid: str, series_uid: str | None = None
                          ) -> list[InstanceRow]:
        statement = f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCE_JOIN} WHERE st.study_uid = {P}"
        params: list[Any] = [study_uid]
        if series_uid is not None:
            statement += f" AND se.series_uid = {P}"
            params.append(series_uid)
        statement += f" ORDER BY se.pk, {self.dialect.int_sort('i.instance_number')}, i.pk"
        return [_row_to_instance(r) for r in self.fetch_all(statement, tuple(params))]

    def instances_of(self, level: str, public_id: str) -> list[InstanceRow]:
        column = {"patients": "p", "studies": "st", "series": "se", "instances": "i"}[level]
        statement = (f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCE_JOIN}"
                     f" WHERE {column}.public_id = {P}"
                     f" ORDER BY st.pk, se.pk, {self.dialect.int_sort('i.instance_number')}, i.pk")
        return [_row_to_instance(r) for r in self.fetch_all(statement, (public_id,))]

    def file_uuids(self) -> set[str]:
        return {r[0] for r in self.fetch_all("SELECT file_uuid FROM instances")}

    def statistics(self) -> dict[str, int]:
        counts = {level: self.fetch_all(f"SELECT COUNT(*) FROM {TABLES[level]}")[0][0]
                  for level in TABLES}
        size = self.fetch_all("SELECT COALESCE(SUM(file_size), 0) FROM instances")[0][0]
        return {**counts, "size": int(size)}

    def instance_ids_with_file(self, file_uuid: str) -> list[str]:
        """Identifiers of the instances whose file is ``file_uuid`` (normally one)."""
        return [r[0] for r in self.fetch_all(
            f"SELECT public_id FROM instances WHERE file_uuid = {P}", (file_uuid,))]

    # -- QIDO-RS ---------------------------------------------------------------------------
    def search(self, level: str, query: Query, *, base_url: str, study_uid: str | None = None,
               series_uid: str | None = None, max_results: int = 0) -> SearchResult:
        """A QIDO-RS search (see :func:`dwdaemon.store.index.search.search`)."""
        return search.search(self, level, query, base_url=base_url, study_uid=study_uid,
                             series_uid=series_uid, max_results=max_results)

    def explain(self, level: str, query: Query, **kwargs: Any) -> list[str]:
        """The database's plan of a search's main statement (for tests and benchmarks)."""
        return search.explain(self, level, query, **kwargs)

    # -- jobs and remote servers -----------------------------------------------------------
    def save_job(self, row: tuple[Any, ...]) -> None:
        """Insert or replace a job (``row`` in ``jobs_sql.COLUMNS`` order)."""
        jobs_sql.save(self, row)

    def jobs(self) -> list[tuple[Any, ...]]:
        """Every job's row, oldest first."""
        return jobs_sql.load_all(self)

    def job(self, job_id: str) -> tuple[Any, ...] | None:
        """One job's row, or None."""
        return jobs_sql.load_one(self, job_id)

    def forget_old_jobs(self, keep: int) -> None:
        """Forget finished jobs beyond the ``keep`` most recent ones."""
        jobs_sql.delete_older(self, keep)

    def put_server(self, name: str, definition: str | None) -> None:
        """Store a remote server's JSON definition, or a tombstone (``None``)."""
        servers_sql.put(self, name, definition)

    def servers(self) -> list[tuple[str, str | None]]:
        """Every stored remote server: ``(name, definition or None)``."""
        return servers_sql.load_all(self)

    # -- properties ------------------------------------------------------------------------
    def get_property(self, name: str) -> str | None:
        rows = self.fetch_all(f"SELECT value FROM properties WHERE name = {P}", (name,))
        return rows[0][0] if rows else None

    def set_property(self, name: str, value: str | None) -> None:
        with self.transaction() as cur:
            self.execute(cur, f"DELETE FROM properties WHERE name = {P}", (name,))
            if value is not None:
                self.execute(cur, f"INSERT INTO properties (name, value) VALUES ({P}, {P})",
                             (name, value))
