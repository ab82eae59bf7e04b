"""poststack's testing framework: a pytest plugin and helpers for testing SQL migrations on real PostgreSQL.

The plugin (``poststack.testing.plugin``, registered through the ``pytest11`` entry point) provides the
fixtures; everything it uses is importable from here for scripts and benchmarks that do not run pytest.
"""

from __future__ import annotations

from poststack.testing.checks import assert_rollbacks_restore_schema
from poststack.testing.cli_runner import CLITestRunner, CommandResult
from poststack.testing.db_helper import DbHelper
from poststack.testing.scenario_data import SCENARIOS, apply_edits, scenario, scenario_names, write_migrations
from poststack.testing.server import (
    DatabaseFactory,
    TestServer,
    create_database,
    drop_database,
    scratch_database,
)
from poststack.testing.templates import TemplateCache, migrations_fingerprint, template_name

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
    "create_database",
    "drop_database",
    "migrations_fingerprint",
    "scenario",
    "scenario_names",
    "scratch_database",
    "template_name",
    "write_migrations",
]
