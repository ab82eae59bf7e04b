"""DbHelper: what a migration test asks of its database, each in one call.

Existence checks read pg_catalog with the schema and name passed as parameters (never formatted into SQL),
so an identifier's case and quoting are taken literally: ``table_exists("app.Users")`` looks for a table
named ``Users``. A name without a schema means ``public``.

``apply_untracked`` and ``track_only`` deliberately make the database and its history disagree: they are how
tests reproduce a project whose migrations were run by hand or by another tool, and a history that records
what never ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.config import DEFAULT_SCHEMA
from poststack.db.connection import connect, mask_url
from poststack.db.history import History, HistoryRow, HistoryStatus
from poststack.engine.filler import FillResult, fill
from poststack.errors import UsageError
from poststack.source.files import Migration, load_migrations
from poststack.source.sqltext import split_statements

MigrationRef = Migration | int | str | Path


def _split(name: str, schema: str | None) -> tuple[str, str]:
    if schema is not None:
        return schema, name
    if "." in name:
        head, _, tail = name.partition(".")
        return head, tail
    return "public", name


class DbHelper:
    """One test database, one lazily opened autocommit connection, closed by ``close()``."""

    __test__ = False

    def __init__(self, database_url: str, migrations_dir: str | Path | None = None, *,
                 history_schema: str = DEFAULT_SCHEMA) -> None:
        self.database_url = database_url
        self.migrations_dir = Path(migrations_dir) if migrations_dir is not None else None
        self.history = History(history_schema)
        self._conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return f"DbHelper({mask_url(self.database_url)!r})"

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The helper's connection (autocommit); reopened if a test closed it or the server ended it."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.database_url, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DbHelper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plain SQL -------------------------------------------------------------------------------------
    def execute(self, query: str | bytes | sql.SQL | sql.Composed, params: Any = None) -> None:
        """Run SQL in autocommit. Without params a string may hold several statements."""
        if params is None and isinstance(query, str):
            query = query.encode()  # bytes: no placeholder parsing, several statements allowed
        self.conn.execute(query, params)

    def fetch_one(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> tuple[Any, ...] | None:
        return self.conn.execute(query, params).fetchone()

    def fetch_all(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()

    def fetch_value(self, query: str | sql.SQL | sql.Composed, params: Any = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.fetch_one(query, params)
        return row[0] if row else None

    def _exists(self, query: str, params: list[Any]) -> bool:
        return bool(self.fetch_value(f"SELECT EXISTS ({query})", params))

    # -- catalog checks --------------------------------------------------------------------------------
    def schema_exists(self, name: str) -> bool:
        return self._exists("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])

    def _relation_exists(self, name: str, schema: str | None, kinds: str) -> bool:
        nsp, rel = _split(name, schema)
        return self._exists(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = ANY(%s)", [nsp, rel, list(kinds)])

    def table_exists(self, name: str, schema: str | None = None) -> bool:
        """A table (plain or partitioned) ``name`` or ``schema.name``."""
        return self._relation_exists(name, schema, "rp")

    def view_exists(self, name: str, schema: str | None = None) -> bool:
        """A view or materialized view."""
        return self._relation_exists(name, schema, "vm")

    def sequence_exists(self, name: str, schema: str | None = None) -> bool:
        return self._relation_exists(name, schema, "S")

    def index_exists(self, name: str, schema: str | None = None, *, valid: bool | None = None) -> bool:
        """An index; with ``valid=True`` only a usable one (a failed CONCURRENTLY build leaves an invalid one)."""
        nsp, rel = _split(name, schema)
        condition = "" if valid is None else " AND i.indisvalid = %s"
        params: list[Any] = [nsp, rel] + ([] if valid is None else [valid])
        return self._exists(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = %s AND c.relname = %s{condition}", params)

    def column_exists(self, table: str, column: str, schema: str | None = None) -> bool:
        nsp, rel = _split(table, schema)
        return self._exists(
            "SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
            "AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped", [nsp, rel, column])

    def function_exists(self, name: str, schema: str | None = None) -> bool:
        """A function or procedure of that name, whatever its arguments."""
        nsp, fn = _split(name, schema)
        return self._exists(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname = %s", [nsp, fn])

    def type_exists(self, name: str, schema: str | None = None) -> bool:
        """A type created by DDL (enum, domain, composite, range), not a table's row type."""
        nsp, typ = _split(name, schema)
        return self._exists(
            "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = %s AND t.typname = %s AND (t.typtype IN ('e', 'd', 'r', 'm') OR "
            "(t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))",
            [nsp, typ])

    def trigger_exists(self, table: str, trigger: str, schema: str | None = None) -> bool:
        nsp, rel = _split(table, schema)
        return self._exists(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND t.tgname = %s AND NOT t.tgisinternal",
            [nsp, rel, trigger])

    def constraint_exists(self, table: str, constraint: str, schema: str | None = None) -> bool:
        nsp, rel = _split(table, schema)
        return self._exists(
            "SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND k.conname = %s", [nsp, rel, constraint])

    def snapshot(self, schemas: list[str] | None = None) -> Snapshot:
        """The catalog snapshot (``poststack.catalog.snapshot``) of user schemas, without the history schema.

        Compare two with ``==``; ``before.diff(after)`` says in words what differs.
        """
        return snapshot(self.conn, schemas, exclude_schemas=(self.history.schema,))

    # -- data at volume ---------------------------------------------------------------------------------
    def fill(self, table: str, rows: int, *, parents: bool = True) -> list[FillResult]:
        """Top ``table`` (``schema.name``, taken literally) up to ``rows`` synthetic rows, generated in the
        server (``poststack.engine.filler``): NOT NULL, UNIQUE, foreign keys, enums, domains and simple CHECKs
        hold. Referenced tables with no rows are filled first (to ``rows`` too) unless ``parents=False``.
        Returns one result per table filled; raises FillError naming a constraint it cannot satisfy.
        """
        return fill(self.conn, table if "." in table else f"public.{table}", rows, parents=parents)

    # -- the history -----------------------------------------------------------------------------------
    def history_rows(self) -> list[HistoryRow]:
        return self.history.rows(self.conn)

    def applied_versions(self) -> list[int]:
        """Versions the history records as applied, ascending ([] when there is no history yet)."""
        return [r.version for r in self.history_rows() if r.status == HistoryStatus.APPLIED]

    def migration(self, ref: MigrationRef) -> Migration:
        """A Migration from a version (``2``, ``"002"``) or file name in migrations_dir, or a file path."""
        if isinstance(ref, Migration):
            return ref
        if isinstance(ref, Path) or (isinstance(ref, str) and ref.endswith(".sql")):
            path = Path(ref)
            if self.migrations_dir is not None and not path.is_absolute() and not path.exists():
                path = self.migrations_dir / path  # a bare file name means one in migrations_dir
            found = load_migrations(path.parent).by_version()
            match = next((m for m in found.values() if m.path.name == path.name), None)
            if match is None:
                raise UsageError(f"{path}: not a migration file (expected NNN_name.sql)")
            return match
        if self.migrations_dir is None:
            raise UsageError(f"migration {ref!r}: give a Migration or a path; this DbHelper has no migrations_dir")
        version = int(ref)
        migration = load_migrations(self.migrations_dir).get(version)
        if migration is None:
            raise UsageError(f"no migration with version {ref!r} in {self.migrations_dir}")
        return migration

    def apply_untracked(self, ref: MigrationRef) -> Migration:
        """Run a migration's SQL without recording it, as a hand-run or another tool would have.

        Transactional files run in one transaction; ``-- poststack:no-transaction`` files statement by
        statement, exactly as poststack would run them.
        """
        migration = self.migration(ref)
        if migration.no_transaction:
            for statement in split_statements(migration.sql):
                self.conn.execute(statement.text.encode())
        else:
            with self.conn.transaction():
                self.conn.execute(migration.sql.encode())
        return migration

    def track_only(self, ref: MigrationRef, *, source: str = "migrate",
                   status: str = HistoryStatus.APPLIED) -> Migration:
        """Record a migration as applied without running it: a history that claims more than happened."""
        migration = self.migration(ref)
        with self.conn.transaction():
            self.history.ensure(self.conn)
            self.history.insert(self.conn, migration, source=source, status=HistoryStatus(status))
        return migration
