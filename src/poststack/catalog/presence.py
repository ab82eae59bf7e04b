"""pg_catalog queries: which objects exist and which indexes are invalid (snapshots live in snapshot.py).

Existence is answered set-based: every object of one kind goes into arrays sent as parameters, unnested
and joined to the catalog in ONE query per kind, whatever the number of objects. Diagnose runs over
thousands of migrations; one round trip per object would make it minutes instead of milliseconds.
Every query goes through ``_run`` so that ``count_queries()`` can prove that bound in tests.

An index left invalid (a ``CREATE INDEX CONCURRENTLY`` that failed) does not count as existing: the migration's
effect, a usable index, is not there. ``invalid_indexes`` reports those separately.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg

from poststack.source.object_model import DbObject

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_RELKINDS = {"table": "rpf", "view": "v", "materialized_view": "m", "index": "iI", "sequence": "S"}
_PROKINDS = {"function": "fw", "procedure": "p"}
_TYPTYPES = {"type": "bcerm", "domain": "d"}

# Each query takes text arrays (one per column of the unnest) and returns the ordinals that exist.
_QUERIES: dict[str, tuple[str, int]] = {
    "relation": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, name, kinds, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.name
        LEFT JOIN pg_index x ON x.indexrelid = c.oid
        WHERE strpos(q.kinds, c.relkind::text) > 0 AND x.indisvalid IS NOT false""", 3),
    "column": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, rel, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.rel
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = q.name AND a.attnum > 0
                               AND NOT a.attisdropped""", 3),
    "constraint": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, parent, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_constraint con ON con.connamespace = n.oid AND con.conname = q.name
        LEFT JOIN pg_class c ON c.oid = con.conrelid
        LEFT JOIN pg_type t ON t.oid = con.contypid
        WHERE coalesce(c.relname, t.typname) = q.parent""", 3),
    "type": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, name, kinds, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_type t ON t.typnamespace = n.oid AND t.typname = q.name
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE strpos(q.kinds, t.typtype::text) > 0 AND (c.oid IS NULL OR c.relkind = 'c')""", 3),
    "enum_label": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, parent, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_type t ON t.typnamespace = n.oid AND t.typname = q.parent
        JOIN pg_enum e ON e.enumtypid = t.oid AND e.enumlabel = q.name""", 3),
    "routine": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
             WITH ORDINALITY AS q(nsp, name, args, kinds, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_proc p ON p.pronamespace = n.oid AND p.proname = q.name
        WHERE strpos(q.kinds, p.prokind::text) > 0
          AND (q.args IS NULL OR p.oid = to_regprocedure(format('%%I.%%I(%%s)', q.nsp, q.name, q.args)))""", 4),
    "trigger": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, parent, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.parent
        JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = q.name AND NOT tg.tgisinternal""", 3),
    "policy": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, parent, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.parent
        JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = q.name""", 3),
    "schema": ("""
        SELECT q.i FROM unnest(%s::text[]) WITH ORDINALITY AS q(name, i)
        JOIN pg_namespace n ON n.nspname = q.name""", 1),
    "extension": ("""
        SELECT q.i FROM unnest(%s::text[]) WITH ORDINALITY AS q(name, i)
        JOIN pg_extension e ON e.extname = q.name""", 1),
    # A comment "exists" when the target carries exactly that text (or, with no text given, any comment).
    "comment": ("""
        SELECT q.i FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
             WITH ORDINALITY AS q(nsp, rel, col, body, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        LEFT JOIN pg_class c ON q.rel IS NOT NULL AND c.relnamespace = n.oid AND c.relname = q.rel
        LEFT JOIN pg_attribute a ON q.col IS NOT NULL AND a.attrelid = c.oid AND a.attname = q.col
                                    AND NOT a.attisdropped
        CROSS JOIN LATERAL (SELECT CASE WHEN q.rel IS NULL THEN obj_description(n.oid, 'pg_namespace')
                                        WHEN q.col IS NULL THEN obj_description(c.oid, 'pg_class')
                                        ELSE col_description(c.oid, a.attnum) END AS text) d
        WHERE CASE WHEN q.body IS NULL THEN d.text IS NOT NULL ELSE d.text = q.body END""", 4),
}


@dataclass
class QueryCounter:
    """How many catalog queries ran while it was active: the proof that evidence is set-based."""

    count: int = 0


_counters: list[QueryCounter] = []


@contextmanager
def count_queries() -> Iterator[QueryCounter]:
    counter = QueryCounter()
    _counters.append(counter)
    try:
        yield counter
    finally:
        _counters.remove(counter)


def _run(conn: psycopg.Connection[Any], query: str,
         params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    for counter in _counters:
        counter.count += 1
    return conn.execute(query, params if isinstance(params, dict) else list(params)).fetchall()


def _group(obj: DbObject) -> str:
    if obj.kind in _RELKINDS:
        return "relation"
    if obj.kind in _TYPTYPES:
        return "type"
    if obj.kind in _PROKINDS:
        return "routine"
    return obj.kind


def _row(obj: DbObject) -> tuple[str | None, ...]:
    """The unnest columns of one object, in the order its group's query expects."""
    group = _group(obj)
    if group == "relation":
        return (obj.schema, obj.name, _RELKINDS[obj.kind])
    if group == "type":
        return (obj.schema, obj.name, _TYPTYPES[obj.kind])
    if group == "routine":
        return (obj.schema, obj.name, obj.detail, _PROKINDS[obj.kind])
    if group in ("schema", "extension"):
        return (obj.name,)
    if group == "comment":
        if obj.schema is None:  # comment on a schema
            return (obj.name, None, None, obj.detail)
        if obj.parent is None:  # comment on a relation
            return (obj.schema, obj.name, None, obj.detail)
        return (obj.schema, obj.parent, obj.name, obj.detail)
    return (obj.schema, obj.parent, obj.name)


def objects_exist(conn: psycopg.Connection[Any], objects: Iterable[DbObject]) -> dict[DbObject, bool]:
    """For each object, whether the catalog has it: at most one query per kind of object, never per object."""
    groups: dict[str, list[DbObject]] = {}
    for obj in dict.fromkeys(objects):
        groups.setdefault(_group(obj), []).append(obj)
    result: dict[DbObject, bool] = {}
    for group, members in groups.items():
        query, width = _QUERIES[group]
        columns = list(zip(*(_row(o) for o in members), strict=True))
        assert len(columns) == width, group
        found = {row[0] for row in _run(conn, query, [list(c) for c in columns])}
        result.update((obj, i in found) for i, obj in enumerate(members, start=1))
    return result


class InvalidIndex(NamedTuple):
    """An index left with ``indisvalid = false``, typically by a failed ``CREATE INDEX CONCURRENTLY``."""

    schema: str
    index: str  # type: ignore[assignment]  # shadows tuple.index(); the field name is what callers read
    table: str


def invalid_indexes(conn: psycopg.Connection[Any]) -> list[InvalidIndex]:
    """Every invalid index outside the system schemas, in one query."""
    rows = _run(conn, """
        SELECT n.nspname, ic.relname, tc.relname
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE NOT i.indisvalid AND n.nspname <> ALL(%s::text[]) AND n.nspname NOT LIKE 'pg\\_%%'
        ORDER BY 1, 2""", [list(SYSTEM_SCHEMAS)])
    return [InvalidIndex(*row) for row in rows]


def index_validity(conn: psycopg.Connection[Any], indexes: Iterable[DbObject]) -> dict[DbObject, bool]:
    """``indisvalid`` of each given index that exists (missing ones are left out), in one query."""
    wanted = [o for o in dict.fromkeys(indexes) if o.kind == "index"]
    if not wanted:
        return {}
    rows = _run(conn, """
        SELECT q.i, x.indisvalid FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS q(nsp, name, i)
        JOIN pg_namespace n ON n.nspname = q.nsp
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.name AND c.relkind IN ('i', 'I')
        JOIN pg_index x ON x.indexrelid = c.oid""",
                [[o.schema for o in wanted], [o.name for o in wanted]])
    valid = dict(rows)
    return {obj: bool(valid[i]) for i, obj in enumerate(wanted, start=1) if i in valid}
