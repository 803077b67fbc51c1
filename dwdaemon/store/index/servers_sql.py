"""SQL of the DICOMweb servers added at run time (``PUT {Root}servers/{name}``).

A row holds the server's JSON definition (as accepted by ``config.parse_server``,
secrets included, as Orthanc keeps them in its database), or NULL for a server of
the configuration file that was deleted at run time (a tombstone, so that the
deletion survives a restart too).
"""

from __future__ import annotations

from typing import Any

from dwdaemon.store.index import schema

SERVERS_DDL = (
    """
    CREATE TABLE IF NOT EXISTS dw_servers (
        name TEXT PRIMARY KEY,
        definition TEXT
    )""",
)

schema.register_ddl(*SERVERS_DDL)


def ensure_tables(index: Any) -> None:
    """Create the table if the index was opened before this module was imported."""
    with index.transaction() as cur:
        for statement in SERVERS_DDL:
            cur.execute(statement)


def put(index: Any, name: str, definition: str | None) -> None:
    """Store a definition (JSON text) or a tombstone (``None``)."""
    with index.transaction() as cur:  # one upsert: atomic when several daemons share the index
        cur.execute(
            index.dialect_sql("INSERT INTO dw_servers (name, definition) VALUES (?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET definition = excluded.definition"),
            (name, definition),
        )


def load_all(index: Any) -> list[tuple[str, str | None]]:
    """Every stored row: ``(name, definition or None)``."""
    return [(r[0], r[1]) for r in index.fetch_all("SELECT name, definition FROM dw_servers")]
