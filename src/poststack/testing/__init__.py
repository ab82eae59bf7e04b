"""poststack's testing framework: a pytest plugin and helpers for testing SQL migrations on real PostgreSQL.

The plugin (``poststack.testing.plugin``, registered through the ``pytest11`` entry point) provides the
fixtures; everything it uses is importable from here for scripts and benchmarks that do not run pytest.
Names are imported on first use: pytest imports this package in every run of every project that has
poststack installed, and psycopg, pglast and click are not free to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poststack.testing.checks import (
        assert_rollbacks_restore_schema,
        assert_same_schema,
        checked_snapshot,
        load_schema,
        save_schema,
    )
    from poststack.testing.cli_runner import CLITestRunner, CommandResult
    from poststack.testing.db_helper import DbHelper
    from poststack.testing.fixtures import migrations_dir_for
    from poststack.testing.scenario_data import (
        SCENARIOS,
        apply_edits,
        scenario,
        scenario_names,
        write_migrations,
    )
    from poststack.testing.server import (
        DatabaseFactory,
        TestServer,
        create_database,
        drop_database,
        scratch_database,
    )
    from poststack.testing.templates import TemplateCache, migrations_fingerprint, template_name

_LAZY = {
    "assert_rollbacks_restore_schema": "checks",
    "assert_same_schema": "checks",
    "checked_snapshot": "checks",
    "load_schema": "checks",
    "save_schema": "checks",
    "migrations_dir_for": "fixtures",
    "CLITestRunner": "cli_runner",
    "CommandResult": "cli_runner",
    "DbHelper": "db_helper",
    "SCENARIOS": "scenario_data",
    "apply_edits": "scenario_data",
    "scenario": "scenario_data",
    "scenario_names": "scenario_data",
    "write_migrations": "scenario_data",
    "DatabaseFactory": "server",
    "TestServer": "server",
    "create_database": "server",
    "drop_database": "server",
    "scratch_database": "server",
    "TemplateCache": "templates",
    "migrations_fingerprint": "templates",
    "template_name": "templates",
}

__all__ = [
    "SCENARIOS",
    "CLITestRunner",
    "CommandResult",
    "DatabaseFactory",
    "DbHelper",
    "TemplateCache",
    "TestServer",
    "apply_edits",
    "assert_rollbacks_restore_schema",
    "assert_same_schema",
    "checked_snapshot",
    "create_database",
    "drop_database",
    "load_schema",
    "migrations_dir_for",
    "migrations_fingerprint",
    "save_schema",
    "scenario",
    "scenario_names",
    "scratch_database",
    "template_name",
    "write_migrations",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'poststack.testing' has no attribute {name!r}")
    # deferred: keeps start-up fast (pytest imports this package in every run; see the module's docstring)
    value = getattr(importlib.import_module(f"poststack.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
