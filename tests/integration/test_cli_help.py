"""``--help`` of every command and subcommand, lazily loaded ones included (click's testing advice).

The walk imports each command's module the way ``poststack db <command>`` does, so a command whose import
breaks, or whose help cannot be rendered, fails here instead of on a user's terminal.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from poststack.cli.root import DB_COMMANDS, SERVER_COMMANDS, cli
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of ``command`` and of every command below it (``("db", "migrate")``), groups recursed."""
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=" ".join(("poststack", *path)))
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)  # a lazy command's module is imported here
            assert sub is not None, f"{' '.join(path)} lists {name!r} but cannot load it"
            yield from walk(sub, (*path, name))


def test_every_command_and_subcommand_answers_help():
    paths = list(walk(cli))
    expected = {("db", name) for name in DB_COMMANDS} | {("server", name) for name in SERVER_COMMANDS}
    assert expected | {(), ("db",), ("server",)} <= set(paths)  # the walk reached every lazy table entry
    runner = CLITestRunner("unused", ".")
    failures = []
    for path in paths:
        result = runner.run_raw([*path, "--help"])
        lines = result.stdout.splitlines()
        usage = lines[0].split() if lines else []
        if result.exit_code != 0 or usage[:len(path) + 2] != ["Usage:", "poststack", *path]:
            failures.append(str(result))
    assert not failures, "\n".join(failures)
