"""The plugin's fixtures, registered only in projects that use poststack (see ``poststack.testing.project``).

Fixtures hold no logic of their own: servers, databases and templates come from ``poststack.testing``
modules, so a benchmark or a user's script gets exactly what a test gets. ``migrations_dir`` defaults to the
configured ``migrations_path``; every other fixture follows it and the configured history schema. The
helpers work on *the test's database*: ``migrated_database_url`` when the test asks for it, else
``database_url``.

``cli_runner`` lives in ``poststack.testing.cli_fixture``: it is registered only when no other plugin
(pytest-click) has a fixture of that name; ``poststack_cli_runner`` is always there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from poststack.errors import PoststackError, UsageError
from poststack.testing import project, scenario_data
from poststack.testing.hints import with_hint
from poststack.testing.session import session_databases, session_server, session_templates

if TYPE_CHECKING:  # imported in the fixtures: a run that uses no database never loads psycopg or pglast
    import psycopg

    from poststack.schema_migration import MigrationRunner
    from poststack.testing.cli_runner import CLITestRunner
    from poststack.testing.db_helper import DbHelper
    from poststack.testing.server import DatabaseFactory, TestServer
    from poststack.testing.templates import TemplateCache


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> TestServer:
    """The PostgreSQL server of this test session: external when a URL is given, else embedded."""
    return session_server(request.config)


@pytest.fixture(scope="session")
def poststack_databases(request: pytest.FixtureRequest, postgres_server: TestServer) -> DatabaseFactory:
    """Creates and drops this session's test databases over one maintenance connection."""
    return session_databases(request.config)


@pytest.fixture(scope="session")
def poststack_templates(request: pytest.FixtureRequest, poststack_databases: DatabaseFactory) -> TemplateCache:
    """Template databases of the migrations directories this session uses, built once, at any version."""
    return session_templates(request.config)


@pytest.fixture(scope="session")
def poststack_history_schema(request: pytest.FixtureRequest) -> str:
    """The history schema: ``POSTSTACK_HISTORY_SCHEMA``, else ``history_schema`` in [tool.poststack]."""
    return project.read(request.config).history_schema


@pytest.fixture
def database_url(poststack_databases: DatabaseFactory) -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards even when the test failed."""
    with poststack_databases.scratch() as url:
        yield url


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


def migrations_dir_for(request: pytest.FixtureRequest, default: Path | str | Callable[[], Path] | None = None) -> Path:
    """What ``migrations_dir`` is for this request: the indirect parameter when the test has one (a scenario
    name, a dict of files or a path), else ``default`` (a path, or a callable returning one), else the
    configured ``migrations_path``. An override of ``migrations_dir`` calls this so that parametrization
    keeps working: ``return migrations_dir_for(request, Path(__file__).parent / "migrations")``."""
    param = getattr(request, "param", None)
    if param is not None:
        if isinstance(param, Mapping):
            return Path(request.getfixturevalue("make_migrations")(param))
        if isinstance(param, str) and "/" not in param and param in scenario_data.scenario_names():
            return Path(request.getfixturevalue("scenario")(param))
        return _existing(Path(param), f"migrations_dir parameter {param!r}")
    if default is not None:
        return Path(default() if callable(default) else default)
    settings = project.read(request.config)
    if settings.migrations_path is None:
        pytest.fail("migrations_dir: no migrations directory is configured, and poststack will not test its "
                    "sample migrations instead: set migrations_path in [tool.poststack] (pyproject.toml), "
                    "override the migrations_dir fixture in conftest.py, or parametrize it (indirect=True)",
                    pytrace=False)
    return _existing(settings.migrations_path, settings.migrations_source)


def _existing(path: Path, where: str) -> Path:
    if not path.is_dir():
        pytest.fail(f"migrations_dir: {path} ({where}) is not a directory", pytrace=False)
    return path


@pytest.fixture
def migrations_dir(request: pytest.FixtureRequest) -> Path:
    """The migrations under test: the configured ``migrations_path`` ([tool.poststack]), unless the test
    parametrizes it indirectly (``@pytest.mark.parametrize("migrations_dir", ["complex"], indirect=True)``)
    or conftest.py overrides it (with ``migrations_dir_for``, so that parametrization still works)."""
    return migrations_dir_for(request)


# -- databases of migrations_dir, and helpers on the test's database ---------------------------------------
def _clone(templates: TemplateCache, directory: Path, schema: str, target: int | None, what: str) -> str:
    try:
        return templates.clone(directory, schema, target=target)
    except UsageError as exc:
        problem = str(exc)
    except PoststackError as exc:  # the user's migrations are at fault: their message, not our traceback
        problem = f"migrations in {directory} cannot be applied: {with_hint(str(exc))}"
    pytest.fail(f"{what}: {problem}", pytrace=False)


@pytest.fixture
def migrated_database_url(poststack_templates: TemplateCache, poststack_databases: DatabaseFactory,
                          migrations_dir: Path, poststack_history_schema: str) -> Iterator[str]:
    """A fresh database with every migration of ``migrations_dir`` applied, cloned from a template."""
    name = _clone(poststack_templates, migrations_dir, poststack_history_schema, None, "migrated_database_url")
    try:
        yield poststack_databases.server.database_url(name)
    finally:
        poststack_databases.drop(name)


@pytest.fixture
def database_at(poststack_templates: TemplateCache, poststack_databases: DatabaseFactory, migrations_dir: Path,
                poststack_history_schema: str) -> Iterator[Callable[[int | str], str]]:
    """Factory: ``database_at("008")`` -> the URL of a fresh database with migrations up to 008 applied,
    cloned from a cached template at that version. Each call gives a new database; all are dropped after
    the test. For data migrations: insert rows at N-1, ``MigrationRunner(url, migrations_dir).step_up()``,
    assert on the data."""
    # deferred: keeps start-up fast (the SQL scanners, slow to import: only for a test that uses this fixture)
    from poststack.source.files import parse_version

    made: list[str] = []

    def at(version: int | str) -> str:
        target = version if isinstance(version, int) else parse_version(str(version), "database_at")
        name = _clone(poststack_templates, migrations_dir, poststack_history_schema, target,
                      f"database_at({version!r})")
        made.append(name)
        return poststack_databases.server.database_url(name)

    try:
        yield at
    finally:
        for name in made:
            poststack_databases.drop(name)


def _test_database_url(request: pytest.FixtureRequest) -> str:
    wanted = "migrated_database_url" if "migrated_database_url" in request.fixturenames else "database_url"
    return str(request.getfixturevalue(wanted))


@pytest.fixture
def migration_runner(request: pytest.FixtureRequest, migrations_dir: Path,
                     poststack_history_schema: str) -> MigrationRunner:
    """``MigrationRunner(<the test's database>, migrations_dir)``."""
    # deferred: keeps start-up fast (psycopg and the migration engine: only for a test that uses this fixture)
    from poststack.schema_migration import MigrationRunner

    return MigrationRunner(_test_database_url(request), migrations_dir, history_schema=poststack_history_schema)


@pytest.fixture
def db_helper(request: pytest.FixtureRequest, migrations_dir: Path,
              poststack_history_schema: str) -> Iterator[DbHelper]:
    """Catalog checks, SQL and history helpers on the test's database; versions resolve in migrations_dir."""
    # deferred: keeps start-up fast (psycopg: only for a test that uses this fixture)
    from poststack.testing.db_helper import DbHelper

    with DbHelper(_test_database_url(request), migrations_dir, history_schema=poststack_history_schema) as helper:
        yield helper


@pytest.fixture
def db_connection(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection (autocommit) to the test's database, closed after the test."""
    # deferred: keeps start-up fast (psycopg: only for a test that uses this fixture)
    from poststack.db.connection import connect

    with connect(_test_database_url(request), autocommit=True) as conn:
        yield conn


@pytest.fixture
def poststack_cli_runner(request: pytest.FixtureRequest, migrations_dir: Path,
                         poststack_history_schema: str) -> CLITestRunner:
    """``CLITestRunner(<the test's database>, migrations_dir)``: run ``poststack db`` commands in-process."""
    # deferred: keeps start-up fast (click and the CLI: only for a test that uses this fixture)
    from poststack.testing.cli_runner import CLITestRunner

    return CLITestRunner(_test_database_url(request), migrations_dir, history_schema=poststack_history_schema)


# Fixtures that reach the server (some only at run time, through request.getfixturevalue).
DATABASE_FIXTURES = frozenset({"postgres_server", "poststack_databases", "poststack_templates", "database_url",
                               "migrated_database_url", "database_at", "migration_runner", "db_helper",
                               "db_connection", "cli_runner", "poststack_cli_runner"})
