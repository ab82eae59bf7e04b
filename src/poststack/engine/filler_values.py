"""One SQL expression per column type, in terms of ``g`` (the generate_series row number).

Values are distinct per row wherever the type allows it (so unique indexes hold), respect the column's
CHECK-derived rule (bounds, allowed values, length) and its type modifier (varchar(n), numeric(p,s)),
and are cast to the column's declared type (a domain's own CHECK then applies on insert).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from psycopg import sql

from poststack.engine.filler_checks import ColumnRule

UNFILLABLE = sql.SQL("NULL /* unfillable */")
G = sql.SQL("g")
_INTEGERS = frozenset({"int2", "int4", "int8"})
_NUMBERS = _INTEGERS | {"numeric", "float4", "float8"}
_TEXTS = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_LIMITS = {"int2": 32767, "int4": 2147483647}


@dataclass
class Column:
    """A column to fill, as the filler read it from the catalog. It lives beside the values made from it, so
    that this module needs nothing from the filler, which imports it."""

    name: str
    attnum: int
    type_sql: str  # format_type(), quoted
    base: str  # the value's type name (a domain's base type)
    typtype: str  # of the base: b, e, r, c, ...
    category: str  # pg_type.typcategory of the base (A: array)
    element: str | None  # element type name of an array
    not_null: bool
    default: str | None
    identity: str
    generated: str
    typmod: int
    labels: list[str] | None = None  # enum labels (of the base type)
    rule: ColumnRule = field(default_factory=ColumnRule)

    @property
    def left_to_server(self) -> bool:
        return bool(self.identity or self.generated)


def value_sql(column: Column, token: str, base: int) -> sql.Composable:
    """The expression for ``column``, or UNFILLABLE when the filler has no generator for its type."""
    expression = _raw(column, token, base)
    if expression is UNFILLABLE:
        return expression
    return sql.SQL("({})::{}").format(expression, sql.SQL(column.type_sql))


def _cycle(values: list[object]) -> sql.Composable:
    items = sql.SQL(", ").join(sql.Literal(str(v) if isinstance(v, Decimal) else v) for v in values)
    return sql.SQL("(ARRAY[{}])[1 + (g % {})]").format(items, sql.Literal(len(values)))


def _raw(column: Column, token: str, base: int) -> sql.Composable:
    rule, kind = column.rule, column.base
    if rule.choices:
        return _cycle(list(rule.choices))
    if column.typtype == "e" and column.labels:
        return _cycle(list(column.labels))
    if column.category == "A":
        return _array(column, token)
    if kind in _NUMBERS:
        return _number(column, base)
    if kind in _TEXTS:
        text = sql.SQL("concat({}, g)").format(sql.Literal(f"{column.name[:12]}-{token}-"))
        limit = _text_limit(column)
        return sql.SQL("right({}, {})").format(text, sql.Literal(limit)) if limit is not None else text
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return sql.SQL(simple).format(token=sql.Literal(f"{token}{column.name}"),
                                      position=sql.Literal(column.attnum))
    return UNFILLABLE


_SIMPLE = {
    "bool": "(g % 2 = 0)",
    "uuid": "md5({token} || g::text)::uuid",
    "date": "date '2024-01-01' + ((g + {position}) % 3650)::int",
    "timestamp": "timestamp '2024-01-01' + g * interval '1 second' + {position} * interval '1 minute'",
    "timestamptz": "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' + {position} * interval '1 minute'",
    "time": "time '00:00' + (g % 86400) * interval '1 second'",
    "timetz": "(time '00:00' + (g % 86400) * interval '1 second')::timetz",
    "interval": "g * interval '1 second'",
    "json": "json_build_object('n', g)",
    "jsonb": "jsonb_build_object('n', g)",
    "bytea": "decode(md5(g::text), 'hex')",
    "inet": "'10.0.0.0'::inet + g",
    "tsvector": "to_tsvector('simple', 'row ' || g)",
    "xml": "xmlelement(name row, g)",
}


def _number(column: Column, base: int) -> sql.Composable:
    rule = column.rule
    low, high = rule.low, rule.high
    limit = _LIMITS.get(column.base)
    if column.base == "numeric" and column.typmod >= 4:
        precision, scale = ((column.typmod - 4) >> 16) & 0xFFFF, (column.typmod - 4) & 0xFFFF
        whole = 10 ** (precision - scale) - 1
        limit = whole if limit is None else min(limit, whole)
    if limit is not None:
        high = Decimal(limit) if high is None else min(high, Decimal(limit))
        if low is None:
            low = Decimal(0) if high >= 0 else -Decimal(limit)
    if low is not None and high is not None:
        span = int(high - low) + 1
        if span <= 0:
            return UNFILLABLE
        return sql.SQL("{} + ((g + {}) % {})").format(sql.Literal(str(low)), sql.Literal(base), sql.Literal(span))
    if low is not None:
        return sql.SQL("{} + {} + g").format(sql.Literal(str(low)), sql.Literal(base))
    if high is not None:
        return sql.SQL("{} - {} - g").format(sql.Literal(str(high)), sql.Literal(base))
    return sql.SQL("{} + g").format(sql.Literal(base))


def _text_limit(column: Column) -> int | None:
    limits = [column.typmod - 4] if column.base in ("varchar", "bpchar") and column.typmod > 4 else []
    if column.rule.max_length is not None:
        limits.append(column.rule.max_length)
    return min(limits) if limits else None


def _array(column: Column, token: str) -> sql.Composable:
    element = {"_int4": "int4", "_int8": "int8", "_text": "text", "_varchar": "text", "_uuid": "uuid"}.get(
        f"_{column.element}" if column.element else "")
    if element in _INTEGERS:
        return sql.SQL("ARRAY[g]")
    if element == "text":
        return sql.SQL("ARRAY[{} || g]").format(sql.Literal(f"{token}-"))
    if element == "uuid":
        return sql.SQL("ARRAY[md5({} || g::text)::uuid]").format(sql.Literal(token))
    return UNFILLABLE
