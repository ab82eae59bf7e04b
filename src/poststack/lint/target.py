"""What lint reads from a target database: table sizes and which migrations are already applied.

Only planner statistics are read (``pg_class.reltuples``, ``relpages`` and the relation's size), never a
row: lint against production must be cheap and must not take locks beyond a catalog read. The migrations
the history does not record as applied form the *batch* a deploy will run together; a table one of them
creates does not exist yet, so later migrations of the batch touch a new table, not an existing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from poststack.db.connection import connect, mask_url
from poststack.db.history import History, HistoryStatus

_SIZES = """
SELECT n.nspname, c.relname, c.reltuples::float8, c.relpages::int8,
       pg_total_relation_size(c.oid)::int8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'"""


@dataclass(frozen=True)
class TableSize:
    """The planner's idea of a table's size; ``rows`` is None when it was never analyzed or vacuumed."""

    name: str  # schema.table
    rows: int | None
    pages: int
    bytes: int

    def describe(self) -> str:
        rows = "rows unknown (never analyzed)" if self.rows is None else f"~{self.rows:,} rows"
        return f"{self.name}: {rows}, {self.bytes / 1048576:,.1f} MiB"

    @property
    def weight(self) -> tuple[int, int]:
        """Sort key, biggest first when negated: estimated rows, then bytes."""
        return (self.rows if self.rows is not None else 0, self.bytes)


@dataclass
class TargetFacts:
    """Sizes of the target's tables, its search_path, and the versions its history records as applied."""

    database: str  # masked URL
    sizes: dict[tuple[str, str], TableSize] = field(default_factory=dict)
    search_path: list[str] = field(default_factory=list)
    applied: set[int] = field(default_factory=set)

    def size_of(self, table: str | None) -> TableSize | None:
        """The size of ``table`` as a finding names it (``schema.t`` or ``t`` resolved by search_path)."""
        if not table:
            return None
        schema, _, name = table.rpartition(".")
        if schema:
            return self.sizes.get((schema, name))
        return next((self.sizes[(s, name)] for s in self.search_path if (s, name) in self.sizes), None)


def read_target(database_url: str, history_schema: str) -> TargetFacts:
    """Read sizes and applied versions in one read-only snapshot (raises ConnectError, exit 3)."""
    with connect(database_url, autocommit=True) as conn:
        facts = TargetFacts(mask_url(database_url))
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            schemas = cur.execute("SELECT current_schemas(false)").fetchone()
            assert schemas is not None  # a SELECT without FROM returns one row
            facts.search_path = list(schemas[0])
            for schema, name, tuples, pages, size in cur.execute(_SIZES).fetchall():
                rows = int(tuples) if tuples >= 0 else None  # -1: never analyzed (PostgreSQL 14+)
                if rows == 0 and pages > 0:
                    rows = None  # before 14, 0 with pages also means not analyzed yet
                facts.sizes[(schema, name)] = TableSize(f"{schema}.{name}", rows, pages, size)
            facts.applied = _applied(conn, history_schema)
    return facts


def _applied(conn: psycopg.Connection[Any], history_schema: str) -> set[int]:
    return {row.version for row in History(history_schema).rows(conn) if row.status == HistoryStatus.APPLIED}
