"""The other tools' history tables, read (never written): which of the layout's migrations each says is applied.

Each reader returns a ``ToolHistory`` keyed like the layout (``SourceMigration.key``):

- Flyway ``flyway_schema_history``: rows in ``installed_rank`` order; a version is applied when its last row
  is a successful migration; ``success = false`` is reported as failed; an undo or delete row un-applies it;
  a ``BASELINE`` row at V claims every file up to V.
- golang-migrate ``schema_migrations(version, dirty)``: one row, the current version; every file up to it is
  applied, except a dirty version, which is reported and never adopted (the files before it are).
- dbmate ``schema_migrations(version)``, diesel ``__diesel_schema_migrations(version, run_on)``, yoyo
  ``_yoyo_migration(migration_id, applied_at_utc)``: one row per applied migration.
- sqitch ``sqitch.changes``: one row per deployed change of the plan's project, told apart by planned time
  when a change was reworked. Its whole registry schema is the tool's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from poststack.adopt.flyway import checksum as flyway_checksum
from poststack.adopt.flyway import version_key
from poststack.adopt.model import Claim, Layout, ToolHistory
from poststack.errors import UsageError

DEFAULT_TABLES = {"flyway": "flyway_schema_history", "golang-migrate": "schema_migrations",
                  "dbmate": "schema_migrations", "diesel": "__diesel_schema_migrations", "yoyo": "_yoyo_migration",
                  "sqitch": "sqitch.changes"}
REQUIRED = {"flyway": ("installed_rank", "version", "type", "success"), "golang-migrate": ("version", "dirty"),
            "dbmate": ("version",), "diesel": ("version",), "yoyo": ("migration_id",),
            "sqitch": ("change", "project", "planned_at")}
_YOYO_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock")
_MIGRATING_TYPES = ("SQL", "JDBC", "SCRIPT", "SPRING_JDBC", "CUSTOM")


def find_table(conn: psycopg.Connection[Any], tool: str, table: str | None) -> tuple[str, str] | None:
    """(schema, name) of the tool's table: as given by --table, else the default name on the search path,
    else the one schema that has it. None when there is none; two candidates are bad usage."""
    wanted = table or DEFAULT_TABLES[tool]
    schema, _, name = wanted.rpartition(".")
    if schema:
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                           [schema, name]).fetchone()
        return (row[0], row[1]) if row else None
    row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.oid = to_regclass(quote_ident(%s)) AND c.relkind IN ('r', 'p')", [name]).fetchone()
    if row:
        return row[0], row[1]
    rows = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relname = %s AND c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' "
                        "AND left(n.nspname, 3) <> 'pg_' ORDER BY 1", [name]).fetchall()
    if len(rows) > 1:
        raise UsageError(f"{name} exists in schemas {', '.join(r[0] for r in rows)}: pass --table SCHEMA.{name}")
    return (rows[0][0], rows[0][1]) if rows else None


def read_history(conn: psycopg.Connection[Any], layout: Layout, table: str | None = None) -> ToolHistory | None:
    """What the tool's table says about the layout's migrations; None when the database has no such table."""
    found = find_table(conn, layout.tool, table)
    if found is None:
        return None
    schema, name = found
    columns = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [_qualified(conn, schema, name)])}
    missing = [c for c in REQUIRED[layout.tool] if c not in columns]
    qualified = f"{schema}.{name}"
    if missing:
        raise UsageError(f"{qualified} is not a {layout.tool} history table (no column {', '.join(missing)}); "
                         "pass --table")
    history = ToolHistory(qualified, objects=[("table", schema, name)])
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    READERS[layout.tool](conn, relation, columns, layout, history)
    if layout.tool == "yoyo":
        history.objects = [("table", schema, t) for t in _YOYO_TABLES if find_table(conn, "yoyo", f"{schema}.{t}")]
    if layout.tool == "sqitch":
        history.objects = [("schema", schema, "")]
    return history


def _qualified(conn: psycopg.Connection[Any], schema: str, name: str) -> str:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name)).as_string(conn)


def _optional(columns: set[str], name: str) -> sql.Composable:
    return sql.Identifier(name) if name in columns else sql.NULL


def _flyway(conn: psycopg.Connection[Any], table: sql.Composed, columns: set[str], layout: Layout,
            history: ToolHistory) -> None:
    query = sql.SQL("SELECT version, type, success, {}, {}, {}, {} FROM {} ORDER BY installed_rank").format(
        _optional(columns, "script"), _optional(columns, "installed_by"), _optional(columns, "installed_on"),
        _optional(columns, "checksum"), table)
    files = {m.key: m for m in layout.migrations}
    keys = set(files)
    baseline: tuple[int, ...] | None = None
    for version, kind, success, script, by, on, stored in conn.execute(query):
        if version is None or kind == "SCHEMA":
            continue  # repeatables and the schema-creation marker
        key = version_key(version)
        row = f"version {version} ({kind}{', ' + script if script else ''}, success={success})"
        if kind == "BASELINE" and success:
            baseline = tuple(int(p) for p in key.split("."))
            history.claims.pop(key, None)
        elif kind in _MIGRATING_TYPES and success:
            history.claims[key] = Claim(key, on, by, row)
            history.dirty.pop(key, None)
            history.changed.pop(key, None)
            if kind == "SQL" and stored is not None and key in files and flyway_checksum(files[key].up) != stored:
                history.changed[key] = (f"{files[key].path} is not the file Flyway applied (checksum "
                                        f"{flyway_checksum(files[key].up)}, flyway_schema_history has {stored}); "
                                        "restore it, or run 'flyway repair' if the edit is intended")
        elif kind in _MIGRATING_TYPES:
            history.dirty[key] = f"flyway_schema_history has success = false for it: {row}"
            history.claims.pop(key, None)
        elif kind in ("UNDO_SQL", "UNDO_JDBC", "DELETE") and success:
            history.claims.pop(key, None)
        if key not in keys and kind in _MIGRATING_TYPES:
            history.unknown.append(version)
    if baseline is not None:
        for m in layout.migrations:
            if m.key not in history.claims and tuple(int(p) for p in m.key.split(".")) <= baseline:
                history.claims[m.key] = Claim(m.key, None, None, f"at or below the Flyway baseline "
                                                                 f"{'.'.join(map(str, baseline))}")


def _golang_migrate(conn: psycopg.Connection[Any], table: sql.Composed, columns: set[str], layout: Layout,
                    history: ToolHistory) -> None:
    rows = conn.execute(sql.SQL("SELECT version, dirty FROM {} ORDER BY version DESC").format(table)).fetchall()
    if not rows:
        return
    current, dirty = int(rows[0][0]), bool(rows[0][1])
    if dirty:
        history.dirty[str(current)] = (f"golang-migrate's {history.table} has version {current} with dirty = true: "
                                       "it failed part way; finish or undo it by hand, then 'poststack db recover' "
                                       "records it if the catalog shows it applied")
    for m in layout.migrations:
        if int(m.key) < current or (int(m.key) == current and not dirty):
            history.claims[m.key] = Claim(m.key, None, None, f"at or below version {current} (dirty={dirty})")
    if str(current) not in {m.key for m in layout.migrations}:
        history.unknown.append(str(current))


def _per_row(key_column: str, time_column: str | None,
             key_of: Callable[[Any], str] = str) -> Callable[..., None]:
    def read(conn: psycopg.Connection[Any], table: sql.Composed, columns: set[str], layout: Layout,
             history: ToolHistory) -> None:
        keys = {m.key for m in layout.migrations}
        time = _optional(columns, time_column) if time_column else sql.NULL
        query = sql.SQL("SELECT {}::text, {} FROM {}").format(sql.Identifier(key_column), time, table)
        for value, at in conn.execute(query):
            key = key_of(value)
            if isinstance(at, datetime) and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)  # yoyo's applied_at_utc, diesel's run_on: UTC without a zone
            history.claims[key] = Claim(key, at, None, f"{key_column} = {value!r}")
            if key not in keys:
                history.unknown.append(value)
    return read


def _sqitch(conn: psycopg.Connection[Any], table: sql.Composed, columns: set[str], layout: Layout,
            history: ToolHistory) -> None:
    query = sql.SQL("SELECT change, to_char(planned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                    "{}, {}, {} FROM {} WHERE project = %s").format(
        _optional(columns, "committed_at"), _optional(columns, "committer_name"), _optional(columns, "script_hash"),
        table)
    by_name: dict[str, list[Any]] = {}
    for m in layout.migrations:
        by_name.setdefault(m.name, []).append(m)
    for change, planned_at, at, by, script_hash in conn.execute(query, [layout.project or ""]):
        candidates = by_name.get(change, [])
        if len(candidates) > 1:
            candidates = [m for m in candidates if m.planned_at == planned_at]
        if len(candidates) != 1:
            history.unknown.append(f"{change} (planned {planned_at})")
            continue
        key = candidates[0].key
        history.claims[key] = Claim(key, at, by, f"change {change!r} of project {layout.project!r}")
        deployed = hashlib.sha1((layout.source / candidates[0].path).read_bytes()).hexdigest()  # sqitch's script_hash
        if script_hash and script_hash != deployed:
            history.changed[key] = (f"{candidates[0].path} is not the script sqitch deployed (sha1 {deployed}, "
                                    f"sqitch.changes has {script_hash}); restore it, or rework the change")


READERS: dict[str, Callable[..., None]] = {
    "flyway": _flyway, "golang-migrate": _golang_migrate, "dbmate": _per_row("version", None),
    "diesel": _per_row("version", "run_on"), "yoyo": _per_row("migration_id", "applied_at_utc"), "sqitch": _sqitch,
}
