"""The test session's server, databases, templates and roles: started on first use, shared, closed at the end.

The fixtures, the generated tests and the plugin's hooks all reach them through the functions here, which
keep them in the run's ``config.stash``. Apart from the plugin so that the fixtures and the generated tests,
which the plugin registers, do not import the plugin back.

The plugin imports this module in every pytest run of every project that has poststack installed, so what
starts a server (psycopg, the embedded wheel) is imported only when a test first needs one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from poststack.testing.roles import RunRoles
    from poststack.testing.server import DatabaseFactory, TestServer
    from poststack.testing.templates import TemplateCache

_SERVER: pytest.StashKey[TestServer] = pytest.StashKey()
_SERVER_ERROR = pytest.StashKey[str]()
_DATABASES: pytest.StashKey[DatabaseFactory] = pytest.StashKey()
_TEMPLATES: pytest.StashKey[TemplateCache] = pytest.StashKey()
_ROLES: pytest.StashKey[RunRoles] = pytest.StashKey()
_PENDING_DIRECTORIES = pytest.StashKey[set[Path]]()  # noted before the server started


def is_xdist_worker(config: pytest.Config) -> bool:
    # Not PYTEST_XDIST_WORKER: a pytest run started from inside an xdist worker (pytester) inherits it.
    return hasattr(config, "workerinput")


def run_dir(config: pytest.Config) -> Path:
    # Under xdist every worker's basetemp sits in one run directory: the server belongs to the run, shared.
    base = basetemp(config)
    return base.parent if is_xdist_worker(config) else base


def basetemp(config: pytest.Config) -> Path:
    """The session's base temporary directory: the one ``tmp_path_factory.getbasetemp()`` returns.

    Read through pytest's private ``config._tmp_path_factory``, which is the very object the public
    ``tmp_path_factory`` fixture returns; a fixture cannot be reached where this is needed: the generated
    tests are plain pytest.Items without fixtures, and pytest_terminal_summary runs in the xdist controller,
    where no fixture ever runs. The public ways give another directory: ``config.getoption("basetemp")`` is
    None unless --basetemp is given (pytest then picks a numbered pytest-N), and ``TempPathFactory.from_config``
    (itself ``:meta private:``) makes a second factory, which picks another pytest-N or deletes a given
    --basetemp again. pytest-xdist reads the same attribute to place each worker's basetemp
    (xdist.workermanage), which is why the workers' run directory above is one. If pytest drops it, this
    raises AttributeError: a plain failure, never a wrong directory.
    """
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    return factory.getbasetemp()


def note_directory(config: pytest.Config, directory: Path) -> None:
    """Remember a migrations directory the run tests: the roles its migrations create are dropped at the end."""
    if _ROLES in config.stash:
        config.stash[_ROLES].note_directory(directory)
    else:
        config.stash.setdefault(_PENDING_DIRECTORIES, set()).add(directory)


def session_server(config: pytest.Config) -> TestServer:
    """The session's server, started on first use; shared by the fixtures and the generated tests.

    A server that cannot start (or be reached) fails every test that needs it with one line naming the
    cause and what to change; the attempt is made once, not once per test.
    """
    if _SERVER in config.stash:
        return config.stash[_SERVER]
    if _SERVER_ERROR not in config.stash:
        # deferred: keeps start-up fast (psycopg and the embedded server: only once a test needs the server)
        from poststack.testing import server_errors

        printed = ""
        try:
            with server_errors.captured_output() as output:
                try:
                    server = _start_server(config)
                finally:
                    printed = output()
        except Exception as exc:  # what went wrong is the whole message; our stack is of no use to a user
            config.stash[_SERVER_ERROR] = server_errors.describe(exc, config, printed)
        else:
            config.stash[_SERVER] = server
            _join_run(config, server, run_dir(config))
            return server
    pytest.fail(config.stash[_SERVER_ERROR], pytrace=False)


def _join_run(config: pytest.Config, server: TestServer, directory: Path) -> None:
    # deferred: keeps start-up fast (psycopg: only once a test needs the server)
    from poststack.testing.roles import RunRoles

    roles = RunRoles(server.url, directory)
    roles.start()
    for noted in config.stash.get(_PENDING_DIRECTORIES, set()):
        roles.note_directory(noted)
    config.stash[_ROLES] = roles


def session_databases(config: pytest.Config) -> DatabaseFactory:
    if _DATABASES not in config.stash:
        # deferred: keeps start-up fast (psycopg: only once a test needs a database)
        from poststack.testing.server import DatabaseFactory

        config.stash[_DATABASES] = DatabaseFactory(session_server(config))
    return config.stash[_DATABASES]


def session_templates(config: pytest.Config) -> TemplateCache:
    if _TEMPLATES not in config.stash:
        # deferred: keeps start-up fast (psycopg and the migration engine: only once a test needs a template)
        from poststack.testing.templates import TemplateCache

        config.stash[_TEMPLATES] = TemplateCache(session_server(config), session_databases(config))
    return config.stash[_TEMPLATES]


def _start_server(config: pytest.Config) -> TestServer:
    # deferred: keeps start-up fast (psycopg and the embedded server: only once a test needs the server)
    from poststack.testing import server as test_server

    url = config.getoption("poststack_database_url") or os.environ.get("POSTSTACK_TEST_DATABASE_URL")
    if url:
        return test_server.external(url)
    directory = run_dir(config)
    fast = test_server.fast_data_dir(directory)
    if fast is not None:
        return test_server.start_embedded_at(fast)
    return test_server.start_embedded(directory / "poststack-server")


def finish(config: pytest.Config) -> None:
    """After pytest's own teardown of session fixtures: close the templates and databases, then drop the
    run's roles (if this process is the run's last)."""
    stash = config.stash
    if _TEMPLATES in stash:
        stash[_TEMPLATES].close()
    if _DATABASES in stash:
        stash[_DATABASES].close()
    if _ROLES in stash:
        stash[_ROLES].finish()
