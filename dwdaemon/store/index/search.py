"""QIDO-RS searches against the SQL index (blocking: run in the database thread pool).

A parsed :class:`~dwdaemon.dicom.matching.Query` becomes one SQL statement over the typed
columns (``studies``/``series``/``instances``), ordered by primary key:

- criteria on indexed columns become SQL conditions.  Conditions that SQL decides exactly
  (equality, UID lists, ``GLOB`` wildcards, DA/TM/DT ranges, ``ModalitiesInStudy``) need nothing
  more; when every criterion is exact, ``LIMIT``/``OFFSET`` are pushed into SQL;
- ``PatientName`` uses the folded columns (``patient_name_ci``, ``patient_name_groups``,
  ``patient_name_words``) as an indexed *pre-filter*, confirmed in Python;
- every other criterion (attributes outside the columns, sequences, case-insensitive text,
  computed counts) is evaluated in Python on the stored DICOM JSON of a representative instance
  (the instance itself at the instance level; the first instance of the series or study
  otherwise) merged with the computed attributes.

Criteria on a column of a lower level than the one queried match relationally (a study matches
``Modality=CT`` when one of its series does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from dwdaemon.dicom import qido_model
from dwdaemon.dicom.jsonmodel import BULK_PLACEHOLDER
from dwdaemon.dicom.matching import TEXT_VRS, Criterion, Query, pad_upper
from dwdaemon.store.index import study_summary
from dwdaemon.store.index.dialect import SQLITE, Dialect, P, glob_escape, placeholders

if TYPE_CHECKING:
    from dwdaemon.store.index.sql import SqlIndex

__all__ = ["SearchResult", "explain", "glob_escape", "search"]

LEVEL_RANK = {"studies": 0, "series": 1, "instances": 2}
BATCH = 256


@dataclass(frozen=True)
class Column:
    """An indexed attribute: its level, its SQL expression and the VR it holds."""

    level: str
    expr: str
    vr: str


COLUMNS: dict[str, Column] = {
    "00100020": Column("studies", "st.patient_id", "LO"),
    "00100030": Column("studies", "st.patient_birth_date", "DA"),
    "00100040": Column("studies", "st.patient_sex", "CS"),
    "00080020": Column("studies", "st.study_date", "DA"),
    "00080030": Column("studies", "st.study_time", "TM"),
    "00080050": Column("studies", "st.accession_number", "SH"),
    "00200010": Column("studies", "st.study_id", "SH"),
    "00081030": Column("studies", "st.study_description", "LO"),
    "0020000D": Column("studies", "st.study_uid", "UI"),
    "00080060": Column("series", "se.modality", "CS"),
    "00200011": Column("series", "se.series_number", "IS"),
    "0008103E": Column("series", "se.series_description", "LO"),
    "00080021": Column("series", "se.series_date", "DA"),
    "00080031": Column("series", "se.series_time", "TM"),
    "0020000E": Column("series", "se.series_uid", "UI"),
    "00080018": Column("instances", "i.sop_uid", "UI"),
    "00080016": Column("instances", "i.sop_class_uid", "UI"),
    "00200013": Column("instances", "i.instance_number", "IS"),
}
PATIENT_NAME = "00100010"
MODALITIES_IN_STUDY = "00080061"
STUDY_COMPUTED = frozenset({"00080061", "00080062", "00201206", "00201208"})
SERIES_COMPUTED = frozenset({"00201209"})


@dataclass
class SearchResult:
    """The answers of one page and whether the page was cut."""

    datasets: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    cut_by_server: bool = False
    next_offset: int = 0


# --------------------------------------------------------------------------
# SQL generation
# --------------------------------------------------------------------------


def like_word(word: str) -> str:
    """A fuzzy query word as a ``LIKE`` pattern (``%``/``_`` literal, wildcards mapped)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "% " + escaped.replace("*", "%").replace("?", "_") + "%"


def dialect_of(index: SqlIndex) -> Dialect:
    """The dialect of an index (its ``dialect``)."""
    return index.dialect


@dataclass
class Condition:
    """A statement fragment (a template: ``{p}`` for each of ``params``) and whether SQL
    decides the criterion exactly."""

    sql: str
    params: list[Any]
    exact: bool


def _column_condition(crit: Criterion, col: Column,
                      dialect: Dialect = SQLITE) -> Condition | None:
    """SQL for a criterion on a plain column, or None when SQL cannot decide it."""
    expr, vr = col.expr, col.vr
    if crit.folds_case and vr in TEXT_VRS:
        return None
    kind, values = crit.kind, crit.values
    if vr in ("IS",):
        marks = placeholders(len(values))
        return Condition(f"({expr} <> '' AND {dialect.real_of(expr)} IN ({marks}))",
                         list(values), True)
    if vr in ("DA", "TM", "DT"):
        if kind == "single" and vr == "DA":
            return Condition(f"{expr} = {P}", [values[0]], True)
        low, high = (values[0], values[0]) if kind == "single" else values
        parts, params = [f"{expr} <> ''"], []
        if low is not None:
            parts.append(f"{expr} >= {P}")
            params.append(low)
        if high is not None:
            parts.append(f"{expr} <= {P}")
            params.append(pad_upper(vr, high))
        return Condition("(" + " AND ".join(parts) + ")", params, True)
    if kind == "single":
        return Condition(f"{expr} = {P}", [values[0]], True)
    if kind == "list":
        marks = placeholders(len(values))
        return Condition(f"{expr} IN ({marks})", list(values), True)
    if kind == "wildcard":
        return Condition(dialect.match(expr), [dialect.pattern(values[0])], True)
    return None


def _patient_name_condition(crit: Criterion, dialect: Dialect = SQLITE) -> Condition | None:
    """Indexed pre-filter for PatientName (confirmed in Python)."""
    if crit.kind == "fuzzy":
        words = crit.values[0]
        sql = " AND ".join(f"st.patient_name_words LIKE {P} ESCAPE '\\'" for _ in words)
        return Condition(f"({sql})", [like_word(w) for w in words], False)
    if crit.kind not in ("single", "wildcard"):
        return None
    folded = str(crit.values[0]).casefold()
    return Condition(
        f"st.pk IN (SELECT pk FROM studies WHERE {dialect.match('patient_name_ci')}"
        " UNION ALL SELECT pk FROM studies WHERE patient_name_groups IS NOT NULL"
        f" AND {dialect.match('patient_name_groups')})",
        [dialect.pattern(folded), dialect.pattern(folded, "*=", "=*")], False)


def _modalities_condition(crit: Criterion, dialect: Dialect = SQLITE) -> Condition | None:
    if crit.folds_case:
        return None
    if crit.kind in ("single", "list"):
        marks = placeholders(len(crit.values))
        return Condition(f"st.pk IN (SELECT study_pk FROM series WHERE modality IN ({marks}))",
                         list(crit.values), True)
    if crit.kind == "wildcard":
        return Condition(
            f"st.pk IN (SELECT study_pk FROM series WHERE {dialect.match('modality')})",
            [dialect.pattern(crit.values[0])], True)
    return None


def _relational(level: str, col: Column, cond: Condition) -> Condition:
    """Wrap a condition on a lower-level column so that it applies to ``level`` rows."""
    if LEVEL_RANK[col.level] <= LEVEL_RANK[level]:
        return cond
    if level == "studies" and col.level == "series":
        sql = f"st.pk IN (SELECT se.study_pk FROM series se WHERE {cond.sql})"
    elif level == "studies":
        sql = ("st.pk IN (SELECT se.study_pk FROM series se JOIN instances i"
               f" ON i.series_pk = se.pk WHERE {cond.sql})")
    else:
        sql = f"se.pk IN (SELECT i.series_pk FROM instances i WHERE {cond.sql})"
    return Condition(sql, cond.params, cond.exact)


def plan(level: str, query: Query, dialect: Dialect = SQLITE
         ) -> tuple[list[Condition], list[Criterion]]:
    """Split the criteria into SQL conditions and criteria left for Python."""
    conditions: list[Condition] = []
    residual: list[Criterion] = []
    for crit in query.criteria:
        if crit.kind == "universal":
            continue
        cond: Condition | None = None
        if len(crit.path) == 1:
            tag = crit.tag
            if tag == PATIENT_NAME:
                cond = _patient_name_condition(crit, dialect)
            elif tag == MODALITIES_IN_STUDY:
                cond = _modalities_condition(crit, dialect)
            elif tag in COLUMNS and crit.kind != "fuzzy":
                col = COLUMNS[tag]
                raw = _column_condition(crit, col, dialect)
                if raw is not None and (raw.exact or LEVEL_RANK[col.level] <= LEVEL_RANK[level]):
                    cond = _relational(level, col, raw)
        if cond is None:
            residual.append(crit)
        else:
            conditions.append(cond)
            if not cond.exact:
                residual.append(crit)
    return conditions, residual


_FROM = {
    "studies": "studies st",
    "series": "series se JOIN studies st ON se.study_pk = st.pk",
    "instances": "instances i JOIN series se ON i.series_pk = se.pk"
                 " JOIN studies st ON se.study_pk = st.pk",
}
#: The keys and UIDs of an answer and the stored DICOM JSON of its representative instance
#: (read with the row: no second query per page).
_SUMMARY = ", st.series_count, st.instance_count, st.modalities, st.sop_classes"
_SELECT = {
    "studies": "st.pk, st.study_uid, NULL, NULL, NULL,"
               " (SELECT i.metadata FROM series s1 JOIN instances i ON i.series_pk = s1.pk"
               " WHERE s1.study_pk = st.pk LIMIT 1)" + _SUMMARY,
    "series": "st.pk, st.study_uid, se.pk, se.series_uid, NULL,"
              " (SELECT i.metadata FROM instances i WHERE i.series_pk = se.pk LIMIT 1)"
              + _SUMMARY,
    "instances": "st.pk, st.study_uid, se.pk, se.series_uid, i.sop_uid, i.metadata" + _SUMMARY,
}
#: A study answer that shows only patient/study attributes reads the study's stored answer
#: fragment (see :mod:`~dwdaemon.store.index.study_summary`) instead of a whole instance.
_SELECT_FRAGMENT = ("st.pk, st.study_uid, NULL, NULL, NULL, COALESCE(st.answer_json,"
                    " (SELECT i.metadata FROM series s1 JOIN instances i ON i.series_pk = s1.pk"
                    " WHERE s1.study_pk = st.pk LIMIT 1))" + _SUMMARY)
#: Study answer elements computed, not read from the representative instance.
_STUDY_ANSWER_COMPUTED = frozenset({"00080005", "00080056", "00081190", "0020000D"}) \
    | STUDY_COMPUTED
#: Whether search reads the stored study summary (tests switch it off to compare answers).
USE_SUMMARY = True


def fragment_suffices(level: str, tags: Iterable[str], residual: list[Criterion]) -> bool:
    """Whether every attribute a search shows or matches in Python is in the study fragment."""
    if level != "studies" or not USE_SUMMARY:
        return False
    wanted = set(tags) | {c.tag for c in residual}
    return all(t in _STUDY_ANSWER_COMPUTED or t in study_summary.KEPT_UIDS
               or qido_model.level_of(t) == "studies" for t in wanted)


_ORDER = {"studies": "st.pk", "series": "se.pk", "instances": "i.pk"}
#: Levels whose searches confirmed in Python read their candidates by chunks of keys (the
#: position of the key in a row): a page of answers stops reading early.
KEYSET_LEVELS = {"studies": 0, "series": 2}
#: The tables of a level joined to a page of its keys (``page.pk``).
_PAGE_JOIN = {
    "studies": "studies st ON st.pk = page.pk",
    "series": "series se ON se.pk = page.pk JOIN studies st ON se.study_pk = st.pk",
    "instances": "instances i ON i.pk = page.pk JOIN series se ON i.series_pk = se.pk"
                 " JOIN studies st ON se.study_pk = st.pk",
}


def build_sql(level: str, query: Query, *, study_uid: str | None = None,
              series_uid: str | None = None, limit: int | None = None,
              dialect: Dialect = SQLITE, fragment: bool = False,
              after: int = 0, chunk: int | None = None
              ) -> tuple[Any, list[Any], list[Criterion], bool]:
    """The statement for a search (built by ``dialect``), its parameters, the residual
    criteria, and whether paging was pushed into SQL. With ``fragment`` (study level), the
    representative is the study's stored answer fragment. With ``chunk`` (studies and series
    levels), only the ``chunk`` first candidates with a key above ``after`` are read (a search
    confirmed in Python reads its candidates chunk by chunk, see :data:`KEYSET_LEVELS`)."""
    conditions, residual = plan(level, query, dialect)
    where: list[str] = []
    params: list[Any] = []
    if study_uid is not None:
        where.append(f"st.study_uid = {P}")
        params.append(study_uid)
    if series_uid is not None:
        where.append(f"se.series_uid = {P}")
        params.append(series_uid)
    for cond in conditions:
        where.append(cond.sql)
        params.extend(cond.params)
    order = _ORDER[level]
    if level == "instances" and series_uid is not None:
        order = f"{dialect.int_sort('i.instance_number')}, i.pk"
    pushed = not residual
    select = _SELECT_FRAGMENT if fragment and level == "studies" else _SELECT[level]
    paging, paging_params = "", []
    if chunk is not None and level in KEYSET_LEVELS:
        where.append(f"{order} > {P}")
        params.append(after)
        paging, paging_params = f"LIMIT {P}", [chunk]
    elif pushed and limit is not None:
        paging, paging_params = f"LIMIT {P} OFFSET {P}", [limit + 1, query.offset]
    elif pushed and query.offset:
        paging, paging_params = dialect.offset_only(), [query.offset]
    condition = " WHERE " + " AND ".join(where) if where else ""
    if not paging:
        sql = f"SELECT {select} FROM {_FROM[level]}{condition} ORDER BY {order}"
        return dialect.statement(sql), params, residual, pushed
    # Page first: the page's keys alone (an index-only walk over skipped rows), then the
    # page's columns and representative instances for its rows only.
    sql = (f"SELECT {select} FROM (SELECT {_ORDER[level]} AS pk FROM {_FROM[level]}"
           f"{condition} ORDER BY {order} {paging}) page JOIN {_PAGE_JOIN[level]}"
           f" ORDER BY {order}")
    return dialect.statement(sql), params + paging_params, residual, pushed


# --------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------


def _in(values: Iterable[Any]) -> tuple[str, list[Any]]:
    values = list(values)
    return placeholders(len(values)), values


def _element(vr: str, values: list[Any]) -> dict[str, Any]:
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _study_aggregates(index: SqlIndex, pks: list[int]) -> dict[int, dict[str, Any]]:
    """Computed study attributes of a page of studies, in one covering-index query."""
    out: dict[int, dict[str, Any]] = {
        pk: {"modalities": set(), "classes": set(), "series": set(), "instances": 0}
        for pk in pks
    }
    if not pks:
        return out
    marks, params = _in(pks)
    for study_pk, series_pk, modality, sop_class, count in index.fetch_all(
        "SELECT se.study_pk, se.pk, se.modality, i.sop_class_uid, COUNT(*) FROM series se"
        f" JOIN instances i ON i.series_pk = se.pk WHERE se.study_pk IN ({marks})"
        " GROUP BY se.pk, i.sop_class_uid", tuple(params)):
        agg = out[study_pk]
        agg["series"].add(series_pk)
        agg["instances"] += count
        agg["classes"].add(sop_class)
        if modality:
            agg["modalities"].update(m for m in modality.split("\\") if m)
    return out


def _series_counts(index: SqlIndex, pks: list[int]) -> dict[int, int]:
    if not pks:
        return {}
    marks, params = _in(pks)
    counts = dict.fromkeys(pks, 0)
    for series_pk, count in index.fetch_all(
        f"SELECT series_pk, COUNT(*) FROM instances WHERE series_pk IN ({marks})"
        " GROUP BY series_pk", tuple(params)):
        counts[series_pk] = count
    return counts


def _dataset(text: str | None) -> tuple[dict[str, Any], bool]:
    """Stored DICOM JSON of an instance, and whether it holds bulk placeholders."""
    if not text:
        return {}, False
    return orjson.loads(text), BULK_PLACEHOLDER in text


def _needs(level: str, levels: tuple[str, ...], tags: Iterable[str],
           residual: list[Criterion]) -> tuple[bool, bool]:
    wanted = set(tags) | {c.tag for c in residual}
    study = level == "studies" or "studies" in levels or bool(wanted & STUDY_COMPUTED)
    series = level == "series" or "series" in levels or bool(wanted & SERIES_COMPUTED)
    return study, series


def search(index: SqlIndex, level: str, query: Query, *, base_url: str,
           study_uid: str | None = None, series_uid: str | None = None,
           max_results: int = 0) -> SearchResult:
    """Run a QIDO-RS search (blocking).

    Parameters
    ----------
    index : SqlIndex
        The index (its SQL primitives ``connection``/``fetch_all``/``dialect`` are used).
    level : str
        ``studies``, ``series`` or ``instances``.
    query : Query
        The parsed query.
    base_url : str
        Absolute DICOMweb root URL without trailing slash (for ``RetrieveURL`` and bulk URIs).
    study_uid, series_uid : str or None
        Restrictions from the resource path.
    max_results : int
        Server maximum of answers (0 = none).
    """
    limit = query.limit
    cut_by_server = False
    if max_results and (limit is None or limit > max_results):
        limit = max_results
        cut_by_server = True
    tags, levels = qido_model.return_tags(level, query, study_given=study_uid is not None,
                                          series_given=series_uid is not None)
    include_levels = levels if query.include_all else ()
    dialect = dialect_of(index)
    fragment = fragment_suffices(level, tags, plan(level, query, dialect)[1])
    kwargs: dict[str, Any] = {"study_uid": study_uid, "series_uid": series_uid,
                              "limit": limit, "dialect": dialect, "fragment": fragment}
    sql, params, residual, pushed = build_sql(level, query, **kwargs)
    need_study, need_series = _needs(level, levels, tags, residual)
    result = SearchResult()
    skip = 0 if pushed else query.offset
    args = (index, level, query, residual, tags, include_levels, base_url, need_study,
            need_series, result, limit)
    if pushed or limit is None or level not in KEYSET_LEVELS:
        _read(index, sql, params, args, skip)
    else:  # candidates by chunks of keys: enough for the page, then twice as many each time
        after, chunk = 0, limit + 1 + query.offset
        while True:
            sql, params, _residual, _pushed = build_sql(level, query, after=after,
                                                        chunk=chunk, **kwargs)
            done, skip, last, count = _read(index, sql, params, args, skip)
            if done or last is None or count < chunk:
                break
            after, chunk = last[KEYSET_LEVELS[level]], chunk * 2
    if limit is not None and len(result.datasets) > limit:
        del result.datasets[limit:]
        result.truncated = True
        result.cut_by_server = cut_by_server
    result.next_offset = query.offset + len(result.datasets)
    return result


def _read(index: SqlIndex, sql: Any, params: list[Any], args: tuple[Any, ...],
          skip: int) -> tuple[bool, int, tuple[Any, ...] | None, int]:
    """Run a statement and process its rows by batches: whether the page is complete, the
    offset left to skip, the last row read and the number of rows read."""
    cur = index.connection().cursor()
    last, count = None, 0
    try:
        cur.execute(sql, tuple(params))
        while True:
            rows = cur.fetchmany(BATCH)
            if not rows:
                return False, skip, last, count
            last, count = rows[-1], count + len(rows)
            done = _process_batch(*args, rows, skip)
            skip = max(0, skip - done[1])
            if done[0]:
                return True, skip, last, count
    finally:
        cur.close()


def _process_batch(index: SqlIndex, level: str, query: Query,
                   residual: list[Criterion], tags: list[str], include_levels: tuple[str, ...],
                   base_url: str, need_study: bool, need_series: bool, result: SearchResult,
                   limit: int | None, rows: list[tuple[Any, ...]], skip: int
                   ) -> tuple[bool, int]:
    """Filter and render one batch; returns (page complete, rows skipped for offset)."""
    studies: dict[int, tuple[int, int, list[str], list[str]]] = {}
    if need_study:
        missing = set()
        for row in rows:
            if row[6] is None or not USE_SUMMARY:
                missing.add(row[0])
            else:
                studies[row[0]] = (row[6], row[7], sorted(study_summary.split(row[8])),
                                   sorted(study_summary.split(row[9])))
        for pk, agg in _study_aggregates(index, sorted(missing)).items():
            studies[pk] = (len(agg["series"]), agg["instances"], sorted(agg["modalities"]),
                           sorted(agg["classes"]))
    series = _series_counts(index, sorted({row[2] for row in rows if row[2] is not None})) \
        if need_series else {}
    skipped = 0
    for study_pk, st_uid, series_pk, se_uid, sop_uid, stored, *_summary in rows:
        dataset, has_bulk = _dataset(stored)
        computed = _computed(level, base_url, st_uid, se_uid, sop_uid, dataset,
                             studies.get(study_pk), series.get(series_pk))
        if residual:
            merged = {**dataset, **computed}
            if not all(c.matches(merged) for c in residual):
                continue
        if skipped < skip:
            skipped += 1
            continue
        bulk = None
        rep_series = se_uid or _uid(dataset, "0020000E")
        rep_sop = sop_uid or _uid(dataset, "00080018")
        if has_bulk and rep_series and rep_sop:
            bulk = (BULK_PLACEHOLDER,
                    f"{base_url}/studies/{st_uid}/series/{rep_series}/instances/{rep_sop}/bulk/")
        result.datasets.append(qido_model.build_response(
            dataset, computed, tags, include_levels=include_levels, bulk=bulk))
        if limit is not None and len(result.datasets) > limit:
            return True, skipped
    return False, skipped


def _uid(dataset: dict[str, Any], tag: str) -> str | None:
    values = (dataset.get(tag) or {}).get("Value")
    return values[0] if values else None


def _computed(level: str, base_url: str, st_uid: str, se_uid: str | None, sop_uid: str | None,
              dataset: dict[str, Any], study: tuple[int, int, list[str], list[str]] | None,
              series_count: int | None) -> dict[str, Any]:
    url = f"{base_url}/studies/{st_uid}"
    if level in ("series", "instances"):
        url += f"/series/{se_uid}"
    if level == "instances":
        url += f"/instances/{sop_uid}"
    out: dict[str, Any] = {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00080056": {"vr": "CS", "Value": ["ONLINE"]},
        "00081190": {"vr": "UR", "Value": [url]},
        "0020000D": {"vr": "UI", "Value": [st_uid]},
    }
    if se_uid is not None:
        out["0020000E"] = {"vr": "UI", "Value": [se_uid]}
    if study is not None:
        out["00080061"] = _element("CS", study[2])
        out["00080062"] = _element("UI", study[3])
        out["00201206"] = {"vr": "IS", "Value": [study[0]]}
        out["00201208"] = {"vr": "IS", "Value": [study[1]]}
    if series_count is not None:
        out["00201209"] = {"vr": "IS", "Value": [series_count]}
    return out


def explain(index: SqlIndex, level: str, query: Query, *, analyze: bool = False,
            **kwargs: Any) -> list[str]:
    """``EXPLAIN QUERY PLAN`` lines of the main statement of a search (SQLite), or
    ``EXPLAIN`` lines (PostgreSQL; with ``analyze``, ``EXPLAIN ANALYZE``: run, with timings).
    Unless ``kwargs`` say otherwise, the statement is the one :func:`search` runs first (the
    study fragment when it suffices, the first chunk of candidates when confirmed in Python)."""
    dialect = dialect_of(index)
    residual = plan(level, query, dialect)[1]
    if "fragment" not in kwargs:
        tags = qido_model.return_tags(level, query)[0]
        kwargs["fragment"] = fragment_suffices(level, tags, residual)
    limit = kwargs.get("limit")
    if "chunk" not in kwargs and residual and limit is not None and level in KEYSET_LEVELS:
        kwargs["chunk"] = limit + 1 + query.offset
    sql, params, _residual, _pushed = build_sql(level, query, dialect=dialect, **kwargs)
    cur = index.connection().cursor()
    try:
        cur.execute(dialect.explain(sql, analyze), tuple(params))
        rows = cur.fetchall()
    finally:
        cur.close()
    return [str(row[-1]) for row in rows]
