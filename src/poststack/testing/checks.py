"""Whole-directory checks a project runs against its own migrations, one call each.

A rollback that forgets an index or a function passes every hand-written existence check nobody thought
to write; comparing full catalog snapshots catches it without knowing what to look for.
"""

from __future__ import annotations

from poststack.schema_migration import MigrationRunner
from poststack.testing.db_helper import DbHelper


def assert_rollbacks_restore_schema(runner: MigrationRunner, helper: DbHelper) -> None:
    """Migrate one version at a time, then roll back one at a time: each rollback must restore the schema.

    Needs a database with none of the migrations applied (``database_url``, the default of the fixtures)
    and a rollback file for every migration. Raises AssertionError naming the migration whose rollback
    left the schema different, with the differences in words.
    """
    migrations = list(runner.load())
    if helper.applied_versions():
        raise AssertionError(f"{helper!r} already has migrations applied; use an empty database (database_url)")
    snapshots = [helper.snapshot()]
    for migration in migrations:
        runner.migrate(target=migration.version)
        snapshots.append(helper.snapshot())
    for index in range(len(migrations) - 1, -1, -1):
        undone = migrations[index]
        runner.rollback(migrations[index - 1].version if index else 0)
        now, expected = helper.snapshot(), snapshots[index]
        if now != expected:
            differences = expected.diff(now, missing="missing after rollback", added="left behind by rollback")
            raise AssertionError(f"rolling back {undone.filename} did not restore the schema:\n  "
                                 + "\n  ".join(differences))
