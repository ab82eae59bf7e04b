"""The pytest plugin (entry point ``pytest11``): options, markers and the database fixtures.

Fixtures hold no logic of their own: servers, databases and templates come from ``poststack.testing``
modules, so a benchmark or a user's script gets exactly what a test gets.

The one fixture a project overrides is ``migrations_dir`` (in its conftest.py); ``migration_runner``,
``db_helper``, ``cli_runner`` and ``migrated_database_url`` all follow it. The helpers work on *the test's
database*: ``migrated_database_url`` when the test asks for it, else ``database_url``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from poststack.testing import scenario_data

if TYPE_CHECKING:  # imported in the fixtures: a run that uses no database never loads psycopg or pglast
    from poststack.schema_migration import MigrationRunner
    from poststack.testing.cli_runner import CLITestRunner
    from poststack.testing.db_helper import DbHelper
    from poststack.testing.server import DatabaseFactory, TestServer
    from poststack.testing.templates import TemplateCache

MARKERS = {
    "integration": "test that talks to a real PostgreSQL through poststack's fixtures",
    "database": "test that needs a database (a fresh one per test)",
    "slow": "long-running test; selected with --run-slow or -m slow",
}

# Fixtures that reach the server (some only at run time, through request.getfixturevalue).
DATABASE_FIXTURES = frozenset({"postgres_server", "poststack_databases", "poststack_templates", "database_url",
                               "migrated_database_url", "migration_runner", "db_helper", "cli_runner"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poststack")
    group.addoption("--poststack-database-url", default=None,
                    help="run database tests on this server instead of an embedded PostgreSQL "
                         "(also POSTSTACK_TEST_DATABASE_URL)")
    group.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")
    group.addoption("--poststack-migrations", default=None, metavar="PATH",
                    help="generate tests for this migrations directory: files valid, upgrade from empty, "
                         "each rollback restores the schema and re-applies, lint clean "
                         "(or generated_tests = true in [tool.poststack])")
    group.addoption("--poststack-no-lint", action="store_true", default=False,
                    help="leave lint out of the generated tests")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, so it sees the markers added here
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                   items: list[pytest.Item]) -> None:
    """Mark tests that use the server ``integration`` and ``database``; skip slow tests unless asked for.

    Marking by fixture rather than by hand means ``-m "not database"`` reliably selects the tests that run
    without PostgreSQL. Slow tests run with ``--run-slow`` or when the ``-m`` expression names ``slow``.
    """
    from poststack.testing import generated

    items.extend(generated.collect(session))
    run_slow = config.getoption("--run-slow") or "slow" in (config.getoption("-m") or "")
    skip = pytest.mark.skip(reason="slow: run with --run-slow or -m slow")
    for item in items:
        if DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            for name in ("integration", "database"):
                if item.get_closest_marker(name) is None:
                    item.add_marker(name)
        if not run_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def _run_dir(factory: pytest.TempPathFactory) -> Path:
    # Under xdist every worker's basetemp sits in one run directory: the server belongs to the run, shared.
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


_SERVER = pytest.StashKey["TestServer"]()


def session_server(config: pytest.Config) -> TestServer:
    """The session's server, started on first use; shared by the fixtures and the generated tests."""
    if _SERVER not in config.stash:
        config.stash[_SERVER] = _start_server(config, config._tmp_path_factory)  # type: ignore[attr-defined]
    return config.stash[_SERVER]


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> TestServer:
    """The PostgreSQL server of this test session: external when a URL is given, else embedded."""
    return session_server(request.config)


def _start_server(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> TestServer:
    from poststack.testing import server as test_server

    url = config.getoption("--poststack-database-url") or os.environ.get("POSTSTACK_TEST_DATABASE_URL")
    if url:
        return test_server.external(url)
    run_dir = _run_dir(tmp_path_factory)
    fast = test_server.fast_data_dir(run_dir)
    if fast is not None:
        return test_server.start_embedded_at(fast)
    return test_server.start_embedded(run_dir / "poststack-server")


@pytest.fixture(scope="session")
def poststack_databases(postgres_server: TestServer) -> Iterator[DatabaseFactory]:
    """Creates and drops this session's test databases over one maintenance connection."""
    from poststack.testing.server import DatabaseFactory

    factory = DatabaseFactory(postgres_server)
    yield factory
    factory.close()


@pytest.fixture
def database_url(poststack_databases: DatabaseFactory) -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards even when the test failed."""
    with poststack_databases.scratch() as url:
        yield url


@pytest.fixture(scope="session")
def poststack_templates(postgres_server: TestServer,
                        poststack_databases: DatabaseFactory) -> Iterator[TemplateCache]:
    """Template databases at the head of each migrations directory this session uses, built once."""
    from poststack.testing.templates import TemplateCache

    cache = TemplateCache(postgres_server, poststack_databases)
    yield cache
    cache.close()


# -- migrations directories --------------------------------------------------------------------------------
@pytest.fixture
def make_migrations(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: ``make_migrations({"001_x.sql": "...", "001_x.rollback.sql": "..."})`` -> a new directory."""

    def make(files: Mapping[str, str | bytes], name: str = "migrations") -> Path:
        return scenario_data.write_migrations(tmp_path_factory.mktemp(name), files)

    return make


@pytest.fixture
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: ``scenario("complex")`` -> a fresh copy of a shipped scenario (see poststack.testing)."""

    def copy(name: str) -> Path:
        return scenario_data.scenario(name, tmp_path_factory.mktemp(name))

    return copy


@pytest.fixture
def sample_migrations(scenario: Callable[[str], Path]) -> Path:
    """A copy of the ``basic`` scenario: schema app with users and posts, each migration with a rollback."""
    return scenario("basic")


@pytest.fixture
def migrations_dir(request: pytest.FixtureRequest) -> Path:
    """The migrations under test: override it in your conftest.py to test your own directory.

    One test can pick others by indirect parametrization, with a scenario name, a dict of files or a path:
    ``@pytest.mark.parametrize("migrations_dir", ["complex"], indirect=True)``. Default: sample_migrations.
    """
    param = getattr(request, "param", None)
    if param is None:
        return Path(request.getfixturevalue("sample_migrations"))
    if isinstance(param, Mapping):
        return Path(request.getfixturevalue("make_migrations")(param))
    if isinstance(param, str) and "/" not in param and param in scenario_data.scenario_names():
        return Path(request.getfixturevalue("scenario")(param))
    return Path(param)


# -- databases at the head of migrations_dir, and helpers on the test's database ---------------------------
@pytest.fixture
def migrated_database_url(poststack_templates: TemplateCache, poststack_databases: DatabaseFactory,
                          migrations_dir: Path) -> Iterator[str]:
    """A fresh database with every migration of ``migrations_dir`` applied, cloned from a template."""
    from poststack.errors import PoststackError

    try:
        name = poststack_templates.clone(migrations_dir)
    except PoststackError as exc:  # the user's migrations are at fault: their message, not our traceback
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        pytest.fail(f"migrated_database_url: migrations in {migrations_dir} cannot be applied: {problem}",
                    pytrace=False)
    try:
        yield poststack_databases.server.database_url(name)
    finally:
        poststack_databases.drop(name)


def _test_database_url(request: pytest.FixtureRequest) -> str:
    wanted = "migrated_database_url" if "migrated_database_url" in request.fixturenames else "database_url"
    return str(request.getfixturevalue(wanted))


@pytest.fixture
def migration_runner(request: pytest.FixtureRequest, migrations_dir: Path) -> MigrationRunner:
    """``MigrationRunner(<the test's database>, migrations_dir)``."""
    from poststack.schema_migration import MigrationRunner

    return MigrationRunner(_test_database_url(request), migrations_dir)


@pytest.fixture
def db_helper(request: pytest.FixtureRequest, migrations_dir: Path) -> Iterator[DbHelper]:
    """Catalog checks, SQL and history helpers on the test's database; versions resolve in migrations_dir."""
    from poststack.testing.db_helper import DbHelper

    with DbHelper(_test_database_url(request), migrations_dir) as helper:
        yield helper


@pytest.fixture
def cli_runner(request: pytest.FixtureRequest, migrations_dir: Path) -> CLITestRunner:
    """``CLITestRunner(<the test's database>, migrations_dir)``: run ``poststack db`` commands in-process."""
    from poststack.testing.cli_runner import CLITestRunner

    return CLITestRunner(_test_database_url(request), migrations_dir)
