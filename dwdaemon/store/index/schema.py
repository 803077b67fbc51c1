"""The index schema (SQL shared by the SQLite and PostgreSQL back-ends).

One row per patient, study, series and instance, keyed by Orthanc identifier (``public_id``), with
typed columns for the attributes QIDO matches most, the Orthanc ``MainDicomTags`` as JSON text,
and per instance what ingest computed once: the DICOM JSON (``metadata``), the bulk-data locations
(``bulk``) and the frame layout (``frames``).
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1

TABLES = [
    """
    CREATE TABLE IF NOT EXISTS patients (
        pk INTEGER PRIMARY KEY {autoinc},
        public_id TEXT NOT NULL UNIQUE,
        patient_id TEXT NOT NULL,
        main_tags TEXT NOT NULL,
        last_update TEXT NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS studies (
        pk INTEGER PRIMARY KEY {autoinc},
        public_id TEXT NOT NULL UNIQUE,
        patient_pk INTEGER NOT NULL REFERENCES patients(pk),
        study_uid TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        patient_name TEXT,
        patient_birth_date TEXT,
        patient_sex TEXT,
        study_date TEXT,
        study_time TEXT,
        accession_number TEXT,
        study_id TEXT,
        study_description TEXT,
        referring_physician_name TEXT,
        patient_name_ci TEXT,
        patient_name_groups TEXT,
        patient_name_words TEXT,
        main_tags TEXT NOT NULL,
        patient_main_tags TEXT NOT NULL,
        last_update TEXT NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS series (
        pk INTEGER PRIMARY KEY {autoinc},
        public_id TEXT NOT NULL UNIQUE,
        study_pk INTEGER NOT NULL REFERENCES studies(pk),
        series_uid TEXT NOT NULL,
        modality TEXT,
        series_number TEXT,
        series_description TEXT,
        series_date TEXT,
        series_time TEXT,
        main_tags TEXT NOT NULL,
        last_update TEXT NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS instances (
        pk INTEGER PRIMARY KEY {autoinc},
        public_id TEXT NOT NULL UNIQUE,
        series_pk INTEGER NOT NULL REFERENCES series(pk),
        sop_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        instance_number TEXT,
        transfer_syntax TEXT NOT NULL,
        number_of_frames INTEGER NOT NULL,
        rows_ INTEGER,
        columns_ INTEGER,
        file_uuid TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        file_md5 TEXT NOT NULL,
        main_tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        bulk TEXT NOT NULL,
        frames TEXT NOT NULL,
        received_at TEXT NOT NULL,
        last_update TEXT NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        change_type TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        public_id TEXT NOT NULL,
        date TEXT NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS properties (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
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
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        progress INTEGER NOT NULL,
        error TEXT,
        content TEXT NOT NULL,
        result TEXT NOT NULL,
        created TEXT NOT NULL,
        completed TEXT,
        seq INTEGER NOT NULL,
        owner TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS dw_jobs_seq ON dw_jobs(seq)",
]

#: The DICOMweb servers added at run time (``PUT {Root}servers/{name}``, see ``servers_sql``).
SERVERS = [
    """
    CREATE TABLE IF NOT EXISTS dw_servers (
        name TEXT PRIMARY KEY,
        definition TEXT
    )""",
]


def ddl(autoinc: str = "", dialect: str = "sqlite") -> list[str]:
    """All statements creating the schema, for a back-end's autoincrement spelling.

    ``dialect="postgresql"`` gives the PostgreSQL form: ``BIGINT GENERATED BY DEFAULT AS
    IDENTITY`` keys, 64-bit integers, and byte-wise (``"C"``) collation on text so that ordering,
    ranges and ``LIKE`` prefixes behave as in SQLite and use the indexes.
    """
    statements = [t.format(autoinc=autoinc) for t in TABLES] + INDEXES + JOBS + SERVERS
    if dialect == "postgresql":
        statements = [_postgresql(s) for s in statements]
    return statements


def _postgresql(statement: str) -> str:
    statement = statement.replace(" AUTOINCREMENT", "")
    statement = statement.replace("INTEGER PRIMARY KEY",
                                  "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    statement = re.sub(r"\bINTEGER\b", "BIGINT", statement)
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', statement)
