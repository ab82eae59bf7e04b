"""Whether the project under test uses poststack, and what it configured: read once per pytest run.

Installing poststack puts its plugin into every pytest run of the virtualenv. A project that never asked for
poststack must see no difference: no markers, no fixtures, no skipped ``slow`` tests. A project *uses
poststack* when any of these holds:

- its pyproject.toml (the first one found from pytest's rootdir upwards) has a ``[tool.poststack]`` table;
- pytest's configuration sets the ini option ``poststack = true``;
- a ``--poststack-*`` option is given on the command line (``--poststack-migrations``,
  ``--poststack-database-url``, ``--poststack-run-slow``).

The fixtures read the migrations directory and history schema the way the CLI does (``POSTSTACK_*``
environment, then ``[tool.poststack]``), so a test and ``poststack db ...`` look at the same history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from poststack.config import DEFAULT_SCHEMA, find_pyproject
from poststack.errors import UsageError

INI_OPTION = "poststack"
_SETTINGS = pytest.StashKey["ProjectSettings"]()
_COMMAND_LINE_OPTIONS = ("poststack_migrations", "poststack_database_url", "poststack_run_slow")


@dataclass(frozen=True)
class ProjectSettings:
    """What the plugin needs to know about the project; ``reason`` says why it counts as using poststack."""

    uses_poststack: bool
    reason: str
    migrations_path: Path | None  # configured, absolute; None when nothing is configured
    migrations_source: str  # where migrations_path came from, for messages
    history_schema: str
    pyproject: Path | None
    table: dict[str, Any]


def _pyproject(rootpath: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The first pyproject.toml from rootpath upwards and its [tool.poststack] table (None: no table)."""
    try:
        found = find_pyproject(rootpath)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if found is None:
        return None, None
    candidate, data = found
    tool = data.get("tool", {})
    table = tool.get("poststack") if isinstance(tool, dict) else None
    return candidate, dict(table) if isinstance(table, dict) else None


def read(config: pytest.Config) -> ProjectSettings:
    """The project's settings (computed once per run, kept in the config's stash)."""
    if _SETTINGS in config.stash:
        return config.stash[_SETTINGS]
    pyproject, table = _pyproject(config.rootpath)
    reason = ""
    if table is not None:
        reason = f"[tool.poststack] in {pyproject}"
    elif _ini_true(config):
        reason = f"ini option {INI_OPTION} = true"
    else:
        given = [name for name in _COMMAND_LINE_OPTIONS if config.getoption(name, None)]
        if given:
            reason = "--" + given[0].replace("_", "-")
    table = table or {}
    base = pyproject.parent if pyproject is not None else config.rootpath
    path_text = os.environ.get("POSTSTACK_MIGRATIONS_PATH")
    source = "POSTSTACK_MIGRATIONS_PATH"
    if not path_text and table.get("migrations_path"):
        path_text, source = str(table["migrations_path"]), f"migrations_path in {pyproject}"
    migrations_path = (base / path_text).resolve() if path_text else None
    schema = os.environ.get("POSTSTACK_HISTORY_SCHEMA") or str(table.get("history_schema") or DEFAULT_SCHEMA)
    settings = ProjectSettings(bool(reason), reason, migrations_path, source if path_text else "", schema,
                               pyproject, table)
    config.stash[_SETTINGS] = settings
    return settings


def _ini_true(config: pytest.Config) -> bool:
    try:
        return bool(config.getini(INI_OPTION))
    except (ValueError, KeyError):  # not registered (the plugin's addoption did not run)
        return False
