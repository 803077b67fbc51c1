"""SQL of the persisted jobs table (run in the database thread pools, ``?`` placeholders)."""

from __future__ import annotations

from typing import Any

from dwdaemon.store.index import schema

JOBS_DDL = (
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
)

COLUMNS = ("id, type, state, progress, error, content, result, created, completed, seq,"
           " owner")

schema.register_ddl(*JOBS_DDL)


def ensure_tables(index: Any) -> None:
    """Create the table if the index was opened before this module was imported."""
    with index.transaction() as cur:
        for statement in JOBS_DDL:
            cur.execute(statement)


def save(index: Any, row: tuple[Any, ...]) -> None:
    """Insert or replace one job (``row`` in :data:`COLUMNS` order).

    One upsert statement (SQLite >= 3.24 and PostgreSQL spell it alike): atomic even when
    several daemons share the index.
    """
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
    with index.transaction() as cur:
        cur.execute(
            index.dialect_sql(f"INSERT INTO dw_jobs ({COLUMNS}) VALUES ({', '.join('?' * 11)})"
                       f" ON CONFLICT (id) DO UPDATE SET {updates}"),
            row,
        )


def load_all(index: Any) -> list[tuple[Any, ...]]:
    """Every job, oldest first."""
    return index.fetch_all(f"SELECT {COLUMNS} FROM dw_jobs ORDER BY seq")


def load_one(index: Any, job_id: str) -> tuple[Any, ...] | None:
    """One job's row (whichever daemon owns it), or None."""
    rows = index.fetch_all(f"SELECT {COLUMNS} FROM dw_jobs WHERE id = ?", (job_id,))
    return rows[0] if rows else None


def delete_older(index: Any, keep: int) -> None:
    """Forget finished jobs beyond the ``keep`` most recent ones."""
    with index.transaction() as cur:
        cur.execute(
            index.dialect_sql(
                "DELETE FROM dw_jobs WHERE state IN ('Success', 'Failure') AND seq NOT IN "
                "(SELECT seq FROM dw_jobs ORDER BY seq DESC LIMIT ?)"
            ),
            (keep,),
        )
