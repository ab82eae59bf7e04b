"""Generated tests for any SQL migrations directory: ``pytest --poststack-migrations=PATH``.

A project whose migrations are plain SQL files gets, without writing a test: the files are valid, the whole
set upgrades an empty database, every rollback restores the catalog exactly (and the database's settings,
and drops the roles its migration created) and the migration re-applies after it, and each file is lint
clean. The directory is collected like a test directory: ``PATH::files_valid``,
``PATH::upgrade_from_empty``, ``PATH/NNN_name.sql::rollback_restores_schema``, ``PATH/NNN_name.sql::lint``;
pytest's header counts them, and each id can be passed back to pytest to run it alone.

Each rollback test starts from a clone of a template at the nearest checkpoint below its migration
(``templates.CHECKPOINT_EVERY``), so its cost does not grow with the number of migrations before it. A
``NNN_name.seed.sql`` file beside a migration is run just before that migration is applied in its rollback
test: data at version NNN-1 that the migration must cope with (a NOT NULL column added to a filled table).

pytest imports this module in every run of a project that uses poststack, generated tests or not: what the
checks need (psycopg, pglast, the migration engine) is imported by the checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poststack.config import pyproject_table
from poststack.errors import PoststackError
from poststack.testing import project
from poststack.testing.hints import with_hint
from poststack.testing.session import session_databases

Check = Callable[[pytest.Config], None]  # raises GeneratedFailure


class GeneratedFailure(AssertionError):
    """A generated check failed; its message is the whole report (no Python traceback is useful)."""


def configured_directory(config: pytest.Config) -> tuple[Path, bool] | None:
    """The directory to generate tests for and whether to lint it, from the option or [tool.poststack].

    pyproject only turns generation on with ``generated_tests = true``, so that configuring poststack for
    the CLI does not change what a project's test run collects.
    """
    lint = not config.getoption("poststack_no_lint")
    option = config.getoption("poststack_migrations")
    if option:
        return Path(option).resolve(), lint
    table = pyproject_table(config.rootpath)
    if table.get("generated_tests") and table.get("migrations_path"):
        return (config.rootpath / str(table["migrations_path"])).resolve(), lint and table.get("lint", True)
    return None


_SELECTED = pytest.StashKey[set[str]]()  # "<path>::<name>" of the generated tests the arguments named
_SELECTION_ENV = "POSTSTACK_GENERATED_SELECTION"  # the same, for xdist workers (they get rewritten arguments)


def add_to_arguments(config: pytest.Config) -> None:
    """Make pytest collect the directory: added to the run's arguments when they are pytest's defaults
    (testpaths, the current directory) or when ``--poststack-migrations`` names it; not when the user named
    other tests on the command line while only pyproject turns generation on.

    pytest refuses ``DIR::NAME`` arguments, so ``migrations::files_valid`` is rewritten to the directory,
    and ``select`` later keeps only what the arguments named."""
    found = configured_directory(config)
    if found is None:
        return
    directory = found[0]
    if not directory.is_dir():
        raise pytest.UsageError(f"--poststack-migrations: {directory} is not a directory")
    invocation = config.invocation_params.dir
    wanted: set[str] = set()
    rewritten = False
    for i, arg in enumerate(config.args):
        path_text, _, names = arg.partition("::")
        path = (invocation / path_text).resolve()
        if path == directory or directory in path.parents:
            wanted.add(f"{path}::{names}" if names else f"{path}::*")
        if names and path == directory:
            config.args[i] = path_text
            rewritten = True
    if rewritten:
        config.stash[_SELECTED] = wanted
        os.environ[_SELECTION_ENV] = json.dumps(sorted(wanted))  # xdist workers start after this
        return
    if hasattr(config, "workerinput") and os.environ.get(_SELECTION_ENV):  # given already rewritten arguments
        config.stash[_SELECTED] = set(json.loads(os.environ[_SELECTION_ENV]))
        return
    explicit = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit and not config.getoption("poststack_migrations"):
        return
    for arg in config.args:
        path = (invocation / arg.split("::", 1)[0]).resolve()
        if path == directory or path in directory.parents or directory in path.parents:
            return  # pytest reaches it already (or the user chose what in it to run)
    config.args.append(str(directory))


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep, of the generated tests, only those the arguments named (when one was a ``DIR::NAME``)."""
    wanted = config.stash.get(_SELECTED, None)
    if wanted is None:
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, GeneratedItem):
            kept.append(item)
            continue
        own = (item.parent.path if isinstance(item.parent, MigrationFile) else item.path).resolve()
        key = f"{own}::{item.name}"
        if key in seen:
            continue  # named twice (the directory and one of its files)
        seen.add(key)
        whole_file = isinstance(item.parent, MigrationFile) and f"{own}::*" in wanted
        (kept if key in wanted or whole_file else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    found = configured_directory(parent.config)
    if found is None or path.resolve() != found[0]:
        return None
    return MigrationsDirectory.from_parent(parent, path=path, lint=found[1])


class GeneratedItem(pytest.Item):
    def __init__(self, *, check: Check, database: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        if database:  # files_valid and lint read files only: "-m 'not database'" keeps them
            self.add_marker("integration")
            self.add_marker("database")

    def runtest(self) -> None:
        self.check(self.config)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GeneratedFailure | pytest.fail.Exception):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class MigrationsDirectory(pytest.Directory):
    """The tests of one migrations directory: two for the whole set, then one file node per migration."""

    def __init__(self, *, lint: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lint = lint

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        # deferred: keeps start-up fast (the SQL scanners, slow to import: only when a directory is configured)
        from poststack.source.files import load_migrations

        directory = self.path
        yield _item(self, "files_valid", lambda _config: _check_files(directory), database=False)
        yield _item(self, "upgrade_from_empty", lambda config: _check_upgrade(config, directory))
        for migration in load_migrations(directory):
            yield MigrationFile.from_parent(self, path=migration.path, version=migration.version, lint=self.lint)


class MigrationFile(pytest.File):
    def __init__(self, *, version: int, lint: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.lint = lint

    def collect(self) -> Iterator[GeneratedItem]:
        directory, version = self.path.parent, self.version
        yield _item(self, "rollback_restores_schema", lambda config: _check_rollback(config, directory, version))
        if self.lint:
            yield _item(self, "lint", lambda _config: _check_lint(directory, version), database=False)


def _item(parent: pytest.Collector, name: str, check: Check, *, database: bool = True) -> GeneratedItem:
    return GeneratedItem.from_parent(parent, name=name, check=check, database=database)


def _history_schema(config: pytest.Config) -> str:
    return project.read(config).history_schema


def _check_files(directory: Path) -> None:
    # deferred: keeps start-up fast (pglast and psycopg: only when a generated test runs)
    from poststack.engine.validation import validate

    result = validate(directory, files=True, checksums=False, rollbacks=False)
    if not result.ok:
        raise GeneratedFailure("\n".join(p.message for p in result.problems))


def _check_upgrade(config: pytest.Config, directory: Path) -> None:
    # deferred: keeps start-up fast (psycopg and the migration engine: only when a generated test runs)
    from poststack.schema_migration import MigrationRunner

    with session_databases(config).scratch() as url:
        try:
            MigrationRunner(url, directory, history_schema=_history_schema(config)).migrate()
        except PoststackError as exc:
            raise GeneratedFailure(f"upgrade from an empty database failed: {with_hint(str(exc))}") from None


def _check_rollback(config: pytest.Config, directory: Path, version: int) -> None:
    # deferred: keeps start-up fast (psycopg and the verifier: only when a generated test runs)
    from poststack.testing.rollback_test import verify_rollback
    from poststack.testing.templates import load_cached

    problem = verify_rollback(config, load_cached(directory), version, _history_schema(config))
    if problem:
        raise GeneratedFailure(problem)


def _check_lint(directory: Path, version: int) -> None:
    # deferred: keeps start-up fast (pglast: only when a generated test runs)
    from poststack.lint import lint_migrations

    findings = [f for f in lint_migrations(directory).findings if f.version == version]
    if findings:
        raise GeneratedFailure("\n".join(f.describe() for f in findings))
