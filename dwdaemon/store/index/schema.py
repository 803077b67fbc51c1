"""The index schema (SQL shared by the SQLite and PostgreSQL back-ends; column types are
``{int}``/``{text}``/``{pk}``/``{serial}``, given by the dialect).

One row per patient, study, series and instance, keyed by Orthanc identifier (``public_id``), with
typed columns for the attributes QIDO matches most, the Orthanc ``MainDicomTags`` as JSON text,
and per instance what ingest computed once: the DICOM JSON (``metadata``), the bulk-data locations
(``bulk``) and the frame layout (``frames``).
"""

from __future__ import annotations

from dwdaemon.store.index.dialect import SQLITE, Dialect

SCHEMA_VERSION = 2

#: Columns added after version 1 (``ALTER TABLE ... ADD COLUMN`` on an older index): the
#: per-study summary of :mod:`~dwdaemon.store.index.study_summary` (NULL until computed).
ADDED_COLUMNS = {
    "studies": [("series_count", "{int}"), ("instance_count", "{int}"), ("modalities", "{text}"),
                ("sop_classes", "{text}"), ("answer_json", "{text}")],
}

TABLES = [
    """
    CREATE TABLE IF NOT EXISTS patients (
        pk {pk},
        public_id {text} NOT NULL UNIQUE,
        patient_id {text} NOT NULL,
        main_tags {text} NOT NULL,
        last_update {text} NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS studies (
        pk {pk},
        public_id {text} NOT NULL UNIQUE,
        patient_pk {int} NOT NULL REFERENCES patients(pk),
        study_uid {text} NOT NULL,
        patient_id {text} NOT NULL,
        patient_name {text},
        patient_birth_date {text},
        patient_sex {text},
        study_date {text},
        study_time {text},
        accession_number {text},
        study_id {text},
        study_description {text},
        referring_physician_name {text},
        patient_name_ci {text},
        patient_name_groups {text},
        patient_name_words {text},
        main_tags {text} NOT NULL,
        patient_main_tags {text} NOT NULL,
        last_update {text} NOT NULL,
        series_count {int},
        instance_count {int},
        modalities {text},
        sop_classes {text},
        answer_json {text}
    )""",
    """
    CREATE TABLE IF NOT EXISTS series (
        pk {pk},
        public_id {text} NOT NULL UNIQUE,
        study_pk {int} NOT NULL REFERENCES studies(pk),
        series_uid {text} NOT NULL,
        modality {text},
        series_number {text},
        series_description {text},
        series_date {text},
        series_time {text},
        main_tags {text} NOT NULL,
        last_update {text} NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS instances (
        pk {pk},
        public_id {text} NOT NULL UNIQUE,
        series_pk {int} NOT NULL REFERENCES series(pk),
        sop_uid {text} NOT NULL,
        sop_class_uid {text} NOT NULL,
        instance_number {text},
        transfer_syntax {text} NOT NULL,
        number_of_frames {int} NOT NULL,
        rows_ {int},
        columns_ {int},
        file_uuid {text} NOT NULL,
        file_size {int} NOT NULL,
        file_md5 {text} NOT NULL,
        main_tags {text} NOT NULL,
        metadata {text} NOT NULL,
        bulk {text} NOT NULL,
        frames {text} NOT NULL,
        received_at {text} NOT NULL,
        last_update {text} NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS changes (
        seq {serial},
        change_type {text} NOT NULL,
        resource_type {text} NOT NULL,
        public_id {text} NOT NULL,
        date {text} NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS properties (
        name {text} PRIMARY KEY,
        value {text} NOT NULL
    )""",
]

INDEXES = [
    "CREATE INDEX IF NOT EXISTS patients_patient_id ON patients(patient_id)",
    "CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_pk)",
    "CREATE INDEX IF NOT EXISTS studies_uid ON studies(study_uid)",
    "CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date)",
    "CREATE INDEX IF NOT EXISTS studies_patient_name ON studies(patient_name)",
    "CREATE INDEX IF NOT EXISTS studies_patient_name_ci ON studies(patient_name_ci)",
    "CREATE INDEX IF NOT EXISTS studies_patient_name_groups ON studies(patient_name_groups)"
    " WHERE patient_name_groups IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS studies_patient_id ON studies(patient_id)",
    "CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number)",
    "CREATE INDEX IF NOT EXISTS series_study ON series(study_pk)",
    "CREATE INDEX IF NOT EXISTS series_uid ON series(series_uid)",
    "CREATE INDEX IF NOT EXISTS series_modality ON series(modality, study_pk)",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(series_pk)",
    "CREATE INDEX IF NOT EXISTS instances_series_class ON instances(series_pk, sop_class_uid)",
    "CREATE INDEX IF NOT EXISTS instances_uid ON instances(sop_uid)",
    "CREATE INDEX IF NOT EXISTS instances_file ON instances(file_uuid)",
]

#: One SOP Instance UID, one instance. Created apart from :data:`INDEXES`: an index written
#: before this rule may hold duplicates, and then it cannot be created (see
#: :meth:`~dwdaemon.store.index.sql.SqlIndex.ensure_unique_sop`).
UNIQUE_SOP = "CREATE UNIQUE INDEX IF NOT EXISTS instances_sop_unique ON instances(sop_uid)"

#: The jobs (``/jobs``) persisted by :class:`~dwdaemon.jobs.JobEngine` (see ``jobs_sql``).
JOBS = [
    """
    CREATE TABLE IF NOT EXISTS dw_jobs (
        id {text} PRIMARY KEY,
        type {text} NOT NULL,
        state {text} NOT NULL,
        progress {int} NOT NULL,
        error {text},
        content {text} NOT NULL,
        result {text} NOT NULL,
        created {text} NOT NULL,
        completed {text},
        seq {int} NOT NULL,
        owner {text} NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS dw_jobs_seq ON dw_jobs(seq)",
]

#: The DICOMweb servers added at run time (``PUT {Root}servers/{name}``, see ``servers_sql``).
SERVERS = [
    """
    CREATE TABLE IF NOT EXISTS dw_servers (
        name {text} PRIMARY KEY,
        definition {text}
    )""",
]


def ddl(dialect: Dialect = SQLITE) -> list[str]:
    """All statements creating the schema, with the column types of ``dialect``.

    PostgreSQL's are ``BIGINT GENERATED BY DEFAULT AS IDENTITY`` keys, 64-bit integers, and
    byte-wise (``"C"``) collation on text so that ordering, ranges and ``LIKE`` prefixes behave
    as in SQLite and use the indexes (see :class:`~dwdaemon.store.index.dialect.Dialect`).
    """
    return [s.format(**dialect.types) for s in TABLES + INDEXES + JOBS + SERVERS]


def migrations(existing: dict[str, set[str]], dialect: Dialect = SQLITE) -> list[str]:
    """``ALTER TABLE`` statements adding :data:`ADDED_COLUMNS` missing from ``existing``
    (table -> its column names)."""
    return [f"ALTER TABLE {table} ADD COLUMN {name} {kind.format(**dialect.types)}"
            for table, columns in ADDED_COLUMNS.items()
            for name, kind in columns if name not in existing.get(table, set())]
