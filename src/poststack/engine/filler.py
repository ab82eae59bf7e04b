"""Synthetic rows at realistic volume, generated inside the server with one INSERT ... SELECT per table.

``verify --rows N`` and ``DbHelper.fill`` use this to make a migration meet a table of the size it will
meet in production. Values are derived from ``generate_series`` (never sent row by row) and chosen per
type so that the table's constraints hold:

- NOT NULL: every filled column gets a value; identity, serial, generated and defaulted columns are
  left to the server (a defaulted column in a unique index is filled, a constant default would repeat);
- UNIQUE, primary keys and partial unique indexes: values are distinct per row (integers continue after
  the column's current maximum; text and uuid carry the row number and a per-call token);
- foreign keys: parents are filled first (tables in dependency order); row g of the child references a
  parent row picked by row number, so N children over N parents are distinct per parent; a reference to
  the same table (or around a cycle) is NULL when the column allows it;
- enums cycle through their labels; domains get a value of their base type that satisfies the domain's
  CHECK, cast to the domain;
- CHECK constraints of the shapes ``filler_checks`` reads (bounds, lists, lengths). Others are left to
  the server: the INSERT fails and FillError names the constraint. Timestamps increase with the column's
  position, so the common ``ends_at > starts_at`` holds too.

Type names in casts come from ``format_type()``, which quotes them as identifiers.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from poststack.engine.filler_checks import ColumnRule, rules_for
from poststack.engine.filler_values import UNFILLABLE, Column, value_sql
from poststack.errors import UsageError


class FillError(UsageError):
    """A table cannot be filled automatically (a constraint the filler cannot satisfy, an unknown type)."""

    code = "fill_failed"


@dataclass(frozen=True)
class FillResult:
    table: str
    inserted: int
    total: int
    elapsed_ms: float


@dataclass
class ForeignKey:
    columns: list[str]
    parent_oid: int
    parent: sql.Composed
    parent_columns: list[str]


@dataclass
class Table:
    oid: int
    name: str  # schema.table, for messages
    ident: sql.Composed
    columns: list[Column]
    unique_columns: set[str]
    foreign_keys: list[ForeignKey]


_TABLES = """
SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname <> ALL(%s)
  AND n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY n.nspname, c.relname"""

_COLUMNS = """
SELECT a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), coalesce(b.typname, t.typname),
       coalesce(b.typtype, t.typtype)::text, coalesce(b.typcategory, t.typcategory)::text, e.typname,
       a.attnotnull OR t.typnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
       a.attgenerated::text, CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE t.typtypmod END,
       (SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = coalesce(b.oid, t.oid)),
       CASE WHEN t.typtype = 'd' THEN (SELECT array_agg(pg_get_constraintdef(k.oid)) FROM pg_constraint k
                                       WHERE k.contypid = t.oid AND k.contype = 'c') END
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_type e ON e.oid = coalesce(b.typelem, t.typelem) AND coalesce(b.typcategory, t.typcategory) = 'A'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""

# Key columns of unique indexes, plus the columns their expressions and predicates use (pg_depend).
_UNIQUE = """
SELECT DISTINCT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0 AND (a.attnum = ANY(i.indkey) OR a.attnum IN (
    SELECT d.refobjsubid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
      AND d.refobjid = i.indrelid))
WHERE i.indrelid = %s AND i.indisunique"""

_CHECKS = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'c'"

_FOREIGN_KEYS = """
SELECT k.confrelid, n.nspname, c.relname,
       (SELECT array_agg(a.attname ORDER BY u.i) FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n),
       (SELECT array_agg(a.attname ORDER BY u.i) FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
        JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.conrelid = %s AND k.contype = 'f' ORDER BY k.conname"""

_CHECK_TEXT = re.compile(r"^CHECK \((?P<expr>.*)\)(?: NOT VALID)?$", re.DOTALL)


def _check_expressions(definitions: list[str] | None) -> list[str]:
    return [m["expr"] for d in definitions or () if (m := _CHECK_TEXT.match(d))]


def describe_table(conn: psycopg.Connection[Any], oid: int) -> Table:
    """Everything the filler needs to know about one table, read from the catalog."""
    with conn.cursor(row_factory=tuple_row) as cur:
        found = cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE c.oid = %s", [oid]).fetchone()
        assert found is not None, f"no table with oid {oid}"  # callers pass oids just read from pg_class
        schema, name = found
        checks = rules_for(_check_expressions([r[0] for r in cur.execute(_CHECKS, [oid]).fetchall()]))
        columns = []
        for row in cur.execute(_COLUMNS, [oid]).fetchall():
            (col, attnum, type_sql, base, typtype, category, element, not_null, default, identity, generated,
             typmod, labels, domain_checks) = row
            rule = checks.get(col, ColumnRule())
            for key, extra in rules_for(_check_expressions(domain_checks), value_name=col).items():
                if key == col:
                    _merge(rule, extra)
            columns.append(Column(col, attnum, type_sql, base, typtype, category, element, not_null, default,
                                  identity, generated, typmod, labels, rule))
        unique = {r[0] for r in cur.execute(_UNIQUE, [oid]).fetchall()}
        keys = [ForeignKey(list(cols), parent_oid, sql.SQL("{}.{}").format(sql.Identifier(ps), sql.Identifier(pn)),
                           list(pcols))
                for parent_oid, ps, pn, cols, pcols in cur.execute(_FOREIGN_KEYS, [oid]).fetchall()]
    ident = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    return Table(oid, f"{schema}.{name}", ident, columns, unique, keys)


def _merge(rule: ColumnRule, extra: ColumnRule) -> None:
    if extra.low is not None:
        rule.bound(">=", extra.low)
    if extra.high is not None:
        rule.bound("<=", extra.high)
    if extra.choices is not None:
        rule.allow(extra.choices)
    if extra.max_length is not None:
        rule.max_length = extra.max_length if rule.max_length is None else min(rule.max_length, extra.max_length)


def table_oid(conn: psycopg.Connection[Any], table: str) -> int:
    """The oid of ``schema.table`` (or ``table`` in public), taken literally, not as SQL."""
    schema, _, name = table.rpartition(".")
    row = conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                       [schema or "public", name]).fetchone()
    if row is None:
        raise FillError(f"fill: no table {table!r}")
    return int(row[0])


def fill(conn: psycopg.Connection[Any], table: str, rows: int, *, parents: bool = True) -> list[FillResult]:
    """Top ``table`` up to ``rows`` rows; with ``parents``, first top up the tables it references (directly
    or not) to ``rows`` too, so that every child row can reference a parent row of its own (a unique
    foreign key column cannot have more rows than its parent). Returns one result per table it inserted into."""
    order = _with_parents(conn, table_oid(conn, table)) if parents else [table_oid(conn, table)]
    return [r for r in _fill_in_order(conn, order, rows) if r.inserted or r.table == _name_of(conn, order[0])]


def _name_of(conn: psycopg.Connection[Any], oid: int) -> str:
    row = conn.execute("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE c.oid = %s", [oid]).fetchone()
    assert row is not None, f"no table with oid {oid}"  # callers pass oids just read from pg_class
    return str(row[0])


def fill_tables(conn: psycopg.Connection[Any], rows: int, *, exclude_schemas: tuple[str, ...] = ()) -> list[FillResult]:
    """Top every user table (partitioned tables through their parent) up to ``rows`` rows."""
    with conn.cursor(row_factory=tuple_row) as cur:
        oids = [r[0] for r in cur.execute(_TABLES, [list(exclude_schemas)]).fetchall()]
    return _fill_in_order(conn, oids, rows)


def _with_parents(conn: psycopg.Connection[Any], oid: int) -> list[int]:
    seen: list[int] = []
    pending = [oid]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        pending += [k.parent_oid for k in describe_table(conn, current).foreign_keys]
    return seen


def _fill_in_order(conn: psycopg.Connection[Any], oids: list[int], rows: int) -> list[FillResult]:
    if rows < 0:
        raise FillError(f"fill: rows must be 0 or more, not {rows}")
    tables = {oid: describe_table(conn, oid) for oid in oids}
    token = secrets.token_hex(3)
    return [_fill_one(conn, table, rows, token) for table in _dependency_order(tables)]


def _dependency_order(tables: dict[int, Table]) -> list[Table]:
    """Parents before children; tables in a cycle in name order after what can be ordered."""
    order: list[Table] = []
    placed: set[int] = set()
    remaining = dict(tables)
    while remaining:
        ready = [t for t in remaining.values()
                 if all(k.parent_oid in placed or k.parent_oid == t.oid or k.parent_oid not in tables
                        for k in t.foreign_keys)]
        if not ready:
            ready = [min(remaining.values(), key=lambda t: t.name)]
        for t in sorted(ready, key=lambda t: t.name):
            order.append(t)
            placed.add(t.oid)
            del remaining[t.oid]
    return order


def _count(conn: psycopg.Connection[Any], ident: sql.Composed) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row[0])


def _fill_one(conn: psycopg.Connection[Any], table: Table, rows: int, token: str) -> FillResult:
    start = time.perf_counter()
    existing = _count(conn, table.ident)
    missing = rows - existing
    if missing <= 0:
        return FillResult(table.name, 0, existing, 0.0)
    names, values, joins = [], [], []
    referenced: dict[str, sql.Composable] = {}
    for i, key in enumerate(table.foreign_keys):
        if any(c in referenced for c in key.columns):
            continue
        nullable = all(not _column(table, c).not_null for c in key.columns)
        parent_rows = 0 if key.parent_oid == table.oid else _count(conn, key.parent)
        if parent_rows == 0:
            if not nullable:
                raise FillError(f"fill {table.name}: foreign key ({', '.join(key.columns)}) needs rows in "
                                f"{key.parent.as_string(conn)}, which has none (fill it first, or pass parents)")
            referenced.update({c: sql.NULL for c in key.columns})
            continue
        alias = sql.Identifier(f"fk{i}")
        joins.append(sql.SQL(" JOIN (SELECT row_number() OVER (ORDER BY {cols}) AS rn, {cols} FROM {parent}) "
                             "AS {a} ON {a}.rn = 1 + (g - 1 + {offset}) % {count}").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, key.parent_columns)), parent=key.parent, a=alias,
            offset=sql.Literal(existing), count=sql.Literal(parent_rows)))
        referenced.update({c: sql.SQL("{}.{}").format(alias, sql.Identifier(p))
                           for c, p in zip(key.columns, key.parent_columns, strict=True)})
    for column in table.columns:
        if column.left_to_server:
            continue
        if column.name in referenced:
            names.append(column.name)
            values.append(referenced[column.name])
            continue
        if column.default is not None and not (column.name in table.unique_columns and "(" not in column.default):
            continue  # the default fills it (sequences included)
        base = _max(conn, table.ident, column) if column.name in table.unique_columns else 0
        expression = value_sql(column, token, base)
        if expression is UNFILLABLE:
            if column.not_null:
                raise FillError(f"fill {table.name}: cannot generate values of type {column.type_sql} for "
                                f"NOT NULL column {column.name}")
            continue
        names.append(column.name)
        values.append(expression)
    query = sql.SQL("INSERT INTO {t} ({cols}) SELECT {vals} FROM generate_series(1, {n}) AS g{joins}").format(
        t=table.ident, cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(values), n=sql.Literal(missing), joins=sql.SQL("").join(joins))
    if not names:
        query = sql.SQL("INSERT INTO {t} SELECT FROM generate_series(1, {n}) AS g").format(
            t=table.ident, n=sql.Literal(missing))
    try:
        with conn.transaction():
            conn.execute(query)
            conn.execute(sql.SQL("ANALYZE {}").format(table.ident))
    except psycopg.Error as exc:
        constraint = f" (constraint {exc.diag.constraint_name})" if exc.diag.constraint_name else ""
        raise FillError(f"fill {table.name} with {missing} rows: {exc.diag.message_primary}{constraint}: "
                        "the filler cannot satisfy it automatically") from None
    return FillResult(table.name, missing, rows, round((time.perf_counter() - start) * 1000, 3))


def _column(table: Table, name: str) -> Column:
    return next(c for c in table.columns if c.name == name)


def _max(conn: psycopg.Connection[Any], ident: sql.Composed, column: Column) -> int:
    """Where a unique integer column's values continue from (0 for other types)."""
    if column.base not in ("int2", "int4", "int8", "numeric"):
        return 0
    query = sql.SQL("SELECT coalesce(max({c}), 0)::int8 FROM {t}").format(c=sql.Identifier(column.name), t=ident)
    row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return max(0, int(row[0]))
