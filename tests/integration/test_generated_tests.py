"""``pytest --poststack-migrations=PATH``: tests generated for a user's SQL directory, run as a user would."""

import pytest

pytest_plugins = ["pytester"]

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


def test_generated_tests_pass_for_good_migrations(pytester):
    result = run(pytester, GOOD, "--poststack-migrations=migrations")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*::files_valid PASSED*", "*::upgrade_from_empty PASSED*",
                                 "*::001_widgets::rollback_restores_schema PASSED*",
                                 "*::002_widget_name_idx::lint PASSED*"])


def test_a_rollback_that_forgets_an_index_fails_naming_the_migration(pytester):
    files = dict(GOOD)
    files["migrations/003_lookup.sql"] = "CREATE INDEX widgets_name_idx ON widgets (name);"
    files["migrations/003_lookup.rollback.sql"] = "SELECT 1;"
    result = run(pytester, files, "--poststack-migrations=migrations", "--poststack-no-lint")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*003_lookup::rollback_restores_schema FAILED*",
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
    result.stdout.fnmatch_lines(["*003_lookup::lint FAILED*", "*003_lookup.sql:1: *CONCURRENTLY*"])
