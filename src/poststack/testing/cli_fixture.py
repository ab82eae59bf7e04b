"""``cli_runner``, poststack's seed name for ``poststack_cli_runner``, registered apart from the other fixtures:
only when no other plugin (pytest-click's is a ``click.testing.CliRunner``) already provides a ``cli_runner``,
so installing poststack never replaces another plugin's fixture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from poststack.testing.cli_runner import CLITestRunner


@pytest.fixture
def cli_runner(poststack_cli_runner: CLITestRunner) -> CLITestRunner:
    """``CLITestRunner(<the test's database>, migrations_dir)``: run ``poststack db`` commands in-process."""
    return poststack_cli_runner
