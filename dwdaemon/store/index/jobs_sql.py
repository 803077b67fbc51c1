"""SQL of the persisted jobs table (its DDL is :data:`~dwdaemon.store.index.schema.JOBS`).

Blocking, run in the database thread pools; reached through the index's job methods
(:meth:`~dwdaemon.store.index.sql.SqlIndex.save_job` and others).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dwdaemon.store.index.dialect import P

if TYPE_CHECKING:
    from dwdaemon.store.index.sql import SqlIndex

COLUMNS = ("id, type, state, progress, error, content, result, created, completed, seq,"
           " owner")


def save(index: SqlIndex, row: tuple[Any, ...]) -> None:
    """Insert or replace one job (``row`` in :data:`COLUMNS` order).

    One upsert statement (SQLite >= 3.24 and PostgreSQL spell it alike): atomic even when
    several daemons share the index.
    """
    with index.transaction() as cur:
        index.execute(cur, index.dialect.upsert("dw_jobs", tuple(COLUMNS.split(", ")), "id"),
                      row)


def load_all(index: SqlIndex) -> list[tuple[Any, ...]]:
    """Every job, oldest first."""
    return index.fetch_all(f"SELECT {COLUMNS} FROM dw_jobs ORDER BY seq")


def load_one(index: SqlIndex, job_id: str) -> tuple[Any, ...] | None:
    """One job's row (whichever daemon owns it), or None."""
    rows = index.fetch_all(f"SELECT {COLUMNS} FROM dw_jobs WHERE id = {P}", (job_id,))
    return rows[0] if rows else None


def delete_older(index: SqlIndex, keep: int) -> None:
    """Forget finished jobs beyond the ``keep`` most recent ones."""
    with index.transaction() as cur:
        index.execute(cur, "DELETE FROM dw_jobs WHERE state IN ('Success', 'Failure') AND seq"
                           f" NOT IN (SELECT seq FROM dw_jobs ORDER BY seq DESC LIMIT {P})",
                      (keep,))
