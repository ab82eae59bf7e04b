"""The engine through its Python API: what gets applied, recorded and rolled back, on a real server."""

import psycopg
import pytest

from poststack.errors import ChecksumChanged, MigrationFailed, StateError
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

BASIC = {
    "001_users.sql": "-- Description: the users\nCREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);",
    "001_users.rollback.sql": "DROP TABLE users;",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users);\n"
                     "CREATE INDEX posts_user_idx ON posts (user_id);",
    "002_posts.rollback.sql": "DROP TABLE posts;",
    "003_email_idx.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"
                         "CREATE INDEX CONCURRENTLY users_email_id_idx ON users (email, id);",
    "003_email_idx.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY users_email_idx;\n"
                                  "DROP INDEX CONCURRENTLY users_email_id_idx;",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE nspname = 'public' AND relkind IN ('r', 'i')")}


def history(url: str, schema: str = "poststack") -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(psycopg.sql.SQL(
            "SELECT version, status, source, applied_at FROM {}.migrations ORDER BY version").format(
            psycopg.sql.Identifier(schema))).fetchall()


def test_migrate_applies_everything_once(database_url, make_migrations):
    runner = MigrationRunner(database_url, make_migrations(BASIC))
    first = runner.migrate()
    assert [s.version for s in first.steps] == [1, 2, 3]
    recorded = history(database_url)
    assert [(v, s, src) for v, s, src, _ in recorded] == [(1, "applied", "migrate"), (2, "applied", "migrate"),
                                                          (3, "applied", "migrate")]
    assert {"users", "posts", "posts_user_idx", "users_email_idx", "users_email_id_idx"} <= tables(database_url)

    second = runner.migrate()
    assert second.steps == [] and second.from_version == "003"
    assert history(database_url) == recorded  # same rows, same applied_at: nothing re-ran


def test_history_row_keeps_what_ran_and_who_ran_it(database_url, make_migrations):
    runner = MigrationRunner(database_url, make_migrations(BASIC))
    runner.migrate(target=1)
    [row] = runner.history.rows(psycopg.connect(database_url))
    migration = runner.load().get(1)
    assert row.sql == migration.sql and row.rollback_sql == "DROP TABLE users;"
    assert row.checksum == migration.checksum and row.semantic_checksum == migration.semantic_checksum
    assert row.description == "the users" and row.applied_by == "postgres" and row.status == "applied"
    assert row.client and ":" in row.client and row.poststack_version and row.execution_ms is not None


def test_failing_migration_leaves_no_trace_and_earlier_ones_stay(database_url, make_migrations):
    files = dict(BASIC)
    files["002_posts.sql"] = "CREATE TABLE posts (id int);\n\nINSERT INTO posts VALUES ('not a number');"
    runner = MigrationRunner(database_url, make_migrations(files))
    with pytest.raises(MigrationFailed) as failure:
        runner.migrate()
    message = str(failure.value)
    assert "002_posts.sql:3: migration 002 failed: invalid input syntax for type integer" in message
    assert failure.value.line == 3
    assert [v for v, *_ in history(database_url)] == [1]
    assert "posts" not in tables(database_url) and "users" in tables(database_url)


def test_target_and_rollback_round_trip(database_url, make_migrations):
    runner = MigrationRunner(database_url, make_migrations(BASIC))
    runner.migrate(target=2)
    assert runner.status().current_version == "002"
    result = runner.rollback(1)
    assert [s.version for s in result.steps] == [2]
    assert "posts" not in tables(database_url) and [v for v, *_ in history(database_url)] == [1]
    runner.migrate()
    assert runner.status().current_version == "003"
    runner.rollback(0)
    assert history(database_url) == [] and tables(database_url) == set()
    runner.migrate()  # and everything applies again after a full rollback
    assert [v for v, *_ in history(database_url)] == [1, 2, 3]


def test_non_transactional_migration_records_progress(database_url, make_migrations):
    runner = MigrationRunner(database_url, make_migrations(BASIC))
    runner.migrate()
    row = runner.history.row(psycopg.connect(database_url), 3)
    assert row.no_transaction and row.status == "applied" and row.statements_done == 2
    with psycopg.connect(database_url) as conn:
        valid = conn.execute("SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text "
                             "IN ('users_email_idx', 'users_email_id_idx')").fetchone()[0]
    assert valid


def test_failed_non_transactional_migration_is_recorded_and_resumed_by_migrate(database_url, make_migrations):
    files = dict(BASIC)
    files["003_email_idx.sql"] = ("-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY users_email_idx "
                                  "ON users (email);\nCREATE INDEX CONCURRENTLY broken ON nope (x);")
    runner = MigrationRunner(database_url, make_migrations(files))
    with pytest.raises(MigrationFailed, match=r"003_email_idx.sql:3: .*relation \"nope\" does not exist.*"
                                              r"1 of 2 statements had run"):
        runner.migrate()
    row = runner.history.row(psycopg.connect(database_url), 3)
    assert row.status == "failed" and row.statements_done == 1 and "nope" in row.error
    # migrate resumes it: statement 1 is recorded done and is not run again; statement 2 fails again
    with pytest.raises(MigrationFailed, match=r"003_email_idx.sql:3: .*1 of 2 statements had run.*resume from "
                                              r"statement 2"):
        runner.migrate()
    row = runner.history.row(psycopg.connect(database_url), 3)
    assert row.status == "failed" and row.statements_done == 1


def test_changed_file_blocks_migrate_unless_allowed(database_url, make_migrations):
    directory = make_migrations(BASIC)
    runner = MigrationRunner(database_url, directory)
    runner.migrate(target=1)
    (directory / "001_users.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);")
    with pytest.raises(ChecksumChanged, match=r"001_users\.sql"):
        runner.migrate()
    assert [v for v, *_ in history(database_url)] == [1]
    result = runner.migrate(allow_changed=True)
    assert [s.version for s in result.steps] == [2, 3]
    assert any("001_users.sql" in w for w in result.warnings)


def test_comment_only_edit_is_cosmetic_and_does_not_block(database_url, make_migrations):
    directory = make_migrations(BASIC)
    runner = MigrationRunner(database_url, directory)
    runner.migrate(target=1)
    (directory / "001_users.sql").write_text("-- Description: the users\n-- reviewed\nCREATE TABLE users (\n"
                                             "  id int PRIMARY KEY,\n  email text NOT NULL\n);\n")
    result = runner.migrate()
    assert [s.version for s in result.steps] == [2, 3]
    assert result.warnings == ["001_users.sql: comments or whitespace changed since it was applied (cosmetic)"]


def test_versions_order_numerically(database_url, make_migrations):
    files = {"9_nine.sql": "CREATE TABLE nine ();", "10_ten.sql": "ALTER TABLE nine ADD COLUMN ten int;"}
    result = MigrationRunner(database_url, make_migrations(files)).migrate()
    assert [s.version_text for s in result.steps] == ["9", "10"]


def test_out_of_order_needs_permission(database_url, make_migrations):
    directory = make_migrations({"001_a.sql": "CREATE TABLE a ();", "003_c.sql": "CREATE TABLE c ();"})
    runner = MigrationRunner(database_url, directory)
    runner.migrate()
    (directory / "002_b.sql").write_text("CREATE TABLE b ();")
    with pytest.raises(StateError, match=r"002_b\.sql is older than the newest applied version"):
        runner.migrate()
    assert [s.version for s in runner.migrate(allow_out_of_order=True).steps] == [2]


def test_dry_run_changes_nothing(database_url, make_migrations):
    runner = MigrationRunner(database_url, make_migrations(BASIC))
    result = runner.migrate(dry_run=True)
    assert [m.version for m in result.planned] == [1, 2, 3] and result.steps == []
    assert tables(database_url) == set()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'poststack'").fetchone()[0] == 0


@pytest.mark.parametrize("schema", ['we"ird; DROP TABLE x; --', "ünï cödé", "UPPER"])
def test_hostile_history_schema_names_are_quoted(database_url, make_migrations, schema):
    runner = MigrationRunner(database_url, make_migrations(BASIC), history_schema=schema)
    runner.migrate(target=2)
    assert [v for v, *_ in history(database_url, schema)] == [1, 2]
    assert runner.status().current_version == "002"


def test_refused_rollback_on_a_fresh_database_creates_nothing(database_url, make_migrations):
    from poststack.errors import RollbackRefused

    runner = MigrationRunner(database_url, make_migrations(BASIC))
    with pytest.raises(RollbackRefused, match="7 is not an applied version"):
        runner.rollback(7)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'poststack'").fetchone()[0] == 0
