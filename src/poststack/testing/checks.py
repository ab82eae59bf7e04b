"""Whole-directory and whole-schema checks a project runs against its own migrations, one call each.

A rollback that forgets an index or a function passes every hand-written existence check nobody thought
to write; comparing full catalog snapshots catches it without knowing what to look for. The snapshots a
test takes also hold what lives outside the schemas but belongs to the migrations: the database's own
settings and comment (``ALTER DATABASE ... SET``, ``COMMENT ON DATABASE``) and the roles the migrations
create.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from poststack.catalog.snapshot import KIND_ORDER, Snapshot, snapshot
from poststack.config import DEFAULT_SCHEMA
from poststack.db.connection import connect, mask_url
from poststack.schema_migration import MigrationRunner
from poststack.testing.db_helper import DbHelper
from poststack.testing.roles import created_roles, role_objects

SchemaSource = str | Path | Snapshot


def checked_snapshot(conn: psycopg.Connection[Any], history_schema: str = DEFAULT_SCHEMA,
                  roles: Iterable[str] = ()) -> Snapshot:
    """The snapshot the testing checks compare: schemas (without the history), database-level settings and
    comment, and which of ``roles`` exist."""
    return snapshot(conn, exclude_schemas=(history_schema,), database=True).with_objects(role_objects(conn, roles))




def migrations_roles(runner: MigrationRunner) -> list[str]:
    """The roles the runner's migrations create (what a rollback must drop again)."""
    return created_roles(m.sql for m in runner.load())


def assert_rollbacks_restore_schema(runner: MigrationRunner, helper: DbHelper, *, column_order: bool = True) -> None:
    """Migrate one version at a time, then roll back one at a time: each rollback must restore the schema,
    the database's settings and comment, and drop the roles its migration created.

    Needs a database with none of the migrations applied (``database_url``, the default of the fixtures)
    and a rollback file for every migration. Raises AssertionError naming the migration whose rollback
    left the schema different, with the differences in words. ``column_order=False`` accepts a rollback
    that brings every column back but in another order.
    """
    __tracebackhide__ = True
    migrations = list(runner.load())
    if helper.applied_versions():
        raise AssertionError(f"{helper!r} already has migrations applied; use an empty database (database_url)")
    roles = migrations_roles(runner)

    def now() -> Snapshot:
        return checked_snapshot(helper.conn, helper.history.schema, roles)

    snapshots = [now()]
    for migration in migrations:
        runner.migrate(target=migration.version)
        snapshots.append(now())
    for index in range(len(migrations) - 1, -1, -1):
        undone = migrations[index]
        runner.rollback(migrations[index - 1].version if index else 0)
        differences = snapshots[index].diff(now(), missing="missing after rollback",
                                            added="left behind by rollback", column_order=column_order)
        if differences:
            raise AssertionError(f"rolling back {undone.filename} did not restore the schema:\n  "
                                 + "\n  ".join(differences))


def load_schema(source: SchemaSource, history_schema: str = DEFAULT_SCHEMA) -> Snapshot:
    """A Snapshot from a database URL, a JSON file (``Snapshot.to_json``, e.g. a golden schema) or itself."""
    if isinstance(source, Snapshot):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".json") and "://" not in source):
        return Snapshot.from_json(Path(source).read_text(encoding="utf-8"))
    with connect(source, autocommit=True) as conn:
        return checked_snapshot(conn, history_schema)


def save_schema(url: str, path: str | Path, *, portable: bool = True, history_schema: str = DEFAULT_SCHEMA) -> Path:
    """Write the schema of ``url`` as JSON to ``path`` (a golden schema to compare later runs with);
    ``portable`` leaves out what differs between PostgreSQL versions (``Snapshot.portable``)."""
    schema = load_schema(url, history_schema)
    path = Path(path)
    path.write_text((schema.portable() if portable else schema).to_json() + "\n", encoding="utf-8")
    return path


def _patterns(ignore: Iterable[str]) -> list[tuple[str, str]]:
    """``"comment"`` -> ("comment", "*"); ``"materialized view app.mv_*"`` -> ("materialized view", "app.mv_*")."""
    kinds = sorted(KIND_ORDER, key=len, reverse=True)
    out = []
    for pattern in ignore:
        kind = next((k for k in kinds if pattern == k or pattern.startswith(k + " ")), None)
        if kind is None:
            raise ValueError(f"ignore={pattern!r}: expected a kind ({', '.join(KIND_ORDER)}), optionally "
                             "followed by a name pattern")
        out.append((kind, pattern[len(kind):].strip() or "*"))
    return out


def _without(schema: Snapshot, patterns: list[tuple[str, str]]) -> Snapshot:
    matched = {(kind, name) for kind, named in schema.objects.items() for name in named
               if any(kind == k and fnmatch.fnmatchcase(name, n) for k, n in patterns)}
    return schema.without(matched)  # with everything inside them: an ignored table's columns too


def assert_same_schema(a: SchemaSource, b: SchemaSource, *, ignore: Iterable[str] = (), column_order: bool = True,
                       portable: bool = False, history_schema: str = DEFAULT_SCHEMA) -> None:
    """Two schemas must be equal: each a database URL, a JSON file or a Snapshot.

    ``ignore``: kinds (``"comment"``) or kinds with a name pattern (``"table app.tmp_*"``) to leave out.
    ``column_order=False``: columns in another order are equal. ``portable=True``: compare as
    ``Snapshot.portable`` does (extension versions and PostgreSQL 18's NOT NULL constraint objects left
    out), so that a golden schema written on one server holds on another major version.
    """
    __tracebackhide__ = True
    patterns = _patterns(ignore)
    left, right = load_schema(a, history_schema), load_schema(b, history_schema)
    if portable:
        left, right = left.portable(), right.portable()
    left, right = _without(left, patterns), _without(right, patterns)
    differences = left.diff(right, missing=f"only in {_label(a)}", added=f"only in {_label(b)}",
                            column_order=column_order)
    if differences:
        raise AssertionError(f"schemas differ ({len(differences)} difference(s)):\n  " + "\n  ".join(differences))


def _label(source: SchemaSource) -> str:
    if isinstance(source, Snapshot):
        return "the snapshot"
    text = str(source)
    return mask_url(text) if "://" in text or "=" in text else text
