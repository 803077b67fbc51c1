"""Per-study summary kept in the ``studies`` row for QIDO-RS (blocking, inside the writer's
transaction).

Columns (``NULL`` = not computed yet: search then computes them from the rows below):

- ``series_count``/``instance_count``: NumberOfStudyRelatedSeries/Instances;
- ``modalities``/``sop_classes``: ModalitiesInStudy/SOPClassesInStudy, sorted, ``\\``-joined;
- ``answer_json``: the representative instance's (first series, first instance) stored DICOM
  JSON reduced to the patient and study attributes plus its Series and SOP Instance UIDs (what a
  study answer can show without the full instance).

:func:`on_add` updates them incrementally in the transaction of ``add_instance`` (the study row
is locked by then: its ``last_update`` was written, or it was just inserted); :func:`refresh`
recomputes them after deletes and overwrites; :func:`fill_missing` computes them for rows
written before they existed (schema version 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from dwdaemon.dicom import qido_model
from dwdaemon.store.index.dialect import P, placeholders

if TYPE_CHECKING:
    from dwdaemon.store.index.sql import SqlIndex

#: The columns, in the order of :func:`summarise`'s tuple.
COLUMNS = ("series_count", "instance_count", "modalities", "sop_classes", "answer_json")
#: Kept besides the patient and study attributes (bulk data URIs and ``includefield``).
KEPT_UIDS = frozenset({"0020000E", "00080018"})


def answer_fragment(metadata: str | None) -> str | None:
    """The part of an instance's stored DICOM JSON a study answer may show."""
    if not metadata:
        return None
    dataset = orjson.loads(metadata)
    kept = {tag: element for tag, element in dataset.items()
            if tag in KEPT_UIDS or qido_model.level_of(tag) == "studies"}
    return orjson.dumps(kept).decode()


def join(values: set[str]) -> str:
    """A set of values as stored (sorted, ``\\``-joined)."""
    return "\\".join(sorted(values))


def split(text: str | None) -> set[str]:
    """The set of values of a stored ``\\``-joined text."""
    return {v for v in (text or "").split("\\") if v}


def aggregates(index: SqlIndex, cur: Any, pks: list[int]) -> dict[int, list[Any]]:
    """``[series, instances, modalities, classes]`` of studies, from their rows below."""
    out: dict[int, list[Any]] = {}
    if not pks:
        return out
    index.execute(cur, "SELECT se.study_pk, se.pk, se.modality, i.sop_class_uid, COUNT(*)"
                       " FROM series se JOIN instances i ON i.series_pk = se.pk"
                       f" WHERE se.study_pk IN ({placeholders(len(pks))})"
                       " GROUP BY se.study_pk, se.pk, se.modality, i.sop_class_uid", tuple(pks))
    for study_pk, series_pk, modality, sop_class, count in cur.fetchall():
        agg = out.setdefault(study_pk, [set(), 0, set(), set()])
        agg[0].add(series_pk)
        agg[1] += count
        agg[3].add(sop_class)
        if modality:
            agg[2].update(split(modality))
    return out


def refresh(index: SqlIndex, cur: Any, pks: list[int]) -> None:
    """Recompute the summary of studies (those without instances are left alone)."""
    for pk, (series, count, modalities, classes) in aggregates(index, cur, pks).items():
        index.execute(cur, "SELECT i.metadata FROM series se JOIN instances i"
                           f" ON i.series_pk = se.pk WHERE se.study_pk = {P}"
                           " ORDER BY se.pk, i.pk LIMIT 1", (pk,))
        row = cur.fetchone()
        index.execute(cur, "UPDATE studies SET series_count = {p}, instance_count = {p},"
                           " modalities = {p}, sop_classes = {p}, answer_json = {p}"
                           " WHERE pk = {p}",
                      (len(series), count, join(modalities), join(classes),
                       answer_fragment(row[0] if row else None), pk))


def on_add(index: SqlIndex, cur: Any, study_pk: int, new_series: bool, modality: str | None,
           sop_class: str, new_study: bool = False, metadata: str | None = None) -> None:
    """Count one new instance (of a new series if ``new_series``) in its study's summary.

    A study created by this transaction (``new_study``) has this instance alone: its summary
    is written at once from the instance (``metadata``: its stored DICOM JSON), without
    reading the rows back.
    """
    if new_study:
        index.execute(cur, "UPDATE studies SET series_count = {p}, instance_count = {p},"
                           " modalities = {p}, sop_classes = {p}, answer_json = {p}"
                           " WHERE pk = {p}",
                      (1, 1, join(split(modality)), join({sop_class}),
                       answer_fragment(metadata), study_pk))
        return
    index.execute(cur, "SELECT series_count, instance_count, modalities, sop_classes"
                       f" FROM studies WHERE pk = {P}", (study_pk,))
    row = cur.fetchone()
    if row is None or row[0] is None:  # a new study, or one written before the summary
        refresh(index, cur, [study_pk])
        return
    series, count, modalities, classes = row
    mods, sops = split(modalities), split(classes)
    if new_series:
        mods |= split(modality)
    sops.add(sop_class)
    index.execute(cur, "UPDATE studies SET series_count = {p}, instance_count = {p},"
                       " modalities = {p}, sop_classes = {p} WHERE pk = {p}",
                  (series + int(new_series), count + 1, join(mods), join(sops), study_pk))


def study_of_instance(index: SqlIndex, cur: Any, pk: int) -> int | None:
    """The study pk of an instance pk."""
    index.execute(cur, "SELECT se.study_pk FROM instances i JOIN series se"
                       f" ON i.series_pk = se.pk WHERE i.pk = {P}", (pk,))
    row = cur.fetchone()
    return int(row[0]) if row else None


def study_of_series(index: SqlIndex, cur: Any, pk: int) -> int | None:
    """The study pk of a series pk."""
    index.execute(cur, f"SELECT study_pk FROM series WHERE pk = {P}", (pk,))
    row = cur.fetchone()
    return int(row[0]) if row else None


def fill_missing(index: SqlIndex, batch: int = 500) -> int:
    """Compute the summary of every study without one (after a migration); returns how many."""
    done = 0
    last = -1
    while True:
        with index.transaction() as cur:
            index.execute(cur, "SELECT pk FROM studies WHERE series_count IS NULL"
                               f" AND pk > {P} ORDER BY pk LIMIT {P}", (last, batch))
            pks = [int(r[0]) for r in cur.fetchall()]
            if not pks:
                return done
            refresh(index, cur, pks)
        done += len(pks)
        last = pks[-1]
