"""Generated tests for any SQL migrations directory: ``pytest --poststack-migrations=PATH``.

A project whose migrations are plain SQL files gets, without writing a test: the files are valid, the whole
set upgrades an empty database, every rollback restores the catalog exactly and the migration re-applies
after it, and each file is lint clean. Test names carry the version and name, so a failure points at a file.
Each test works on its own scratch database, so they run in any order and spread over xdist workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poststack.config import pyproject_table

Check = Callable[[str], None]  # receives the server's maintenance URL; raises GeneratedFailure


class GeneratedFailure(AssertionError):
    """A generated check failed; its message is the whole report (no Python traceback is useful)."""


def configured_directory(config: pytest.Config) -> tuple[Path, bool] | None:
    """The directory to generate tests for and whether to lint it, from the option or [tool.poststack].

    pyproject only turns generation on with ``generated_tests = true``, so that configuring poststack for
    the CLI does not change what a project's test run collects.
    """
    lint = not config.getoption("--poststack-no-lint")
    option = config.getoption("--poststack-migrations")
    if option:
        return Path(option).resolve(), lint
    table = pyproject_table(config.rootpath)
    if table.get("generated_tests") and table.get("migrations_path"):
        return (config.rootpath / str(table["migrations_path"])).resolve(), lint and table.get("lint", True)
    return None


class GeneratedItem(pytest.Item):
    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("integration")
        self.add_marker("database")

    def runtest(self) -> None:
        from poststack.testing.plugin import session_server

        self.check(session_server(self.config).url)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GeneratedFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.parent.name if self.parent else ''}::{self.name}"


class MigrationsCollector(pytest.Collector):
    """The tests of one migrations directory."""

    def __init__(self, *, lint: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lint = lint

    def collect(self) -> Iterator[GeneratedItem]:
        from poststack.files import load_migrations

        directory = self.path
        migrations = load_migrations(directory)
        yield self._item("files_valid", lambda _url: _check_files(directory))
        yield self._item("upgrade_from_empty", lambda url: _check_upgrade(url, directory))
        for migration in migrations:
            label = f"{migration.version_text}_{migration.name}"
            version = migration.version
            yield self._item(f"{label}::rollback_restores_schema",
                             lambda url, v=version: _check_rollback(url, directory, v))
            if self.lint:
                yield self._item(f"{label}::lint", lambda _url, v=version: _check_lint(directory, v))

    def _item(self, name: str, check: Check) -> GeneratedItem:
        return GeneratedItem.from_parent(self, name=name, check=check, path=self.path)


def collect(session: pytest.Session) -> list[GeneratedItem]:
    """Items for the configured directory (none when generation is not configured)."""
    found = configured_directory(session.config)
    if found is None:
        return []
    directory, lint = found
    if not directory.is_dir():
        raise pytest.UsageError(f"--poststack-migrations: {directory} is not a directory")
    collector = MigrationsCollector.from_parent(session, name=f"poststack-migrations[{directory.name}]",
                                                nodeid=f"poststack-migrations[{directory.name}]",
                                                path=directory, lint=lint)
    return list(collector.collect())


def _check_files(directory: Path) -> None:
    from poststack.validation import validate

    result = validate(directory, files=True, checksums=False, rollbacks=False)
    if not result.ok:
        raise GeneratedFailure("\n".join(p.message for p in result.problems))


def _check_upgrade(url: str, directory: Path) -> None:
    from poststack.errors import PoststackError
    from poststack.schema_migration import MigrationRunner
    from poststack.verify import scratch_database

    with scratch_database(url) as scratch:
        try:
            MigrationRunner(scratch, directory).migrate()
        except PoststackError as exc:
            raise GeneratedFailure(f"upgrade from an empty database failed: {exc}") from None


def _check_rollback(url: str, directory: Path, version: int) -> None:
    from poststack.files import load_migrations
    from poststack.verify import verify_migration

    verdict = verify_migration(url, load_migrations(directory), version)
    if not verdict.passed:
        raise GeneratedFailure(verdict.describe())


def _check_lint(directory: Path, version: int) -> None:
    from poststack.lint import lint_migrations

    findings = [f for f in lint_migrations(directory).findings if f.version == version]
    if findings:
        raise GeneratedFailure("\n".join(f.describe() for f in findings))
