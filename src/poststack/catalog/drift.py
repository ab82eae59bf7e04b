"""Schema drift: what changed in the catalog since poststack last changed it.

After every migrate or rollback run that did something, the engine stores one snapshot of the schema in
``<history schema>.schema_snapshot`` (a single current row, replaced each time). Comparing the live catalog
with it later shows changes made outside poststack: a hand-made index, an ALTER run in a console, a
dropped trigger. Only one snapshot per run is taken, not one per migration, because migrate throughput
matters and only the end state is ever compared.

A stored snapshot is only compared when it still describes the current state of the history (same
version) and the same PostgreSQL major version (catalog deparsing differs between majors); otherwise the
comparison would report poststack's own work, or an upgrade, as drift.

The snapshot is stored with a catalog fingerprint (``poststack.catalog.fingerprint``), taken just before it. A
check first compares fingerprints, which costs a fraction of a snapshot, and only snapshots and compares
in full when they differ: diagnose on an untouched 5,000-table schema must stay close to ``status``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb, set_json_loads

from poststack.catalog import ignored_objects, sibling_histories
from poststack.catalog.fingerprint import STATEMENT, catalog_fingerprint, fingerprint_of
from poststack.catalog.snapshot import Snapshot, loads, snapshot
from poststack.db.identifiers import Identifier, regclass_text

TABLE = "schema_snapshot"

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    taken_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    after_version text,
    snapshot      jsonb NOT NULL,
    fingerprint   text
)"""
# Tables recorded by versions before the fingerprint lack the column: added by the next record, read as NULL
# until then (a NULL fingerprint never matches, so the comparison simply runs in full).
_ADD_FINGERPRINT = "ALTER TABLE {table} ADD COLUMN fingerprint text"
_HAS_FINGERPRINT = """EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
    WHERE attrelid = pg_catalog.to_regclass(%(snapshots)s) AND attname = 'fingerprint' AND NOT attisdropped)"""
_HAS_FINGERPRINT_QUERY = "SELECT " + _HAS_FINGERPRINT  # constants only: no identifier is formatted in
_PRESENT = f"""SELECT pg_catalog.to_regclass(%(snapshots)s) IS NOT NULL,
    pg_catalog.to_regclass(%(migrations)s) IS NOT NULL, {_HAS_FINGERPRINT}"""


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


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of one check: whether drift could be known at all, and if so, the drift (or None).

    ``checked`` is False when no comparable reference exists (none recorded, the history moved on since,
    another server major); ``reason`` then says which. ``full`` tells whether the snapshot was compared in
    full, or the fingerprint already showed an unchanged catalog.
    """

    checked: bool
    drift: Drift | None = None
    full: bool = False
    reason: str = ""


@dataclass(frozen=True)
class _Header:
    """What decides whether the big snapshot needs reading: the small columns of the stored row, the
    history's current version and the live fingerprint, all read in one round trip."""

    after_version: str | None
    fingerprint: str | None  # as stored; None when recorded by a version without fingerprints
    current_version: str | None
    live_fingerprint: str | None  # None when there is no stored one to compare it with


def _table(history_schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(Identifier(history_schema), sql.Identifier(TABLE))


def _current_version(conn: psycopg.Connection[Any], history_schema: str) -> str | None:
    """The newest applied version as written, read from the history table (None when nothing is applied)."""
    migrations = sql.SQL("{}.{}").format(Identifier(history_schema), sql.Identifier("migrations"))
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                          [regclass_text(history_schema, "migrations")]).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(sql.SQL("SELECT version_text FROM {} WHERE status = 'applied' "
                               "ORDER BY version DESC LIMIT 1").format(migrations)).fetchone()
    return row[0] if row else None


def record_snapshot(conn: psycopg.Connection[Any], history_schema: str) -> StoredSnapshot:
    """Snapshot the schema (without the history schema, nor other applications' poststack histories: see
    ``poststack.catalog.sibling_histories``) and store it as the current reference.

    Call once at the end of a migrate, rollback or recover run that changed something, on the connection
    that holds the migration lock (the table is created on first use, which must not race). The fingerprint
    is read before the snapshot: see ``poststack.catalog.fingerprint`` for why that order is the safe one.
    """
    table = _table(history_schema)
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(sql.SQL(_DDL).format(table=table))
        if not _has_fingerprint_column(conn, history_schema):
            cur.execute(sql.SQL(_ADD_FINGERPRINT).format(table=table))
        fingerprint = catalog_fingerprint(conn, (history_schema,))
        siblings = sibling_histories.find(conn, (history_schema,))
        current = siblings.strip(snapshot(conn, exclude_schemas=siblings.exclude_schemas(history_schema)))
        version = _current_version(conn, history_schema)
        row = cur.execute(
            sql.SQL("INSERT INTO {} AS s (id, taken_at, after_version, snapshot, fingerprint) "
                    "VALUES (true, clock_timestamp(), %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "taken_at = excluded.taken_at, after_version = excluded.after_version, "
                    "snapshot = excluded.snapshot, fingerprint = excluded.fingerprint "
                    "RETURNING taken_at").format(table),
            [version, Jsonb(current.to_dict()), fingerprint]).fetchone()
    taken_at = row[0] if row else datetime.now().astimezone()
    return StoredSnapshot(taken_at, version, current)


def stored_snapshot(conn: psycopg.Connection[Any], history_schema: str) -> StoredSnapshot | None:
    """The recorded reference, or None when none was recorded or its format is not readable."""
    table = _table(history_schema)
    if not _table_exists(conn, history_schema):
        return None
    with conn.cursor(row_factory=tuple_row) as cur:
        set_json_loads(loads, cur)  # megabytes of JSON at scale: parsed without the cyclic GC
        row = cur.execute(sql.SQL("SELECT taken_at, after_version, snapshot FROM {} WHERE id").format(table)
                          ).fetchone()
    if row is None:
        return None
    try:
        return StoredSnapshot(row[0], row[1], Snapshot.from_dict(row[2]))
    except ValueError:
        return None


def detect_drift(conn: psycopg.Connection[Any], history_schema: str, *,
                 ignore: Collection[tuple[str, str]] = ()) -> Drift | None:
    """Changes to the schema since the recorded reference; None when there are none or none can be known.

    "Cannot be known" means: no reference was recorded, the history has moved on since it was taken (a
    run that did not record one), or the server's major version changed; ``check_drift`` tells these apart
    from a clean schema for callers that need to. ``ignore`` is as for ``check_drift``.
    """
    return check_drift(conn, history_schema, ignore=ignore).drift


def check_drift(conn: psycopg.Connection[Any], history_schema: str, *,
                ignore: Collection[tuple[str, str]] = ()) -> DriftCheck:
    """Compare the live schema with the recorded reference, cheaply when the catalog has not moved.

    ``ignore`` lists (kind, name) objects, as the snapshot names them, to leave out of the comparison
    together with everything inside them: what the caller already accounts for otherwise (diagnose: what
    an interrupted run of poststack left behind). Leaving objects out can only remove differences, so an
    unchanged fingerprint answers "no drift" whatever is ignored.
    """
    header = _stored_header(conn, history_schema)
    if header is None:
        return DriftCheck(False, reason="no schema snapshot was recorded")
    if header.after_version != header.current_version:
        return DriftCheck(False, reason="the history has changed since the snapshot was recorded")
    if header.fingerprint is not None and header.fingerprint == header.live_fingerprint:
        return DriftCheck(True)  # same catalog rows on the same server: the schema is the recorded one
    stored = stored_snapshot(conn, history_schema)
    if stored is None:
        return DriftCheck(False, reason="the recorded snapshot is in a format this version does not read")
    if not is_comparable(conn, history_schema, stored):
        return DriftCheck(False, reason="the snapshot was recorded on another PostgreSQL major version")
    # Other applications' histories are left out of both sides: a reference stored before they were
    # recognised may still hold them. Another tool's tables that ``db adopt`` left in place are that tool's
    # business, never drift.
    siblings = sibling_histories.find(conn, (history_schema,))
    live = siblings.strip(snapshot(conn, exclude_schemas=siblings.exclude_schemas(history_schema)))
    ignore = {*ignore, *ignored_objects.exclusions(ignored_objects.read(conn, history_schema), stored.snapshot, live)}
    before = siblings.strip(stored.snapshot).without(ignore)
    after = live.without(ignore)
    differences = before.diff(after, missing="dropped outside poststack", added="created outside poststack")
    drift = Drift(stored.after_version, stored.taken_at, differences) if differences else None
    return DriftCheck(True, drift, full=True)


def is_comparable(conn: psycopg.Connection[Any], history_schema: str, stored: StoredSnapshot) -> bool:
    """Whether the reference still describes the state poststack left (same version, same major)."""
    same_major = stored.snapshot.server_version // 10000 == conn.info.server_version // 10000
    return same_major and stored.after_version == _current_version(conn, history_schema)


def _table_exists(conn: psycopg.Connection[Any], history_schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [regclass_text(history_schema, TABLE)]).fetchone()
    return bool(row and row[0])


def _has_fingerprint_column(conn: psycopg.Connection[Any], history_schema: str) -> bool:
    row = conn.execute(_HAS_FINGERPRINT_QUERY, {"snapshots": regclass_text(history_schema, TABLE)}).fetchone()
    return bool(row and row[0])


def _stored_header(conn: psycopg.Connection[Any], history_schema: str) -> _Header | None:
    """The stored row without its snapshot (megabytes of JSON at scale), the current version and the live
    fingerprint, or None when no snapshot was recorded. Two round trips: on a small database the check
    costs more in latency than in work, and diagnose must stay close to status there too."""
    table = _table(history_schema)
    migrations = sql.SQL("{}.{}").format(Identifier(history_schema), sql.Identifier("migrations"))
    names = {"snapshots": regclass_text(history_schema, TABLE),
             "migrations": regclass_text(history_schema, "migrations")}
    present = conn.execute(_PRESENT, names).fetchone()
    if not present or not present[0]:
        return None
    has_migrations, has_fingerprint = present[1], present[2]
    current = (sql.SQL("(SELECT version_text FROM {} WHERE status = 'applied' ORDER BY version DESC LIMIT 1)")
               .format(migrations) if has_migrations else sql.SQL("NULL::text"))
    stored, live = ((sql.SQL("s.fingerprint"), sql.SQL("(" + STATEMENT + ")")) if has_fingerprint
                    else (sql.SQL("NULL::text"), sql.SQL("NULL::text")))
    row = conn.execute(sql.SQL("SELECT s.after_version, {}, {}, {} FROM {} s WHERE s.id").format(
        stored, current, live, table), {"excluded": [history_schema]}).fetchone()
    if row is None:
        return None
    live_fingerprint = fingerprint_of(row[3], conn.info.server_version) if has_fingerprint else None
    return _Header(row[0], row[1], row[2], live_fingerprint)
