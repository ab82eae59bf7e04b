"""The pytest plugin (entry point ``pytest11``): options, markers and the hooks; the session's server, databases
and templates are ``poststack.testing.session``'s.

Installed once, it is loaded by every pytest run in the virtualenv, so it is a good neighbour: its options
are namespaced (``--poststack-*``; the seed's ``--run-slow`` is kept only when no other plugin or conftest
defines it), and its markers, automatic marking, ``slow`` skipping and fixtures (``poststack.testing.fixtures``)
take effect only in projects that use poststack (``poststack.testing.project`` says when that is). Only
then are they imported, too: a run elsewhere pays for the plugin's options and nothing more.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from poststack.testing import project
from poststack.testing import session as _session  # pytest's hooks take an argument named session

MARKERS = {
    "integration": "test that talks to a real PostgreSQL through poststack's fixtures",
    "database": "test that needs a database (a fresh one per test)",
    "slow": "long-running test; selected with --poststack-run-slow (or --run-slow) or -m slow",
}
LEGACY_RUN_SLOW = "--run-slow"
_LEGACY_DEST = "poststack_legacy_run_slow"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poststack")
    group.addoption("--poststack-database-url", default=None,
                    help="run database tests on this server instead of an embedded PostgreSQL "
                         "(also POSTSTACK_TEST_DATABASE_URL)")
    group.addoption("--poststack-run-slow", action="store_true", default=False,
                    help="also run tests marked slow (also --run-slow, when no other plugin defines it)")
    group.addoption("--poststack-migrations", default=None, metavar="PATH",
                    help="generate tests for this migrations directory: files valid, upgrade from empty, "
                         "each rollback restores the schema and re-applies, lint clean "
                         "(or generated_tests = true in [tool.poststack])")
    group.addoption("--poststack-no-lint", action="store_true", default=False,
                    help="leave lint out of the generated tests")
    parser.addini(project.INI_OPTION, type="bool", default=False,
                  help="this project uses poststack: register its markers and fixtures (as [tool.poststack] does)")


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> Generator[None, object, object]:
    """Add the seed's ``--run-slow`` once every plugin and initial conftest has added its options, and only
    if none of them has one: a project's own ``--run-slow`` must not crash on ours."""
    result = yield
    taken = getattr(parser, "_opt2dest", {})
    if LEGACY_RUN_SLOW not in taken:
        parser.getgroup("poststack").addoption(LEGACY_RUN_SLOW, action="store_true", default=False,
                                               dest=_LEGACY_DEST, help="the same as --poststack-run-slow")
    return result


def _other_cli_runner(config: pytest.Config) -> bool:
    """Whether a plugin other than poststack (not a conftest: it overrides by design) has a ``cli_runner``."""
    for plugin in config.pluginmanager.get_plugins():
        if not isinstance(plugin, types.ModuleType) or plugin.__name__.startswith("poststack."):
            continue
        if Path(getattr(plugin, "__file__", "") or "").name == "conftest.py":
            continue
        if callable(getattr(plugin, "cli_runner", None)):
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    settings = project.read(config)
    if not settings.uses_poststack:
        return
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # deferred: keeps start-up fast (pytest loads the plugin in every run; these only where poststack is used)
    from poststack.testing import cli_fixture, fixtures, generated

    generated.add_to_arguments(config)
    found = generated.configured_directory(config)
    if found is not None:  # its migrations' roles are the run's to drop, like those of every migrations_dir
        _session.note_directory(config, found[0])
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "poststack-fixtures")
    if not _other_cli_runner(config) and not config.pluginmanager.is_registered(cli_fixture):
        config.pluginmanager.register(cli_fixture, "poststack-cli-runner")


def run_slow(config: pytest.Config) -> bool:
    """Slow tests run with --poststack-run-slow, --run-slow (ours or another plugin's), or ``-m`` naming slow."""
    try:
        legacy = config.getoption(LEGACY_RUN_SLOW)
    except ValueError:
        legacy = False
    return bool(config.getoption("poststack_run_slow") or legacy or "slow" in (config.getoption("-m") or ""))


@pytest.hookimpl(tryfirst=True)  # before pytest's own Dir: the configured migrations directory is ours
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not project.read(parent.config).uses_poststack:
        return None
    # deferred: keeps start-up fast (pytest loads the plugin in every run; these only where poststack is used)
    from poststack.testing import generated

    return generated.collect_directory(path, parent)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, so it sees the markers added here
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Mark tests that use the server ``integration`` and ``database``; skip slow tests unless asked for.

    Marking by fixture rather than by hand means ``-m "not database"`` reliably selects the tests that run
    without PostgreSQL. Only in projects that use poststack: elsewhere ``slow`` is someone else's marker.
    """
    if not project.read(config).uses_poststack:
        return
    # deferred: keeps start-up fast (pytest loads the plugin in every run; these only where poststack is used)
    from poststack.testing import cli_fixture, generated
    from poststack.testing.fixtures import DATABASE_FIXTURES

    generated.select(config, items)
    database_fixtures = DATABASE_FIXTURES
    if not config.pluginmanager.is_registered(cli_fixture):
        database_fixtures = database_fixtures - {"cli_runner"}  # another plugin's, not ours
    slow = run_slow(config)
    skip = pytest.mark.skip(reason="slow: run with --poststack-run-slow or -m slow")
    for item in items:
        if database_fixtures.intersection(getattr(item, "fixturenames", ())):
            for name in ("integration", "database"):
                if item.get_closest_marker(name) is None:
                    item.add_marker(name)
        if not slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse an override of ``migrations_dir`` that cannot see the test's indirect parameter: it would run
    the test on other migrations than the ones the test names, silently."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "migrations_dir" not in callspec.params:
        return
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).get("migrations_dir")
    if not definitions:
        return
    # deferred: keeps start-up fast (pytest loads the plugin in every run; these only where poststack is used)
    from poststack.testing import fixtures

    func = definitions[-1].func
    if func is getattr(fixtures.migrations_dir, "__wrapped__", fixtures.migrations_dir) or _reads_param(func):
        return
    code = getattr(func, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else repr(func)
    pytest.fail(f"migrations_dir is parametrized indirectly ({callspec.params['migrations_dir']!r}) but the "
                f"migrations_dir fixture at {where} ignores request.param: write it as "
                "'return migrations_dir_for(request, <your default>)' "
                "(from poststack.testing import migrations_dir_for)", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[
        None, object, object]:
    """Note each migrations directory a test uses: the roles its migrations create are the run's to drop."""
    result = yield
    if fixturedef.argname == "migrations_dir" and isinstance(result, str | Path):
        _session.note_directory(request.config, Path(result))
    return result


def _reads_param(func: Any) -> bool:
    code = getattr(func, "__code__", None)
    if code is None:
        return True  # not a plain function: cannot tell, so trust it
    names = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    return "param" in names or "migrations_dir_for" in names


@pytest.hookimpl(trylast=True)  # after pytest's own teardown of session fixtures: every test database is gone
def pytest_sessionfinish(session: pytest.Session) -> None:
    _session.finish(session.config)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say which roles the run created and dropped, and which it could not (read from the run directory,
    where the run's last process left the report: under xdist that is a worker, not this process)."""
    if not project.read(config).uses_poststack or _session.is_xdist_worker(config):
        return
    # deferred: keeps start-up fast (pytest loads the plugin in every run; roles loads psycopg)
    from poststack.testing.roles import stored_report

    report = stored_report(_session.run_dir(config))
    for line in report.lines() if report else ():
        terminalreporter.write_line(line, yellow=True)
