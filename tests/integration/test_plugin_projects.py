"""The plugin in projects as teams have them: unrelated ones in the same virtualenv, configured ones, overrides
that forget the parameter, servers that cannot start. Each runs pytest in a subprocess (pytester)."""

import subprocess
import textwrap

import pytest
from conftest import url_for

pytest_plugins = ["pytester"]

MIGRATIONS = {
    "001_widgets.sql": "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);",
    "001_widgets.rollback.sql": "DROP TABLE widgets;",
    "002_gadgets.sql": "CREATE TABLE gadgets (id int);",
    "002_gadgets.rollback.sql": "DROP TABLE gadgets;",
}


@pytest.fixture(autouse=True)
def inner_runs_use_this_server(postgres_server, monkeypatch):
    """Inner runs use the outer run's server (PostgreSQL 15 or 18, as CI chooses), not one embedded each."""
    monkeypatch.setenv("POSTSTACK_TEST_DATABASE_URL", postgres_server.url)


def project(pytester, *, pyproject: str = "", conftest: str = "", tests: str = "", directory: str = "migrations",
            migrations: dict[str, str] | None = None) -> pytest.Pytester:
    pytester.makefile(".toml", pyproject=textwrap.dedent(pyproject) or "[tool.pytest.ini_options]\n")
    if conftest:
        pytester.makeconftest(textwrap.dedent(conftest))
    if tests:
        pytester.makepyfile(test_project=textwrap.dedent(tests))
    for name, text in (MIGRATIONS if migrations is None else migrations).items():
        path = pytester.path / directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pytester


def run(pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args)


# -- a good neighbour ----------------------------------------------------------------------------------------
OWN_RUN_SLOW = """
    import pytest

    def pytest_addoption(parser):
        parser.addoption("--run-slow", action="store_true", default=False, help="the project's own")

    def pytest_configure(config):
        config.addinivalue_line("markers", "slow: the project's own slow marker")
"""


def test_a_project_that_does_not_use_poststack_is_unchanged(pytester):
    project(pytester, conftest=OWN_RUN_SLOW, tests="""
        import pytest

        @pytest.mark.slow
        def test_slow(request):
            assert request.config.getoption("--run-slow") is False  # the project's option, not ours

        def test_no_poststack_fixture(database_url):
            pass
    """)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1, errors=1)  # slow tests run; poststack's fixtures do not exist here
    result.stdout.fnmatch_lines(["*fixture 'database_url' not found*"])
    markers = pytester.runpytest_subprocess("--markers").stdout.str()
    assert "@pytest.mark.database" not in markers and "@pytest.mark.integration" not in markers


def test_a_poststack_project_with_its_own_run_slow_keeps_it(pytester):
    project(pytester, pyproject='[tool.poststack]\nmigrations_path = "migrations"\n', conftest=OWN_RUN_SLOW, tests="""
        import pytest

        @pytest.mark.slow
        def test_slow():
            pass
    """)
    run(pytester).assert_outcomes(skipped=1)
    run(pytester, "--run-slow").assert_outcomes(passed=1)  # theirs; poststack honours it
    run(pytester, "--poststack-run-slow").assert_outcomes(passed=1)


CLI_RUNNER_TESTS = """
    from click.testing import CliRunner
    from poststack.testing import CLITestRunner

    def test_cli_runner(request, cli_runner):
        print("cli_runner is", type(cli_runner).__name__)
        assert (request.node.get_closest_marker("database") is None) == isinstance(cli_runner, CliRunner)

    def test_poststack_cli_runner(poststack_cli_runner):
        assert isinstance(poststack_cli_runner, CLITestRunner)
        assert poststack_cli_runner.run_command("migrate").exit_code == 0
"""


def test_cli_runner_stays_pytest_clicks_and_is_poststacks_without_it(pytester):
    pytest.importorskip("pytest_click", reason="pytest-click is in the test extra")
    project(pytester, pyproject='[tool.poststack]\nmigrations_path = "migrations"\n', tests=CLI_RUNNER_TESTS)
    with_click = run(pytester, "-s")
    with_click.assert_outcomes(passed=2)
    with_click.stdout.fnmatch_lines(["*cli_runner is CliRunner*"])
    without = run(pytester, "-s", "-p", "no:pytest_click")
    without.assert_outcomes(passed=2)
    without.stdout.fnmatch_lines(["*cli_runner is CLITestRunner*"])


# -- configuration -------------------------------------------------------------------------------------------
def test_fixtures_follow_configured_migrations_path_and_history_schema(pytester):
    project(pytester, directory="db/migrations",
            pyproject='[tool.poststack]\nmigrations_path = "db/migrations"\nhistory_schema = "ops"\n', tests="""
        def test_head(migrations_dir, migrated_database_url, db_helper, migration_runner, poststack_cli_runner):
            assert migrations_dir.parts[-2:] == ("db", "migrations")
            assert db_helper.table_exists("ops.migrations") and not db_helper.schema_exists("poststack")
            assert db_helper.applied_versions() == [1, 2]
            assert migration_runner.status().current_version == "002"
            status = poststack_cli_runner.run_command("migration-status", ["--format", "json"])
            assert status.json["current_version"] == "002", status

        def test_fresh(migration_runner, db_helper):
            migration_runner.migrate(target=1)
            assert db_helper.table_exists("ops.migrations") and db_helper.applied_versions() == [1]
    """)
    run(pytester).assert_outcomes(passed=2)


def test_with_nothing_configured_migrations_dir_fails_instead_of_testing_a_sample(pytester):
    project(pytester, pyproject="[tool.pytest.ini_options]\npoststack = true\n", migrations={}, tests="""
        def test_head(migrated_database_url):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["migrations_dir: no migrations directory is configured, and poststack will not "
                                 "test its sample migrations instead: set migrations_path in [[]tool.poststack]*"])
    assert "Traceback" not in result.stdout.str()


PARAMETRIZED = """
    import pytest

    @pytest.mark.parametrize("migrations_dir", ["complex", {"001_t.sql": "CREATE TABLE t (id int);"}],
                             indirect=True)
    def test_other_migrations(migrated_database_url, db_helper):
        assert not db_helper.table_exists("widgets")

    def test_own_migrations(migrated_database_url, db_helper):
        assert db_helper.table_exists("widgets")
"""


def test_an_override_that_ignores_the_parameter_fails_loudly(pytester):
    project(pytester, pyproject="[tool.pytest.ini_options]\npoststack = true\n", tests=PARAMETRIZED, conftest="""
        import pathlib, pytest

        @pytest.fixture
        def migrations_dir():
            return pathlib.Path(__file__).parent / "migrations"
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["migrations_dir is parametrized indirectly ('complex') but the migrations_dir "
                                 "fixture at *conftest.py:3 ignores request.param: write it as "
                                 "'return migrations_dir_for(request, <your default>)'*"])


def test_the_documented_override_keeps_indirect_parametrization(pytester):
    project(pytester, pyproject="[tool.pytest.ini_options]\npoststack = true\n", tests=PARAMETRIZED, conftest="""
        import pathlib, pytest
        from poststack.testing import migrations_dir_for

        @pytest.fixture
        def migrations_dir(request):
            return migrations_dir_for(request, pathlib.Path(__file__).parent / "migrations")
    """)
    run(pytester).assert_outcomes(passed=3)


# -- servers that cannot be used ------------------------------------------------------------------------------
SERVER_TESTS = """
    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_needs_a_database(n, database_url):
        pass
"""


def test_an_embedded_server_that_cannot_start_is_one_line_per_test(pytester, monkeypatch, tmp_path):
    monkeypatch.delenv("POSTSTACK_TEST_DATABASE_URL")
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("POSTSTACK_TEST_DATA_DIR", str(not_a_directory))
    project(pytester, pyproject='[tool.poststack]\nmigrations_path = "migrations"\n', tests=SERVER_TESTS)
    result = run(pytester)
    result.assert_outcomes(errors=4)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["poststack: the embedded PostgreSQL for the tests cannot start: Not a directory "
                                 f"({not_a_directory}*); set POSTSTACK_TEST_DATA_DIR to a writable directory*"])
    assert out.count("cannot start") == 4 and "Traceback" not in out
    assert len(result.stdout.lines) < 40


@pytest.fixture
def full_filesystem(tmp_path):
    """A 3 MB tmpfs: initdb runs out of room in it. Needs mount(2): root in a container that allows it."""
    target = tmp_path / "tiny"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_a_full_data_directory_names_the_servers_own_words(pytester, monkeypatch, full_filesystem):
    monkeypatch.delenv("POSTSTACK_TEST_DATABASE_URL")
    monkeypatch.setenv("POSTSTACK_TEST_DATA_DIR", str(full_filesystem))
    project(pytester, pyproject='[tool.poststack]\nmigrations_path = "migrations"\n', tests=SERVER_TESTS)
    result = run(pytester)
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(["poststack: the embedded PostgreSQL for the tests cannot start: initdb exited "
                                 "with status 1: FATAL: *No space left on device; set POSTSTACK_TEST_DATA_DIR*"])
    assert "Captured log" not in result.stdout.str() and len(result.stdout.lines) < 40


def test_a_wrong_password_is_one_line_per_test_without_the_password(pytester, monkeypatch, role_url):
    url = url_for(role_url(password="wrong-Secret-42"), dbname="postgres")
    monkeypatch.setenv("POSTSTACK_TEST_DATABASE_URL", url)
    project(pytester, pyproject='[tool.poststack]\nmigrations_path = "migrations"\n', tests=SERVER_TESTS)
    result = run(pytester)
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(["poststack: the test server * (POSTSTACK_TEST_DATABASE_URL) cannot be used: "
                                 "cannot connect to *password authentication failed*"])
    assert "wrong-Secret-42" not in result.stdout.str() and "Traceback" not in result.stdout.str()
    assert len(result.stdout.lines) < 40
