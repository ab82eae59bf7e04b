"""Objects in the target database that another tool owns: left out of every drift comparison.

``db adopt`` leaves the previous tool's history table (Flyway's ``flyway_schema_history``, sqitch's whole
``sqitch`` schema...) in place, because that tool's own migrations may refer to it and the team may still
need it to roll back the switch. The table is not poststack's business: when it is later dropped, or the old
tool adds a row or its lock table, ``diagnose`` must not call that drift. The list lives beside the history
(``<history schema>.ignored_objects``), so it holds for every later command, whoever runs it.

An entry is a table (``kind = 'table'``) or a whole schema (``kind = 'schema'``, with everything in it).
Snapshots name relations by ``regclass`` text, which leaves out the schema when it is on the search path,
so an entry matches both spellings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from poststack.catalog.snapshot import Snapshot, quote_ident

TABLE = "ignored_objects"
_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    kind        text NOT NULL CHECK (kind IN ('table', 'schema')),
    schema_name text NOT NULL,
    name        text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, schema_name, name)
)"""


@dataclass(frozen=True)
class IgnoredObject:
    kind: str  # table | schema
    schema: str
    name: str = ""  # empty for a schema

    def __str__(self) -> str:
        return f"schema {self.schema}" if self.kind == "schema" else f"table {self.schema}.{self.name}"


def _table(history_schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(history_schema), sql.Identifier(TABLE))


def add(conn: psycopg.Connection[Any], history_schema: str, objects: Iterable[IgnoredObject], reason: str) -> None:
    """Ignore these objects from now on (call under the migration lock: the table is created on first use)."""
    table = _table(history_schema)
    conn.execute(sql.SQL(_DDL).format(table=table))
    for obj in objects:
        conn.execute(sql.SQL("INSERT INTO {} (kind, schema_name, name, reason) VALUES (%s, %s, %s, %s) "
                             "ON CONFLICT (kind, schema_name, name) DO NOTHING").format(table),
                     [obj.kind, obj.schema, obj.name, reason])


def read(conn: psycopg.Connection[Any], history_schema: str) -> list[IgnoredObject]:
    table = _table(history_schema)
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table.as_string(conn)]).fetchone()
    if not exists or not exists[0]:
        return []
    return [IgnoredObject(*row) for row in
            conn.execute(sql.SQL("SELECT kind, schema_name, name FROM {} ORDER BY 1, 2, 3").format(table))]


def exclusions(objects: Iterable[IgnoredObject], *snapshots: Snapshot) -> set[tuple[str, str]]:
    """(kind, name) pairs, as ``Snapshot.without`` takes them, covering the ignored objects in ``snapshots``
    (what is inside a table, such as its index and constraints, ``without`` removes with it)."""
    pairs: set[tuple[str, str]] = set()
    for obj in objects:
        schema = quote_ident(obj.schema)
        if obj.kind == "table":
            pairs |= {("table", f"{schema}.{quote_ident(obj.name)}"), ("table", quote_ident(obj.name))}
            continue
        pairs.add(("schema", schema))
        for snap in snapshots:
            pairs |= {(kind, name) for kind, named in snap.objects.items() for name in named
                      if name.startswith(schema + ".")}
    return pairs
