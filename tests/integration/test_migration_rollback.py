"""Rollback round trips through the plugin's fixtures: every rollback returns the schema to what it was.

A test picks its migrations by parametrizing the plugin's ``migrations_dir`` indirectly with a shipped
scenario's name or a dict of files; without a parameter it is the ``basic`` sample.
"""

import pytest

from poststack.errors import MigrationFailed, RollbackRefused
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing import DbHelper

ROUND_TRIP_SCENARIOS = ["basic", "complex", "unified_project", "checksum_mismatch", "non_transactional"]


def versions_of(migrations_dir) -> list[int]:
    return [m.version for m in load_migrations(migrations_dir)]


def test_basic_schema_up_and_back_down_object_by_object(migration_runner, db_helper):
    migration_runner.migrate()
    assert db_helper.applied_versions() == [1, 2, 3, 4]
    assert db_helper.table_exists("app.posts") and db_helper.column_exists("app.posts", "slug")
    assert db_helper.index_exists("app.posts_user_slug_key", valid=True)
    assert db_helper.constraint_exists("app.users", "users_email_key")

    migration_runner.rollback(3)
    assert not db_helper.column_exists("app.posts", "slug")
    assert not db_helper.index_exists("app.posts_user_slug_key")
    assert db_helper.index_exists("app.posts_user_id_idx")

    migration_runner.rollback(2)
    assert not db_helper.table_exists("app.posts") and db_helper.table_exists("app.users")

    migration_runner.rollback(1)
    assert not db_helper.table_exists("app.users") and db_helper.schema_exists("app")

    migration_runner.rollback(0)
    assert not db_helper.schema_exists("app")
    assert db_helper.applied_versions() == []


@pytest.mark.parametrize("migrations_dir", ROUND_TRIP_SCENARIOS, indirect=True)
def test_rollback_to_each_target_restores_the_schema_of_that_version(database_url, migrated_database_url,
                                                                     migration_runner, db_helper,
                                                                     migrations_dir):
    # The schema at every version, built step by step on an empty database...
    stepwise = MigrationRunner(database_url, migrations_dir)
    versions = versions_of(migrations_dir)
    with DbHelper(database_url) as empty:
        expected = {0: empty.snapshot()}
        for version in versions:
            stepwise.migrate(target=version)
            expected[version] = empty.snapshot()
    # ...must be what rolling back the template-cloned head database gives, target by target.
    assert db_helper.applied_versions() == versions
    assert db_helper.snapshot() == expected[versions[-1]]
    for target in [*reversed(versions[:-1]), 0]:
        migration_runner.rollback(target)
        now = db_helper.snapshot()
        assert now == expected[target], "\n".join(expected[target].diff(now, missing="missing after rollback",
                                                                          added="left behind by rollback"))
        assert db_helper.applied_versions() == [v for v in versions if v <= target]


FAILING_ROLLBACK = {
    "001_items.sql": "CREATE TABLE items (id int PRIMARY KEY);",
    "001_items.rollback.sql": "DROP TABLE items;",
    "002_tags.sql": "CREATE TABLE tags (id int PRIMARY KEY, item_id int REFERENCES items);",
    "002_tags.rollback.sql": "DROP TABLE tags;\nDROP TABLE tagz;",
    "003_notes.sql": "CREATE TABLE notes (id int);",
    "003_notes.rollback.sql": "DROP TABLE notes;",
}


@pytest.mark.parametrize("migrations_dir", [FAILING_ROLLBACK], indirect=True)
def test_failing_rollback_keeps_its_migration_and_history(migrated_database_url, migration_runner, db_helper):
    migration_runner.rollback(2)
    after_two = db_helper.snapshot()
    migration_runner.migrate()
    with pytest.raises(MigrationFailed, match=r"002_tags\.rollback\.sql.*\"tagz\" does not exist"):
        migration_runner.rollback(1)
    # 003 was rolled back before 002 failed; 002's rollback left no trace: its table and its row remain.
    assert db_helper.applied_versions() == [1, 2]
    assert db_helper.table_exists("tags") and not db_helper.table_exists("notes")
    assert db_helper.snapshot() == after_two
    assert [r.status for r in db_helper.history_rows()] == ["applied", "applied"]


@pytest.mark.parametrize("migrations_dir", ["missing_rollback"], indirect=True)
def test_missing_rollback_file_refuses_the_whole_rollback(migrated_database_url, migration_runner, db_helper):
    before = db_helper.snapshot()
    with pytest.raises(RollbackRefused, match=r"002_backfill_kinds\.sql: no rollback file"):
        migration_runner.rollback(1)
    # 003 has a rollback but is not undone either: a partial rollback would stop where nobody asked.
    assert db_helper.applied_versions() == [1, 2, 3]
    assert db_helper.index_exists("events_kind_idx")
    assert db_helper.snapshot() == before


@pytest.mark.parametrize("migrations_dir", ["non_transactional"], indirect=True)
def test_non_transactional_rollback_drops_indexes_concurrently(migrated_database_url, migration_runner,
                                                              db_helper):
    assert db_helper.index_exists("measurements_sensor_idx", valid=True)
    result = migration_runner.rollback(1)
    assert [(s.version, s.no_transaction) for s in result.steps] == [(3, False), (2, True)]
    assert not db_helper.index_exists("measurements_sensor_idx")
    assert not db_helper.index_exists("measurements_taken_at_idx")
    assert db_helper.fetch_value("SELECT count(*) FROM measurements") == 1000
    assert db_helper.applied_versions() == [1]


NON_TX_FAILING_ROLLBACK = {
    "001_t.sql": "CREATE TABLE t (id int, v int);",
    "001_t.rollback.sql": "DROP TABLE t;",
    "002_idx.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY t_v_idx ON t (v);\n"
                   "CREATE INDEX CONCURRENTLY t_id_idx ON t (id);",
    "002_idx.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY t_id_idx;\n"
                            "DROP INDEX CONCURRENTLY t_missing_idx;\nDROP INDEX CONCURRENTLY t_v_idx;",
}


@pytest.mark.parametrize("migrations_dir", [NON_TX_FAILING_ROLLBACK], indirect=True)
def test_failed_non_transactional_rollback_is_recorded_not_forgotten(migrated_database_url, migration_runner,
                                                                    db_helper):
    with pytest.raises(MigrationFailed, match="t_missing_idx"):
        migration_runner.rollback(1)
    # The first DROP committed on its own and cannot be undone; the history says so instead of lying.
    assert not db_helper.index_exists("t_id_idx") and db_helper.index_exists("t_v_idx")
    row = {r.version: r for r in db_helper.history_rows()}[2]
    assert row.status == "failed" and row.statements_done == 1
    assert row.error.startswith("rollback failed:") and "t_missing_idx" in row.error
    assert db_helper.applied_versions() == [1]


def test_rollback_through_the_cli_in_process(migrated_database_url, cli_runner, db_helper):
    refused = cli_runner.run_command("rollback", ["2"])
    assert refused.exit_code == 2 and "--confirm" in refused.stderr
    assert db_helper.applied_versions() == [1, 2, 3, 4]
    done = cli_runner.run_command("rollback", ["2", "--confirm", "--format", "json"])
    assert done.exit_code == 0, done
    assert [s["version"] for s in done.json["rolled_back"]] == [4, 3]
    assert done.json["to_version"] == "002"
    assert db_helper.applied_versions() == [1, 2] and not db_helper.table_exists("app.posts")
