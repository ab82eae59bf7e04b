"""Schema drift: what changed in the catalog since poststack last changed it.

After every migrate or rollback run that did something, the engine stores one snapshot of the schema in
``<history schema>.schema_snapshot`` (a single current row, replaced each time). Comparing the live catalog
with it later shows changes made outside poststack: a hand-made index, an ALTER run in a console, a
dropped trigger. Only one snapshot per run is taken, not one per migration, because migrate throughput
matters and only the end state is ever compared.

A stored snapshot is only compared when it still describes the current state of the history (same
version) and the same PostgreSQL major version (catalog deparsing differs between majors); otherwise the
comparison would report poststack's own work, or an upgrade, as drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from poststack.snapshot import Snapshot, snapshot

TABLE = "schema_snapshot"

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    taken_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    after_version text,
    snapshot      jsonb NOT NULL
)"""


@dataclass(frozen=True)
class StoredSnapshot:
    """The snapshot recorded after the last migrate/rollback run, and the version it was taken after."""

    taken_at: datetime
    after_version: str | None  # version_text of the newest applied migration then; None when none was
    snapshot: Snapshot


@dataclass(frozen=True)
class Drift:
    """Differences between the live schema and the one recorded after version ``after_version``."""

    after_version: str | None
    taken_at: datetime
    differences: list[str]

    def lines(self) -> list[str]:
        """The differences, one readable line each (the evidence of a ``schema_drift`` issue)."""
        return list(self.differences)

    def describe(self) -> str:
        since = f"migration {self.after_version}" if self.after_version else "the last rollback to empty"
        return f"{len(self.differences)} schema change(s) since {since}: " + "; ".join(self.differences)


def _table(history_schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(history_schema), sql.Identifier(TABLE))


def _current_version(conn: psycopg.Connection[Any], history_schema: str) -> str | None:
    """The newest applied version as written, read from the history table (None when nothing is applied)."""
    migrations = sql.SQL("{}.{}").format(sql.Identifier(history_schema), sql.Identifier("migrations"))
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [migrations.as_string(conn)]).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(sql.SQL("SELECT version_text FROM {} WHERE status = 'applied' "
                               "ORDER BY version DESC LIMIT 1").format(migrations)).fetchone()
    return row[0] if row else None


def record_snapshot(conn: psycopg.Connection[Any], history_schema: str) -> StoredSnapshot:
    """Snapshot the schema (without the history schema) and store it as the current reference.

    Call once at the end of a migrate or rollback run that changed something, on the connection that
    holds the migration lock (the table is created on first use, which must not race).
    """
    table = _table(history_schema)
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(sql.SQL(_DDL).format(table=table))
        current = snapshot(conn, exclude_schemas=(history_schema,))
        version = _current_version(conn, history_schema)
        row = cur.execute(
            sql.SQL("INSERT INTO {} AS s (id, taken_at, after_version, snapshot) "
                    "VALUES (true, clock_timestamp(), %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "taken_at = excluded.taken_at, after_version = excluded.after_version, "
                    "snapshot = excluded.snapshot RETURNING taken_at").format(table),
            [version, Jsonb(current.to_dict())]).fetchone()
    taken_at = row[0] if row else datetime.now().astimezone()
    return StoredSnapshot(taken_at, version, current)


def stored_snapshot(conn: psycopg.Connection[Any], history_schema: str) -> StoredSnapshot | None:
    """The recorded reference, or None when none was recorded or its format is not readable."""
    table = _table(history_schema)
    with conn.cursor(row_factory=tuple_row) as cur:
        exists = cur.execute("SELECT to_regclass(%s) IS NOT NULL", [table.as_string(conn)]).fetchone()
        if not exists or not exists[0]:
            return None
        row = cur.execute(sql.SQL("SELECT taken_at, after_version, snapshot FROM {} WHERE id").format(table)
                          ).fetchone()
    if row is None:
        return None
    try:
        return StoredSnapshot(row[0], row[1], Snapshot.from_dict(row[2]))
    except ValueError:
        return None


def detect_drift(conn: psycopg.Connection[Any], history_schema: str) -> Drift | None:
    """Changes to the schema since the recorded reference; None when there are none or none can be known.

    "Cannot be known" means: no reference was recorded, the history has moved on since it was taken (a
    run that did not record one), or the server's major version changed. ``stored_snapshot`` tells these
    apart from a clean schema for callers that need to.
    """
    stored = stored_snapshot(conn, history_schema)
    if stored is None or not is_comparable(conn, history_schema, stored):
        return None
    current = snapshot(conn, exclude_schemas=(history_schema,))
    differences = stored.snapshot.diff(current, missing="dropped outside poststack",
                                       added="created outside poststack")
    if not differences:
        return None
    return Drift(stored.after_version, stored.taken_at, differences)


def is_comparable(conn: psycopg.Connection[Any], history_schema: str, stored: StoredSnapshot) -> bool:
    """Whether the reference still describes the state poststack left (same version, same major)."""
    same_major = stored.snapshot.server_version // 10000 == conn.info.server_version // 10000
    return same_major and stored.after_version == _current_version(conn, history_schema)
