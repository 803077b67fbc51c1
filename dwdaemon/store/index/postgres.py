"""The shared index: PostgreSQL (psycopg 3), for several daemons serving one store.

Every daemon sharing the database also shares the storage directory. The SQL is the one of
:class:`~dwdaemon.store.index.sql.SqlIndex`, its statement templates composed with
:mod:`psycopg.sql` by :class:`~dwdaemon.store.index.dialect.PostgresDialect`. Writes that race
with another daemon (the same patient, study, series or instance indexed at once; a delete
emptying a parent that another daemon is filling) fail with a unique, foreign-key, deadlock or
serialization error and are retried as a whole transaction: the retry sees the other daemon's
committed rows.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.types.string import StrDumperUnknown

from dwdaemon.store.index import schema, study_summary
from dwdaemon.store.index.base import AddResult, InstanceRecord
from dwdaemon.store.index.dialect import POSTGRESQL
from dwdaemon.store.index.sql import DUPLICATE_SOPS, SqlIndex, warn_duplicate_sops

T = TypeVar("T")

#: Errors after which a write transaction is retried (another daemon won a race).
RETRYABLE = (errors.UniqueViolation, errors.ForeignKeyViolation, errors.DeadlockDetected,
             errors.SerializationFailure)

#: Lenient integer/real conversions with SQLite's ``CAST`` semantics (leading number, else 0;
#: PostgreSQL's own ``CAST`` raises on text such as ``""`` or ``"1.5"``).
FUNCTIONS = (
    r"""CREATE OR REPLACE FUNCTION dw_int(t text) RETURNS bigint LANGUAGE sql IMMUTABLE
    PARALLEL SAFE AS $$ SELECT CASE WHEN t IS NULL THEN NULL ELSE
    COALESCE(substring(t FROM '^\s*([-+]?[0-9]{1,18})')::bigint, 0) END $$""",
    r"""CREATE OR REPLACE FUNCTION dw_real(t text) RETURNS double precision LANGUAGE sql
    IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN t IS NULL THEN NULL ELSE
    COALESCE(substring(t FROM
    '^\s*([-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?)')::double precision, 0) END $$""",
)

#: Set by dwdaemon on each of its connections. psycopg prepares a statement server-side after
#: its fifth run; PostgreSQL may then switch to a *generic* plan, chosen without the parameter
#: values: ``patient_name_ci LIKE $1`` cannot use the name index without knowing the pattern,
#: and after a few broad searches a selective one scans the table. ``force_custom_plan`` plans
#: every execution with its values (the statement is still parsed only once) (issue 16).
SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan"}

#: PostgreSQL text cannot hold NUL: it is stored (and searched) as this noncharacter instead.
NUL_STANDIN = "\uffff"


class NulSafeStrDumper(StrDumperUnknown):
    """Python ``str`` parameters with NUL replaced by :data:`NUL_STANDIN`."""

    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", NUL_STANDIN) if "\x00" in obj else obj)


def conninfo(host: str = "", port: int = 5432, database: str = "", username: str = "",
             password: str | None = None, uri: str | None = None) -> str:
    """A libpq connection string from Orthanc-style settings (``uri`` wins when given)."""
    if uri:
        return uri
    parts: dict[str, Any] = {"port": port}
    if host:
        parts["host"] = host
    if database:
        parts["dbname"] = database
    if username:
        parts["user"] = username
    if password:
        parts["password"] = password
    return make_conninfo(**parts)


class PostgresIndex(SqlIndex):
    """PostgreSQL back-end: one autocommit connection per thread, explicit write transactions.

    Parameters
    ----------
    dsn : str
        libpq connection string or ``postgresql://`` URI.
    schema_name : str or None
        A schema to create (if needed) and work in (``search_path``); None uses the
        connection's default (``public`` normally).
    retries : int
        Attempts of a write transaction that lost a race with another daemon.
    """

    backend_name = "PostgreSQL"
    dialect = POSTGRESQL

    def __init__(self, dsn: str, schema_name: str | None = None, retries: int = 20) -> None:
        self.dsn = dsn
        self.schema_name = schema_name
        self.retries = retries
        #: Write transactions retried after losing a race with another daemon (for tests/logs).
        self.races_lost = 0
        self._local = threading.local()
        self._all: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        conn.adapters.register_dumper(str, NulSafeStrDumper)
        for name, value in SESSION_SETTINGS.items():
            conn.execute(sql.SQL("SET {} TO {}").format(sql.Identifier(name),
                                                        sql.Literal(value)))
        if self.schema_name:
            conn.execute(sql.SQL("SET search_path TO {}").format(
                sql.Identifier(self.schema_name)))
        return conn

    def connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all = [c for c in self._all if not c.closed]
                self._all.append(conn)
        return conn

    def open(self) -> None:
        """Create the schema if needed (serialised between daemons by an advisory lock)."""
        if self.schema_name:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema_name)))
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242, hashtext(current_schema()))")
            for statement in FUNCTIONS:
                cur.execute(statement)
            for statement in schema.ddl(self.dialect):
                cur.execute(statement)
            try:
                with conn.transaction():
                    cur.execute(schema.UNIQUE_SOP)
            except errors.UniqueViolation:
                cur.execute(DUPLICATE_SOPS)
                warn_duplicate_sops(cur.fetchall())
            self.execute(cur, self.dialect.insert_missing("properties", ("name", "value"), "name"),
                         ("schema_version", str(schema.SCHEMA_VERSION)))
            self.migrate(cur)
        study_summary.fill_missing(self)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(psycopg.Error):  # already gone
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- reads -----------------------------------------------------------------------------
    def fetch_all(self, template: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return super().fetch_all(template, params)
        except psycopg.OperationalError:
            if not self._conn_lost():
                raise
            return super().fetch_all(template, params)  # once more, on a new connection

    def _conn_lost(self) -> bool:
        conn = getattr(self._local, "conn", None)
        return conn is None or conn.closed or conn.broken

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction (a savepoint when one is already open)."""
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def _retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write, again when it lost a race with another daemon."""
        for attempt in range(self.retries):
            try:
                return fn(*args)
            except RETRYABLE:
                self.races_lost += 1
                if attempt + 1 >= self.retries:
                    raise
            except psycopg.OperationalError:
                if attempt + 1 >= self.retries or not self._conn_lost():
                    raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- writes (retried) --------------------------------------------------------------------
    def add_instance(self, record: InstanceRecord, overwrite: bool) -> AddResult:
        return self._retrying(super().add_instance, record, overwrite)

    def delete(self, level: str, public_id: str) -> list[str] | None:
        return self._retrying(super().delete, level, public_id)

    def set_property(self, name: str, value: str | None) -> None:
        self._retrying(super().set_property, name, value)
