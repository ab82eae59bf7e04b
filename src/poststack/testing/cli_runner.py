"""CLITestRunner: run ``poststack`` commands in a test and get exit code, stdout, stderr and parsed JSON.

In-process by default (fast: no interpreter start-up) through click's CliRunner isolation around
``poststack.cli.main`` itself, so the exit codes and one-line errors are exactly those of the real entry
point rather than a copy of its mapping. ``subprocess=True`` runs the installed executable instead, for what
only a real process shows (signals, the console script, interpreter start-up, stdin that is not a terminal).
"""

from __future__ import annotations

import json as jsonlib
import os
import subprocess as sp
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from poststack.cli import main
from poststack.cli.root import cli
from poststack.cli.root_options import is_root_copy
from poststack.db.connection import mask_url


@dataclass
class CommandResult:
    """What one command did. ``json`` is the parsed stdout when ``--format json`` was asked for."""

    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = field(default=None, repr=False)  # in-process: an unexpected crash

    @property
    def json_requested(self) -> bool:
        args = self.args
        return any(a == "--format=json" or (a == "--format" and i + 1 < len(args) and args[i + 1] == "json")
                   for i, a in enumerate(args))

    @property
    def json(self) -> Any:
        """Parsed stdout when JSON was requested, else None; invalid JSON fails loudly with the output."""
        if not self.json_requested:
            return None
        try:
            return jsonlib.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout of {self.command_line} is not JSON ({exc}):\n{self.stdout}"
                                 f"\nstderr:\n{self.stderr}") from None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def command_line(self) -> str:
        return "poststack " + " ".join(mask_url(a) if "://" in a or "password" in a else a for a in self.args)

    def __str__(self) -> str:
        return (f"{self.command_line} -> exit {self.exit_code}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


def _option_arity(command: click.Command, *, own_only: bool = False) -> dict[str, int]:
    """Each option string of a command -> how many values follow it (0 for flags); with ``own_only``, without
    the copies of the root options every db subcommand carries (those mean the root's option: hoisted)."""
    arity: dict[str, int] = {}
    for param in command.params:
        if isinstance(param, click.Option) and not (own_only and is_root_copy(param)):
            for opt in (*param.opts, *param.secondary_opts):
                arity[opt] = 0 if param.is_flag or param.count else param.nargs
    return arity


class CLITestRunner:
    """Runs ``poststack --database-url URL --migrations-path DIR db COMMAND ARGS`` and captures the result.

    Options of the root command given among ``args`` (``--lock-timeout``, ``--history-schema``, ``-v``,
    ``-q``) are moved in front of ``db``, where the CLI expects them, unless the subcommand has an option of
    the same name.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, database_url: str, migrations_path: str | Path = "migrations", *,
                 subprocess: bool = False, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, history_schema: str | None = None) -> None:
        self.database_url = database_url
        self.history_schema = history_schema  # first: one among args wins
        self.migrations_path = Path(migrations_path)
        self.subprocess = subprocess
        self.env = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else None

    def __repr__(self) -> str:
        mode = ", subprocess=True" if self.subprocess else ""
        return f"CLITestRunner({mask_url(self.database_url)!r}, {str(self.migrations_path)!r}{mode})"

    def argv(self, command: str, args: Sequence[str] = ()) -> list[str]:
        """The full argument list ``run_command`` runs (without the program name)."""
        root_arity = _option_arity(cli)
        db_group = cli.commands["db"]
        # get_command, not .commands: db is a lazy group whose commands load on first use
        sub = db_group.get_command(click.Context(db_group), command) if isinstance(db_group, click.Group) else None
        own = _option_arity(sub, own_only=True) if sub is not None else {}
        hoisted: list[str] = []
        rest: list[str] = []
        items = list(args)
        i = 0
        while i < len(items):
            name = items[i].split("=", 1)[0]
            if name in root_arity and name not in own and name not in ("--help", "-h"):
                take = 1 if "=" in items[i] else 1 + root_arity[name]
                hoisted += items[i:i + take]
                i += take
            else:
                rest.append(items[i])
                i += 1
        schema = ["--history-schema", self.history_schema] if self.history_schema else []
        return ["--database-url", self.database_url, "--migrations-path", str(self.migrations_path),
                *schema, *hoisted, "db", command, *rest]

    def run_command(self, command: str, args: Sequence[str] = (), *, input: str | None = None) -> CommandResult:
        """Run one ``poststack db`` command, e.g. ``run_command("migrate", ["--target", "002"])``."""
        return self.run_raw(self.argv(command, args), input=input)

    def run_raw(self, argv: Sequence[str], *, input: str | None = None) -> CommandResult:
        """Run ``poststack`` with exactly these arguments (no URL or path added): for global options."""
        argv = [str(a) for a in argv]
        if self.subprocess:
            return self._run_subprocess(argv, input)
        return self._run_in_process(argv, input)

    def _run_in_process(self, argv: list[str], input: str | None) -> CommandResult:
        try:
            runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
        except TypeError:
            runner = CliRunner()
        exception: BaseException | None = None
        cwd = Path.cwd()
        with runner.isolation(input=input, env=self.env) as streams:
            out, err = streams[0], streams[1]
            try:
                if self.cwd is not None:
                    os.chdir(self.cwd)
                code = main(argv)
            except SystemExit as exc:
                code = _exit_code(exc.code)
            except Exception as exc:  # what the real process would show as a traceback and exit 1
                exception = exc
                code = 1
                sys.stderr.write("".join(traceback.format_exception(exc)))
            finally:
                os.chdir(cwd)
                sys.stdout.flush()
                sys.stderr.flush()
            stdout = out.getvalue().decode(errors="replace")
            stderr = err.getvalue().decode(errors="replace") if err is not None else ""
        return CommandResult(argv, code, stdout, stderr, exception)

    def _run_subprocess(self, argv: list[str], input: str | None) -> CommandResult:
        env = {**os.environ, **self.env}
        proc = sp.run([*executable(), *argv], input=input, capture_output=True, text=True, env=env,
                      cwd=self.cwd, check=False, stdin=None if input is not None else sp.DEVNULL)
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def executable() -> list[str]:
    """The ``poststack`` console script installed beside this interpreter, else ``python -m poststack``."""
    script = Path(sys.executable).with_name("poststack")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "poststack"]


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints the message and exits 1
    return 1
