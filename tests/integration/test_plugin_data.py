"""Server-wide objects and data in plugin tests: roles, database settings, databases at a version, data
migrations step by step. Each behaviour as a project meets it (pytest in a subprocess, pytester)."""

import textwrap

import psycopg
import pytest

pytest_plugins = ["pytester"]

PYPROJECT = '[tool.poststack]\nmigrations_path = "migrations"\n'


@pytest.fixture(autouse=True)
def inner_runs_use_this_server(postgres_server, monkeypatch):
    """Inner runs use the outer run's server (PostgreSQL 15 or 18, as CI chooses), not one embedded each."""
    monkeypatch.setenv("POSTSTACK_TEST_DATABASE_URL", postgres_server.url)


def project(pytester, migrations: dict[str, str], tests: str) -> pytest.Pytester:
    pytester.makefile(".toml", pyproject=PYPROJECT)
    pytester.makepyfile(test_project=textwrap.dedent(tests))
    for name, text in migrations.items():
        path = pytester.path / "migrations" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pytester


def run(pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def role_exists(server, role: str) -> bool:
    with psycopg.connect(server.url) as conn:
        return conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [role]).fetchone() == (1,)


# -- roles ---------------------------------------------------------------------------------------------------
def test_roles_a_template_build_creates_are_dropped_at_the_end_so_the_next_run_builds_again(pytester,
                                                                                              postgres_server):
    role = "pst_reports_reader"
    project(pytester, {
        "001_reader.sql": f"CREATE ROLE {role};\nGRANT USAGE ON SCHEMA public TO {role};",
        "001_reader.rollback.sql": f"REVOKE USAGE ON SCHEMA public FROM {role};\nDROP ROLE {role};",
    }, f"""
        def test_the_role_can_use_the_schema(migrated_database_url, db_helper):
            assert db_helper.fetch_value("SELECT has_schema_privilege('{role}', 'public', 'USAGE')")
    """)
    for _ in range(2):  # a role left over from the first run would fail the second one's template build
        result = run(pytester)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"poststack: dropped 1 role(s) this test run created: {role}"])
        assert not role_exists(postgres_server, role)


def test_a_rollback_that_forgets_drop_role_fails_assert_rollbacks_restore_schema(pytester, postgres_server):
    role = "pst_forgetful_role"
    project(pytester, {"001_t.sql": "CREATE TABLE t (id int);", "001_t.rollback.sql": "DROP TABLE t;",
                       "002_role.sql": f"CREATE ROLE {role};", "002_role.rollback.sql": "SELECT 1;"}, """
        from poststack.testing import assert_rollbacks_restore_schema

        def test_rollbacks(migration_runner, db_helper):
            assert_rollbacks_restore_schema(migration_runner, db_helper)
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E * AssertionError: rolling back 002_role.sql did not restore the schema:",
                                 f"E *   role {role}: left behind by rollback"])
    assert "checks.py" not in result.stdout.str()  # __tracebackhide__: the user's test line, not ours
    assert not role_exists(postgres_server, role)


# -- database-level settings ---------------------------------------------------------------------------------
DATABASE_SETTINGS = """DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET app.mode = %L', current_database(), 'strict');
  EXECUTE format('ALTER DATABASE %I SET search_path = app, public', current_database());
  EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), 'the app''s database');
END $$;
CREATE SCHEMA app;"""


def test_database_settings_and_comment_are_in_every_clone_and_in_snapshots(pytester):
    project(pytester, {"001_settings.sql": DATABASE_SETTINGS}, """
        import psycopg
        from poststack.schema_migration import MigrationRunner
        from poststack.testing import assert_same_schema, checked_snapshot

        def test_clone(migrated_database_url):
            with psycopg.connect(migrated_database_url) as conn:  # a new session reads the database's settings
                assert conn.execute("SELECT current_setting('app.mode')").fetchone() == ("strict",)
                assert conn.execute("SHOW search_path").fetchone() == ("app, public",)
                comment = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                       "WHERE datname = current_database()").fetchone()
                assert comment == ("the app's database",)
                database = checked_snapshot(conn).get("database", "current")
            assert database == {"settings": {"app.mode": "strict", "search_path": "app, public"},
                                "comment": "the app's database"}

        def test_clone_equals_a_directly_migrated_database(migrated_database_url, database_url, migrations_dir):
            MigrationRunner(database_url, migrations_dir).migrate()
            assert_same_schema(migrated_database_url, database_url)

        def test_a_database_without_them_differs(migrated_database_url, database_url):
            assert_same_schema(migrated_database_url, database_url, ignore=["schema"])
    """)
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*schemas differ (1 difference(s)):", "*database current: only in *pst_*"])


# -- databases at a version, step by step --------------------------------------------------------------------
DATA_MIGRATIONS = {
    "001_people.sql": "CREATE TABLE people (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, full_name text);",
    "001_people.rollback.sql": "DROP TABLE people;",
    "002_split_names.sql": "ALTER TABLE people ADD COLUMN first_name text, ADD COLUMN last_name text;\n"
                           "UPDATE people SET first_name = split_part(full_name, ' ', 1),\n"
                           "                  last_name = split_part(full_name, ' ', 2);\n"
                           "ALTER TABLE people DROP COLUMN full_name;",
    "002_split_names.rollback.sql": "ALTER TABLE people ADD COLUMN full_name text;\n"
                                    "UPDATE people SET full_name = first_name || ' ' || last_name;\n"
                                    "ALTER TABLE people DROP COLUMN first_name, DROP COLUMN last_name;",
    "003_emails.sql": "CREATE TABLE emails (person_id int REFERENCES people, address text);",
    "003_emails.rollback.sql": "DROP TABLE emails;",
}


def test_a_data_migration_test_in_a_few_lines(pytester):
    project(pytester, DATA_MIGRATIONS, """
        import psycopg
        import pytest
        from poststack.errors import StateError
        from poststack.schema_migration import MigrationRunner

        def test_split_names_keeps_the_data(database_at, migrations_dir):
            url = database_at("001")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO people (full_name) VALUES ('Ada Lovelace'), ('Alan Turing')")
                runner = MigrationRunner(url, migrations_dir)
                assert [s.version for s in runner.step_up().steps] == [2]
                assert conn.execute("SELECT first_name, last_name FROM people ORDER BY id").fetchall() == [
                    ("Ada", "Lovelace"), ("Alan", "Turing")]
                assert [s.version for s in runner.step_down().steps] == [2]
                assert conn.execute("SELECT full_name FROM people ORDER BY id").fetchall() == [
                    ("Ada Lovelace",), ("Alan Turing",)]

        def test_each_call_is_a_new_database_at_that_version(database_at, migrations_dir):
            one, two, head = database_at("002"), database_at(2), database_at("003")
            assert len({one, two, head}) == 3
            assert MigrationRunner(one, migrations_dir).status().current_version == "002"
            assert MigrationRunner(head, migrations_dir).status().current_version == "003"
            with pytest.raises(StateError, match="no pending migration"):
                MigrationRunner(head, migrations_dir).step_up()

        def test_an_unknown_version(database_at):
            database_at("009")

        def test_db_connection_is_on_the_tests_database(migrated_database_url, db_connection):
            assert db_connection.info.dbname == psycopg.conninfo.conninfo_to_dict(migrated_database_url)["dbname"]
            assert db_connection.execute("SELECT count(*) FROM emails").fetchone() == (0,)
    """)
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*no migration with version 9 in *migrations*"])


def test_step_down_on_an_empty_history_and_step_up_one_at_a_time(database_url, sample_migrations):
    from poststack.errors import StateError
    from poststack.schema_migration import MigrationRunner

    runner = MigrationRunner(database_url, sample_migrations)
    with pytest.raises(StateError, match="no migration is applied"):
        runner.step_down()
    assert [runner.step_up().to_version for _ in range(2)] == ["001", "002"]
    assert runner.status().current_version == "002"
    runner.step_down()
    assert runner.status().current_version == "001"
