"""PostgreSQL test helpers: find a server, give each test its own schema.

The server is 127.0.0.1:5432 (``DWD_TEST_PGPORT`` overrides the port), database ``test``
(``DWD_TEST_PGDATABASE`` overrides it); the user is ``PGUSER`` when set, else the current user,
else ``postgres``. When none of them can connect, the tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from twisted.trial.unittest import SkipTest

from dwdaemon.config import PostgresConfig
from dwdaemon.store.index.postgres import PostgresIndex
from tests.support import Daemon, make_config

HOST = "127.0.0.1"
PORT = int(os.environ.get("DWD_TEST_PGPORT", "5432"))
_found: list[tuple[str | None, str]] = []


def _users() -> list[str]:
    users = [os.environ.get("PGUSER", "")]
    with contextlib.suppress(Exception):  # no user name in this environment
        users.append(getpass.getuser())
    users.append("postgres")
    return list(dict.fromkeys(u for u in users if u))


def server() -> tuple[str, str]:
    """``(user, database)`` that connect, or SkipTest with the reason."""
    if not _found:
        database = os.environ.get("DWD_TEST_PGDATABASE", "test")
        errors = []
        for user in _users():
            try:
                with psycopg.connect(host=HOST, port=PORT, dbname=database, user=user,
                                     connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                _found.append((user, database))
                break
            except psycopg.Error as exc:
                errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
        else:
            _found.append((None, f"no PostgreSQL at {HOST}:{PORT}/{database} "
                                 f"({'; '.join(errors)})"))
    user, detail = _found[0]
    if user is None:
        raise SkipTest(detail)
    return user, detail


def dsn() -> str:
    user, database = server()
    return psycopg.conninfo.make_conninfo(host=HOST, port=PORT, dbname=database, user=user)


def new_schema(case: Any) -> str:
    """A fresh schema for this test, dropped at clean-up (add this before anything using it)."""
    name = "dwd_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(name)))

    case.addCleanup(drop)
    return name


def uri(schema: str) -> str:
    """A ``ConnectionUri`` working in ``schema`` (libpq ``options=-csearch_path=...``)."""
    user, database = server()
    options = quote(f"-csearch_path={schema}", safe="")
    return f"postgresql://{quote(user, safe='')}@{HOST}:{PORT}/{database}?options={options}"


def postgres_config(schema: str) -> PostgresConfig:
    return PostgresConfig(enable_index=True, connection_uri=uri(schema))


def open_index(case: Any, schema: str) -> PostgresIndex:
    """An opened index in ``schema``, closed at clean-up."""
    index = PostgresIndex(dsn(), schema_name=schema)
    index.open()
    case.addCleanup(index.close)
    return index


def start_pg_daemon(case: Any, schema: str, directory: str, **overrides: Any) -> Daemon:
    """A daemon on a loopback port whose index is ``schema`` and whose storage is under
    ``directory`` (two daemons given the same ones share the store)."""
    os.makedirs(directory, exist_ok=True)
    config = make_config(directory, **overrides)
    config = replace(config, postgresql=postgres_config(schema))
    daemon = Daemon(config)
    case.addCleanup(daemon.stop)
    return daemon
