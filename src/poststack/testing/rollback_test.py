"""One generated ``rollback_restores_schema`` test: from a template near the migration, not from empty.

``verify.Verifier`` does the work (apply, roll back, compare, re-apply, as ``poststack db verify`` does);
this module chooses where it starts. Migrating from an empty database in every test made a directory of n
migrations cost n²/2 migrations; a clone of the checkpoint template below the migration costs a
``CREATE DATABASE`` and fewer than ``CHECKPOINT_EVERY`` migrations, whatever n is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import psycopg
import pytest

from poststack.catalog.snapshot import Snapshot
from poststack.engine.verify import Verifier
from poststack.errors import PoststackError
from poststack.source.files import MigrationSet
from poststack.testing.checks import checked_snapshot
from poststack.testing.hints import with_hint
from poststack.testing.roles import created_roles
from poststack.testing.session import session_databases, session_templates
from poststack.testing.templates import checkpoint_below


class TestingVerifier(Verifier):
    """A Verifier whose snapshots also hold database-level settings and the roles the migrations create."""

    __test__ = False

    def __init__(self, database_url: str, migrations: MigrationSet, *, history_schema: str,
                 roles: Iterable[str]) -> None:
        super().__init__(database_url, migrations, history_schema=history_schema)
        self.roles = list(roles)

    def snapshot(self) -> Snapshot:
        return checked_snapshot(self.conn, self.history.schema, self.roles)

    def digest(self) -> str:
        """The schema digest plus what these snapshots add (database settings and comment, roles): verify
        compares snapshots only when digests differ, so a rollback that forgets only those must move it."""
        extra = {kind: named for kind, named in self.snapshot().objects.items() if kind in _ADDED_KINDS}
        return super().digest() + json.dumps(extra, sort_keys=True, default=str)


_ADDED_KINDS = frozenset({"database", "role"})


_ROLES_CACHE: dict[tuple[str, ...], list[str]] = {}


def _roles_of(migrations: MigrationSet) -> list[str]:
    """``created_roles`` of a directory, parsed once per set of file contents (not once per generated test:
    at 320 migrations parsing them all took longer than the rollback test itself)."""
    key = tuple(m.checksum for m in migrations)
    if key not in _ROLES_CACHE:
        _ROLES_CACHE[key] = created_roles(m.sql for m in migrations)
    return _ROLES_CACHE[key]


def verify_rollback(config: pytest.Config, migrations: MigrationSet, version: int, history_schema: str) -> str | None:
    """None when migration ``version``'s rollback restores the state before it; else the report."""
    migration = migrations.get(version)
    if migration is None:
        return f"no migration file has version {version}"
    versions = [m.version for m in migrations]
    index = versions.index(version)
    databases = session_databases(config)
    base = checkpoint_below(versions, version)
    try:
        name = (databases.create() if base is None
                else session_templates(config).clone(migrations.directory, history_schema, target=base))
    except PoststackError as exc:
        return f"the migrations before {migration.filename} cannot be applied: {with_hint(str(exc))}"
    roles = _roles_of(migrations)
    try:
        with TestingVerifier(databases.server.database_url(name), migrations, history_schema=history_schema,
                             roles=roles) as verifier:
            if index:
                verifier.replay_through(versions[index - 1])
            if verifier.broken is not None:
                return (f"the migrations before {migration.filename} cannot be applied: "
                        f"{with_hint(verifier.broken.error or verifier.broken.status)}")
            seed = migrations.seeds.get(version)
            if seed is not None:
                try:
                    verifier.conn.execute(seed.read_bytes())
                except psycopg.Error as exc:
                    return f"{seed}: the seed data failed: {(exc.diag.message_primary or str(exc)).strip()}"
            result = verifier.verify(migration)
    finally:
        databases.drop(name)
    return None if result.passed else with_hint(result.describe())
