"""The SQL dialects of the index back ends: one object per back end owns every spelling that
differs between SQLite and PostgreSQL.

Statements are written once, as dialect-neutral templates in which ``{p}`` stands for one
parameter; every other difference (lenient numeric casts, NULL ordering, "no limit", wildcard
matching, insert-returning, upserts, column types) is asked of the dialect while the template is
written. :meth:`Dialect.statement` then builds the executable statement with the driver's own
composition -- ``?`` marks in a plain string for :mod:`sqlite3`, a :class:`psycopg.sql.Composed`
of :class:`~psycopg.sql.SQL` and :class:`~psycopg.sql.Placeholder` parts for psycopg (rendered
into one :class:`~psycopg.sql.SQL`) -- once per template (cached). Nothing rewrites the text of
a finished statement. Templates hold no literal ``%`` nor braces other than ``{p}`` (values
such as ``LIKE`` patterns are parameters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from psycopg import sql

#: A parameter in a statement template.
P = "{p}"
#: Built statements kept per dialect (templates vary with the length of ``IN`` lists; past
#: this many the cache starts afresh).
CACHE_SIZE = 4096


def placeholders(count: int) -> str:
    """``count`` parameters, comma-separated (for ``IN (...)`` and ``VALUES (...)``)."""
    return ", ".join([P] * count)


def glob_escape(pattern: str) -> str:
    """A DICOM wildcard pattern as a SQLite ``GLOB`` pattern (``[`` made literal)."""
    return pattern.replace("[", "[[]")


def like_escape(pattern: str) -> str:
    """A DICOM wildcard pattern as a ``LIKE ... ESCAPE '\\'`` pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


class Dialect(ABC):
    """What differs between the SQL of the back ends (see the module docstring)."""

    name: ClassVar[str]
    #: Column types of the schema templates (:mod:`~dwdaemon.store.index.schema`).
    types: ClassVar[dict[str, str]]

    def __init__(self) -> None:
        #: Built statements by template (see :data:`CACHE_SIZE`).
        self.built: dict[str, Any] = {}

    def statement(self, template: str) -> Any:
        """The executable statement of a template (built once, then cached)."""
        built = self.built.get(template)
        if built is None:
            if "?" in template:  # a statement written for one driver, not a template
                raise ValueError(f"write {P} for a parameter, not ?: {template[:200]}")
            if len(self.built) >= CACHE_SIZE:
                self.built.clear()
            built = self.built[template] = self.build(template)
        return built

    @abstractmethod
    def build(self, template: str) -> Any:
        """Build the executable statement of a template with the driver's means."""
        raise NotImplementedError

    @abstractmethod
    def explain(self, statement: Any, analyze: bool = False) -> Any:
        """The statement asking the database's plan of a built ``statement`` (``analyze``:
        run it and report timings, where the database can)."""
        raise NotImplementedError

    # -- expressions ------------------------------------------------------------------------
    @abstractmethod
    def int_of(self, expr: str) -> str:
        """``expr`` (text) as an integer with SQLite's lenient ``CAST`` (leading number, else
        0; NULL stays NULL)."""
        raise NotImplementedError

    @abstractmethod
    def real_of(self, expr: str) -> str:
        """``expr`` (text) as a real number, leniently (see :meth:`int_of`)."""
        raise NotImplementedError

    @abstractmethod
    def int_sort(self, expr: str, descending: bool = False) -> str:
        """An ``ORDER BY`` term on :meth:`int_of` ``expr`` with NULL first when ascending (last
        when descending), as SQLite sorts."""
        raise NotImplementedError

    @abstractmethod
    def offset_only(self) -> str:
        """``OFFSET`` one parameter, without a limit."""
        raise NotImplementedError

    # -- wildcard matching (QIDO) -----------------------------------------------------------
    @abstractmethod
    def match(self, expr: str) -> str:
        """Case-sensitive DICOM wildcard matching of ``expr`` against one pattern parameter."""
        raise NotImplementedError

    @abstractmethod
    def pattern(self, wildcard: str, prefix: str = "", suffix: str = "") -> str:
        """The parameter for a DICOM wildcard, between literal ``prefix`` and ``suffix``
        (``*`` in them means "anything")."""
        raise NotImplementedError

    # -- writes -----------------------------------------------------------------------------
    @abstractmethod
    def insert_pk(self, cur: Any, template: str, params: tuple[Any, ...]) -> int:
        """Run an ``INSERT`` template of one row; the new row's ``pk``."""
        raise NotImplementedError

    def upsert(self, table: str, columns: tuple[str, ...], key: str) -> str:
        """Template inserting one row, or updating the other columns of the row with the same
        ``key`` (SQLite >= 3.24 and PostgreSQL spell it alike: atomic between daemons)."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(len(columns))})"
                f" ON CONFLICT ({key}) DO UPDATE SET {updates}")

    def insert_missing(self, table: str, columns: tuple[str, ...], key: str) -> str:
        """Template inserting one row unless a row has the same ``key``."""
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(len(columns))})"
                f" ON CONFLICT ({key}) DO NOTHING")


class SqliteDialect(Dialect):
    """SQLite (:mod:`sqlite3`): ``?`` marks, ``GLOB`` wildcards (its indexes serve prefixes)."""

    name = "SQLite"
    types: ClassVar[dict[str, str]] = {
        "pk": "INTEGER PRIMARY KEY", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "int": "INTEGER", "text": "TEXT",
    }

    def build(self, template: str) -> str:
        return template.format(p="?")

    def explain(self, statement: str, analyze: bool = False) -> str:
        return "EXPLAIN QUERY PLAN " + statement

    def int_of(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def real_of(self, expr: str) -> str:
        return f"CAST({expr} AS REAL)"

    def int_sort(self, expr: str, descending: bool = False) -> str:
        return self.int_of(expr) + (" DESC" if descending else "")

    def offset_only(self) -> str:
        return f"LIMIT -1 OFFSET {P}"

    def match(self, expr: str) -> str:
        return f"{expr} GLOB {P}"

    def pattern(self, wildcard: str, prefix: str = "", suffix: str = "") -> str:
        return prefix + glob_escape(wildcard) + suffix

    def insert_pk(self, cur: Any, template: str, params: tuple[Any, ...]) -> int:
        cur.execute(self.statement(template), params)
        return int(cur.lastrowid)


class PostgresDialect(Dialect):
    """PostgreSQL (psycopg 3): statements composed with :mod:`psycopg.sql`, lenient casts by
    the ``dw_int``/``dw_real`` functions, ``LIKE`` wildcards on ``"C"``-collated columns (its
    btree indexes serve prefixes of that), byte-wise text and 64-bit identity keys."""

    name = "PostgreSQL"
    types: ClassVar[dict[str, str]] = {
        "pk": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "int": "BIGINT", "text": 'TEXT COLLATE "C"',
    }

    def compose(self, template: str) -> sql.Composed:
        """A template composed with :mod:`psycopg.sql` (each ``{p}`` a
        :class:`~psycopg.sql.Placeholder`)."""
        return sql.SQL(template).format(p=sql.Placeholder())

    def build(self, template: str) -> sql.SQL:
        """The composition rendered once: psycopg then sends it as is (rendering a
        ``Composed`` at every execution costs about 8 us, an ``SQL`` under 1 us)."""
        return sql.SQL(self.compose(template).as_string(None))

    def explain(self, statement: sql.SQL, analyze: bool = False) -> sql.Composed:
        return sql.SQL("EXPLAIN ANALYZE " if analyze else "EXPLAIN ") + statement

    def int_of(self, expr: str) -> str:
        return f"dw_int({expr})"

    def real_of(self, expr: str) -> str:
        return f"dw_real({expr})"

    def int_sort(self, expr: str, descending: bool = False) -> str:
        return self.int_of(expr) + (" DESC NULLS LAST" if descending else " NULLS FIRST")

    def offset_only(self) -> str:
        return f"OFFSET {P}"

    def match(self, expr: str) -> str:
        return f"{expr} LIKE {P} ESCAPE '\\'"

    def pattern(self, wildcard: str, prefix: str = "", suffix: str = "") -> str:
        return prefix.replace("*", "%") + like_escape(wildcard) + suffix.replace("*", "%")

    def insert_pk(self, cur: Any, template: str, params: tuple[Any, ...]) -> int:
        cur.execute(self.statement(template + " RETURNING pk"), params)
        return int(cur.fetchone()[0])


SQLITE = SqliteDialect()
POSTGRESQL = PostgresDialect()
