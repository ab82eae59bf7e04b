"""The history and audit tables: their DDL, reads and writes. Nothing here commits on its own.

Callers decide the transaction: a transactional migration's SQL and its history row share one, which is
what guarantees the history never disagrees with what ran.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from poststack import __version__
from poststack.db.connection import client_identity
from poststack.db.identifiers import Identifier, regclass_text
from poststack.errors import AccessDenied, UsageError
from poststack.source.files import Migration, SqlFile

LAYOUT_VERSION = 2


class HistoryStatus(StrEnum):
    """A history row's status: the values the table's CHECK constraint allows (a member equals its text).

    applied: the migration's SQL committed in full. running: a non-transactional run is under way, or its
    process died (only the migration lock tells which). failed: a non-transactional run stopped at
    ``statements_done``. Transactional runs are only ever written applied: their failure leaves no row.
    """

    APPLIED = "applied"
    RUNNING = "running"
    FAILED = "failed"


STATUSES = tuple(HistoryStatus)
SOURCES = ("migrate", "recover", "repair", "baseline", "import", "mark", "adopt")
_SOURCE_CHECK = "CHECK (source IN (" + ", ".join(f"'{s}'" for s in SOURCES) + "))"  # constants only
# Each layout after the first, as the statements that bring the previous layout to it (run under the lock).
_UPGRADES: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE {schema}.migrations DROP CONSTRAINT IF EXISTS migrations_source_check",
        "ALTER TABLE {schema}.migrations ADD CONSTRAINT migrations_source_check " + _SOURCE_CHECK),
}

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version           bigint PRIMARY KEY,
    version_text      text NOT NULL,
    name              text NOT NULL,
    description       text,
    checksum          text NOT NULL,
    semantic_checksum text,
    rollback_checksum text,
    sql               text NOT NULL,
    rollback_sql      text,
    no_transaction    boolean NOT NULL DEFAULT false,
    status            text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'running', 'failed')),
    statements_done   integer,
    source            text NOT NULL DEFAULT 'migrate' CONSTRAINT migrations_source_check
                      CHECK (source IN ('migrate', 'recover', 'repair', 'baseline', 'import', 'mark', 'adopt')),
    applied_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_by        text NOT NULL DEFAULT current_user,
    client            text,
    execution_ms      integer,
    poststack_version text,
    error             text
);
CREATE TABLE IF NOT EXISTS {schema}.audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    db_user   text NOT NULL DEFAULT current_user,
    client    text,
    command   text NOT NULL,
    action    text NOT NULL,
    version   bigint,
    before    jsonb,
    after     jsonb,
    reason    text
);
COMMENT ON TABLE {schema}.migrations IS {layout};
"""

_COLUMNS = (
    "version", "version_text", "name", "description", "checksum", "semantic_checksum", "rollback_checksum",
    "sql", "rollback_sql", "no_transaction", "status", "statements_done", "source", "applied_at",
    "applied_by", "client", "execution_ms", "poststack_version", "error",
)


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history: what was applied, from which text, by whom, and how it went."""

    version: int
    version_text: str
    name: str
    description: str | None
    checksum: str
    semantic_checksum: str | None
    rollback_checksum: str | None
    sql: str
    rollback_sql: str | None
    no_transaction: bool
    status: HistoryStatus
    statements_done: int | None
    source: str
    applied_at: datetime
    applied_by: str
    client: str | None
    execution_ms: int | None
    poststack_version: str | None
    error: str | None

    def __post_init__(self) -> None:
        # The one place rows are built (read from the table, or made by ``replace``): the text becomes the
        # member, so every reader compares HistoryStatus members. A value the CHECK constraint forbids can
        # only be there if someone altered the table: refused here, by name, rather than guessed at.
        try:
            status = HistoryStatus(self.status)
        except ValueError:
            raise UsageError(f"history row {self.version} has status {self.status!r}, which is not one of "
                             f"{', '.join(STATUSES)} (was the table's CHECK constraint changed?); correct the "
                             "row by hand") from None
        object.__setattr__(self, "status", status)

    def as_applied(self, directory: Path) -> Migration:
        """The migration as it ran: the SQL this row stores, which is what the catalog reflects (the file on
        disk may have changed since), named as its file in ``directory``."""
        path = directory / f"{self.version_text}_{self.name}.sql"
        return Migration(self.version, self.version_text, self.name, SqlFile(path, self.sql, self.checksum))

    def as_json(self) -> dict[str, Any]:
        """The row for audit before/after images: everything but the (possibly large) SQL texts."""
        data = asdict(self)
        data.pop("sql")
        data.pop("rollback_sql")
        data["applied_at"] = self.applied_at.isoformat()
        return data


class History:
    """Access to the history tables in one schema (``poststack`` unless configured otherwise)."""

    def __init__(self, schema: str = "poststack") -> None:
        self.schema = schema
        self._schema_id = Identifier(schema)  # survives a % in the name (see poststack.db.identifiers)
        self._inserts: dict[tuple[str, ...], bytes] = {}

    def table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(self._schema_id, sql.Identifier(name))

    def exists(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                           [regclass_text(self.schema, "migrations")]).fetchone()
        return bool(row and row[0])

    def ensure(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables if missing, or bring an older layout up to this one. Call under the migration
        lock: concurrent DDL would race."""
        if self.exists(conn):
            self._upgrade(conn)
            return
        layout = sql.Literal(f"poststack history layout {LAYOUT_VERSION}")
        try:
            with conn.transaction():
                conn.execute(sql.SQL(_DDL).format(schema=self._schema_id, layout=layout))
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
            fix = ("the session is read-only: default_transaction_read_only is on, or the server is a standby"
                   if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)
                   else "grant CREATE on the database, or create the schema once as its owner")
            raise AccessDenied(f"cannot create the history tables in schema {self.schema!r} as role "
                               f"{conn.info.user!r}: {exc.diag.message_primary} ({fix}); nothing was changed") from None

    def layout(self, conn: psycopg.Connection[Any]) -> int:
        """The layout version recorded in the migrations table's comment; 0 when it is not poststack's table
        (never altered here: the caller's own check reports it)."""
        row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')",
                           [sql.SQL("{}.migrations").format(self._schema_id).as_string(conn)]).fetchone()
        text = (row[0] or "") if row else ""
        tail = text.rsplit(" ", 1)[-1]
        return int(tail) if text.startswith("poststack history layout ") and tail.isascii() and tail.isdigit() else 0

    def _upgrade(self, conn: psycopg.Connection[Any]) -> None:
        current = self.layout(conn)
        if current == 0 or current >= LAYOUT_VERSION:
            return
        with conn.transaction():
            for version in range(current + 1, LAYOUT_VERSION + 1):
                for statement in _UPGRADES.get(version, ()):
                    conn.execute(sql.SQL(statement).format(schema=self._schema_id))
            conn.execute(sql.SQL("COMMENT ON TABLE {}.migrations IS {}").format(
                self._schema_id, sql.Literal(f"poststack history layout {LAYOUT_VERSION}")))

    def schema_exists(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", [self.schema]).fetchone()
        return bool(row and row[0])

    def remove_if_empty(self, conn: psycopg.Connection[Any], *, drop_schema: bool) -> None:
        """Drop the history tables (and the schema) again when nothing was ever recorded in them.

        For a run that created them and then failed before recording anything: exit 5 promises no trace.
        """
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {}) AND NOT EXISTS (SELECT 1 FROM {})")
                               .format(self.table("migrations"), self.table("audit_log"))).fetchone()
            if not row or not row[0]:
                return
            conn.execute(sql.SQL("DROP TABLE {}, {}").format(self.table("audit_log"), self.table("migrations")))
            if drop_schema:
                conn.execute(sql.SQL("DROP SCHEMA {}").format(self._schema_id))  # RESTRICT: only if empty

    def rows(self, conn: psycopg.Connection[Any]) -> list[HistoryRow]:
        if not self.exists(conn):
            return []
        query = sql.SQL("SELECT {} FROM {} ORDER BY version").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self.table("migrations"))
        try:
            with conn.cursor(row_factory=class_row(HistoryRow)) as cur:
                return cur.execute(query).fetchall()
        except psycopg.errors.UndefinedColumn as exc:  # e.g. another tool's public.migrations
            raise UsageError(f"{self.schema}.migrations is not a poststack history table "
                             f"({exc.diag.message_primary}); choose another --history-schema") from None

    def row(self, conn: psycopg.Connection[Any], version: int) -> HistoryRow | None:
        """One version's row, read alone: reading them all per call made long verify runs quadratic."""
        if not self.exists(conn):
            return None
        query = sql.SQL("SELECT {} FROM {} WHERE version = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self.table("migrations"))
        with conn.cursor(row_factory=class_row(HistoryRow)) as cur:
            return cur.execute(query, [version]).fetchone()

    def insert(self, conn: psycopg.Connection[Any], migration: Migration, *,
               status: HistoryStatus = HistoryStatus.APPLIED,
               source: str = "migrate", execution_ms: int | None = None,
               statements_done: int | None = None) -> None:
        values: dict[str, Any] = {
            "version": migration.version,
            "version_text": migration.version_text,
            "name": migration.name,
            "description": migration.description,
            "checksum": migration.checksum,
            "semantic_checksum": migration.semantic_checksum,
            "rollback_checksum": migration.rollback.checksum if migration.rollback else None,
            "sql": migration.sql,
            "rollback_sql": migration.rollback.text if migration.rollback else None,
            "no_transaction": migration.no_transaction,
            "status": status,
            "statements_done": statements_done,
            "source": source,
            "client": client_identity(),
            "execution_ms": execution_ms,
            "poststack_version": __version__,
        }
        conn.execute(self._insert_query(tuple(values), conn), list(values.values()))

    def _insert_query(self, columns: tuple[str, ...], conn: psycopg.Connection[Any]) -> bytes:
        """The INSERT rendered once per column list: composing it per migration cost more than sending it."""
        cached = self._inserts.get(columns)
        if cached is None:
            cached = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                self.table("migrations"),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            ).as_bytes(conn)
            self._inserts[columns] = cached
        return cached

    def update(self, conn: psycopg.Connection[Any], version: int, **changes: Any) -> None:
        unknown = set(changes) - set(_COLUMNS)
        if unknown:  # a programming error: column names come from poststack's code, never from input
            raise ValueError(f"unknown history columns: {sorted(unknown)}")
        query = sql.SQL("UPDATE {} SET {} WHERE version = %s").format(
            self.table("migrations"),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in changes),
        )
        conn.execute(query, [*changes.values(), version])

    def delete(self, conn: psycopg.Connection[Any], version: int) -> None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(self.table("migrations")), [version])

    def audit(self, conn: psycopg.Connection[Any], *, command: str, action: str, version: int | None,
              before: HistoryRow | None, after: HistoryRow | None, reason: str) -> None:
        """Record a write to the history that is not a plain migrate or rollback."""
        conn.execute(
            sql.SQL("INSERT INTO {} (client, command, action, version, before, after, reason) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(self.table("audit_log")),
            [client_identity(), command, action, version,
             json.dumps(before.as_json()) if before else None,
             json.dumps(after.as_json()) if after else None, reason],
        )

    def audit_entries(self, conn: psycopg.Connection[Any], limit: int = 100) -> Sequence[tuple[Any, ...]]:
        if not self.exists(conn):
            return []
        return conn.execute(
            sql.SQL("SELECT id, at, db_user, client, command, action, version, before, after, reason "
                    "FROM {} ORDER BY id DESC LIMIT %s").format(self.table("audit_log")), [limit]).fetchall()


# -- per-statement progress of non-transactional migrations and rollbacks -----------------------------------
# A table of its own, created on first use under the migration lock: existing histories need no upgrade and
# the readers of the migrations table see no new column. Each row says which statement of which run did
# what, and when; the migrations row's statements_done stays the single figure resume relies on.

_STATEMENT_LOG_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version   bigint NOT NULL,
    direction text NOT NULL CHECK (direction IN ('migrate', 'rollback')),
    statement integer,
    line      integer,
    event     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    ms        integer,
    detail    text,
    client    text
)
"""
STATEMENT_EVENTS = ("started", "resumed", "ran", "skipped", "found_done", "dropped_invalid", "failed",
                    "interrupted", "finished")


@dataclass(frozen=True)
class StatementLogEntry:
    """One event of a non-transactional run: ``statement`` is 1-based, None for run-level events."""

    version: int
    direction: str
    statement: int | None
    line: int | None
    event: str
    at: datetime
    ms: int | None
    detail: str | None


def ensure_statement_log(history: History, conn: psycopg.Connection[Any]) -> None:
    """Create the statement log if missing (call under the migration lock, with the history present)."""
    table = history.table("statement_log")
    found = conn.execute("SELECT to_regclass(%s)", [table.as_string(conn)]).fetchone()
    if found and found[0] is None:
        with conn.transaction():
            conn.execute(sql.SQL(_STATEMENT_LOG_DDL).format(table=table))


def progress_sql(history: History, version: int, direction: str, event: str, *, statement: int | None = None,
                 line: int | None = None, ms: int | sql.Composable | None = None, detail: str | None = None,
                 **changes: Any) -> sql.Composed:
    """One statement (no parameters, so it can share a simple query with others) that applies ``changes``
    to the migrations row and logs the event, only if the row exists: the two can never disagree."""
    unknown = set(changes) - set(_COLUMNS)
    if unknown:  # a programming error, as in History.update: not a PoststackError, no user can cause it
        raise ValueError(f"unknown history columns: {sorted(unknown)}")
    assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v))
                                     for k, v in changes.items()) if changes else sql.SQL("version = version")
    values = sql.SQL(", ").join(v if isinstance(v, sql.Composable) else sql.Literal(v)
                                for v in (direction, statement, line, event, ms, detail, client_identity()))
    return sql.SQL("WITH row AS (UPDATE {} SET {} WHERE version = {} RETURNING version) "
                   "INSERT INTO {} (version, direction, statement, line, event, ms, detail, client) "
                   "SELECT version, {} FROM row").format(
        history.table("migrations"), assignments, sql.Literal(version), history.table("statement_log"), values)


def statement_log(history: History, conn: psycopg.Connection[Any], version: int | None = None,
                  since: datetime | None = None) -> list[StatementLogEntry]:
    """The logged events, oldest first (of one version, and from a time on, when given)."""
    table = history.table("statement_log")
    found = conn.execute("SELECT to_regclass(%s)", [table.as_string(conn)]).fetchone()
    if not found or found[0] is None:
        return []
    query = sql.SQL("SELECT version, direction, statement, line, event, at, ms, detail FROM {} "
                    "WHERE (%s::bigint IS NULL OR version = %s) AND (%s::timestamptz IS NULL OR at >= %s) "
                    "ORDER BY id").format(table)
    with conn.cursor(row_factory=class_row(StatementLogEntry)) as cur:
        return cur.execute(query, [version, version, since, since]).fetchall()
