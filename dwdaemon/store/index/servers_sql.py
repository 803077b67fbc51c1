"""SQL of the DICOMweb servers added at run time (``PUT {Root}servers/{name}``).

A row holds the server's JSON definition (as accepted by ``config.parse_server``,
secrets included, as Orthanc keeps them in its database), or NULL for a server of
the configuration file that was deleted at run time (a tombstone, so that the
deletion survives a restart too). The DDL is :data:`~dwdaemon.store.index.schema.SERVERS`;
callers use the index's :meth:`~dwdaemon.store.index.sql.SqlIndex.put_server` and
:meth:`~dwdaemon.store.index.sql.SqlIndex.servers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dwdaemon.store.index.sql import SqlIndex


def put(index: SqlIndex, name: str, definition: str | None) -> None:
    """Store a definition (JSON text) or a tombstone (``None``)."""
    with index.transaction() as cur:  # one upsert: atomic when several daemons share the index
        index.execute(cur, index.dialect.upsert("dw_servers", ("name", "definition"), "name"),
                      (name, definition))


def load_all(index: SqlIndex) -> list[tuple[str, str | None]]:
    """Every stored row: ``(name, definition or None)``."""
    return [(r[0], r[1]) for r in index.fetch_all("SELECT name, definition FROM dw_servers")]
