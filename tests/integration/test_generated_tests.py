"""``pytest --poststack-migrations=PATH``: tests generated for a user's SQL directory, run as a user would."""

import psycopg
import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def inner_runs_use_this_server(postgres_server, monkeypatch):
    """The pytest runs these tests start use the outer run's server (PostgreSQL 15 or 18, as CI chooses)
    instead of starting an embedded one each."""
    monkeypatch.setenv("POSTSTACK_TEST_DATABASE_URL", postgres_server.url)

GOOD = {
    "migrations/001_widgets.sql": "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);",
    "migrations/001_widgets.rollback.sql": "DROP TABLE widgets;",
    "migrations/002_widget_name_idx.sql": "CREATE TABLE parts (id int);\nCREATE INDEX parts_id_idx ON parts (id);",
    "migrations/002_widget_name_idx.rollback.sql": "DROP TABLE parts;",
}


def run(pytester: pytest.Pytester, files: dict[str, str], *args: str) -> pytest.RunResult:
    pytester.makefile(".toml", pyproject="[tool.pytest.ini_options]\n")
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args)


# A migration cannot name its database (it differs per environment): ALTER DATABASE needs dynamic SQL.
DATABASE_SETTINGS = ("DO $$ BEGIN\n"
                     "  EXECUTE format('ALTER DATABASE %I SET app.mode = %L', current_database(), 'strict');\n"
                     "  EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), 'the app');\n"
                     "END $$;")


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    pytester.makefile(".toml", pyproject="[tool.pytest.ini_options]\n")
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_generated_tests_pass_for_good_migrations(pytester):
    result = run(pytester, GOOD, "--poststack-migrations=migrations")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*::files_valid PASSED*", "*::upgrade_from_empty PASSED*",
                                 "*migrations/001_widgets.sql::rollback_restores_schema PASSED*",
                                 "*migrations/002_widget_name_idx.sql::lint PASSED*"])


def test_a_rollback_that_forgets_an_index_fails_naming_the_migration(pytester):
    files = dict(GOOD)
    files["migrations/003_lookup.sql"] = "CREATE INDEX widgets_name_idx ON widgets (name);"
    files["migrations/003_lookup.rollback.sql"] = "SELECT 1;"
    result = run(pytester, files, "--poststack-migrations=migrations", "--poststack-no-lint")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*003_lookup.sql::rollback_restores_schema FAILED*",
                                 "*index public.widgets_name_idx*"])


def test_pyproject_turns_generation_on_and_lint_findings_fail(pytester):
    files = dict(GOOD)
    files["migrations/003_lookup.sql"] = "CREATE INDEX widgets_name_idx ON widgets (name);"
    files["migrations/003_lookup.rollback.sql"] = "DROP INDEX widgets_name_idx;"
    pytester.makefile(".toml", pyproject='[tool.poststack]\nmigrations_path = "migrations"\n'
                                         "generated_tests = true\n")
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*003_lookup.sql::lint FAILED*", "*003_lookup.sql:1: *CONCURRENTLY*"])


def test_the_header_counts_the_generated_tests_and_their_ids_run_them_alone(pytester):
    write(pytester, GOOD)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--poststack-migrations=migrations",
                                           "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == ["migrations::files_valid", "migrations::upgrade_from_empty",
                   "migrations/001_widgets.sql::rollback_restores_schema", "migrations/001_widgets.sql::lint",
                   "migrations/002_widget_name_idx.sql::rollback_restores_schema",
                   "migrations/002_widget_name_idx.sql::lint"]
    header = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--poststack-migrations=migrations")
    header.stdout.fnmatch_lines(["collected 6 items"])
    again = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--poststack-migrations=migrations",
                                          ids[2], ids[0])
    again.assert_outcomes(passed=2, deselected=4)
    again.stdout.fnmatch_lines(["*::files_valid PASSED*", "*001_widgets.sql::rollback_restores_schema PASSED*"])
    spread = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "xdist", "-n", "2", "-v",
                                           "--poststack-migrations=migrations", ids[2], ids[0])
    spread.assert_outcomes(passed=2)  # xdist workers get the same selection


def test_file_checks_need_no_server_and_are_not_marked_database(pytester):
    result = run(pytester, GOOD, "--poststack-migrations=migrations", "-m", "not database")
    result.assert_outcomes(passed=3, deselected=3)
    result.stdout.fnmatch_lines(["*::files_valid PASSED*", "*001_widgets.sql::lint PASSED*"])
    assert "upgrade_from_empty" not in result.stdout.str()


def test_concurrent_index_in_a_transaction_gets_the_header_hint(pytester):
    files = dict(GOOD)
    files["migrations/003_concurrently.sql"] = "CREATE INDEX CONCURRENTLY widgets_name_idx ON widgets (name);"
    files["migrations/003_concurrently.rollback.sql"] = "DROP INDEX widgets_name_idx;"
    result = run(pytester, files, "--poststack-migrations=migrations", "--poststack-no-lint",
                 "-k", "upgrade_from_empty")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot run inside a transaction block*",
                                 "hint: *put '-- poststack:no-transaction' in the migration's first lines*"])


SEEDED = {
    "migrations/001_people.sql": "CREATE TABLE people (id int PRIMARY KEY);",
    "migrations/001_people.rollback.sql": "DROP TABLE people;",
    "migrations/002_people_name.sql": "ALTER TABLE people ADD COLUMN name text NOT NULL;",
    "migrations/002_people_name.rollback.sql": "ALTER TABLE people DROP COLUMN name;",
}


def test_a_seed_file_loads_data_before_its_migration_and_is_not_a_migration(pytester):
    # Without data, adding a NOT NULL column without a default passes; with the seed's row it cannot.
    plain = run(pytester, SEEDED, "--poststack-migrations=migrations", "--poststack-no-lint")
    plain.assert_outcomes(passed=4)
    (pytester.path / "migrations/002_people_name.seed.sql").write_text("INSERT INTO people VALUES (1), (2);")
    seeded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--poststack-migrations=migrations",
                                           "--poststack-no-lint")
    seeded.assert_outcomes(passed=3, failed=1)  # files_valid passes: the seed is no invalid migration file
    seeded.stdout.fnmatch_lines(["*002_people_name.sql::rollback_restores_schema FAILED*",
                                 "*column \"name\"*contains null values*"])
    (pytester.path / "migrations/002_people_name.sql").write_text(
        "ALTER TABLE people ADD COLUMN name text NOT NULL DEFAULT 'unknown';")
    fixed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--poststack-migrations=migrations",
                                          "--poststack-no-lint")
    fixed.assert_outcomes(passed=4)


def test_a_seed_file_without_its_migration_is_reported(pytester):
    files = {**SEEDED, "migrations/003_gone.seed.sql": "SELECT 1;"}
    result = run(pytester, files, "--poststack-migrations=migrations", "--poststack-no-lint", "-k", "files_valid")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*003_gone.seed.sql: seed file has no migration named 003_gone.sql*"])


def test_a_rollback_that_forgets_drop_role_fails_and_the_run_drops_the_role(pytester, postgres_server):
    role = "pst_gen_role_reader"
    write(pytester, {"migrations/001_reader.sql": f"CREATE ROLE {role};",
                     "migrations/001_reader.rollback.sql": "SELECT 1;"})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--poststack-migrations=migrations",
                                           "--poststack-no-lint", "-k", "rollback")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"  role {role}: left behind by rollback",
                                 f"poststack: dropped 1 role(s) this test run created: {role}"])
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [role]).fetchone() == (0,)


def test_a_rollback_that_forgets_database_settings_fails(pytester):
    write(pytester, {
        "migrations/001_mode.sql": DATABASE_SETTINGS,
        "migrations/001_mode.rollback.sql": "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET app.mode', "
                                            "current_database()); END $$;",
    })
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--poststack-migrations=migrations",
                                           "--poststack-no-lint", "-k", "rollback")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  database current: left behind by rollback"])
