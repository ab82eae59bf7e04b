"""The root ``poststack`` group and its global options; subcommand groups are registered here."""

from __future__ import annotations

import importlib

import click

from poststack import __version__
from poststack.cli.context import CliContext
from poststack.cli.failure import remember_secret_source
from poststack.cli.root_options import add_root_options
from poststack.config import load_settings


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or listed by --help).

    Importing every command's library (diagnostics, pglast, snapshots) on each start would triple the
    latency of a no-op ``migrate``, which deploy pipelines run on every release.
    """

    def __init__(self, *args: object, lazy: dict[str, str], root_options: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy
        self.root_options = root_options  # subcommands also accept the root's options (cli.root_options)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command: click.Command | None
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            # deferred: keeps start-up fast (a subcommand's module, and the library it calls, only when it runs)
            command = getattr(importlib.import_module(f"poststack.cli.{module_name}"), attr)
            assert isinstance(command, click.Command)
        else:
            command = super().get_command(ctx, cmd_name)
        if command is not None and self.root_options:
            add_root_options(command, cli)
        return command


DB_COMMANDS = {
    "migrate": "db_commands:migrate",
    "rollback": "db_commands:rollback",
    "migration-status": "db_commands:migration_status",
    "migration-info": "db_commands:migration_info",
    "diagnose": "integrity_commands:diagnose",
    "repair": "integrity_commands:repair",
    "validate": "integrity_commands:validate",
    "clean": "integrity_commands:clean",
    "recover": "recover_command:recover",
    "mark": "mark_command:mark",
    "verify": "verify_commands:verify",
    "lint": "verify_commands:lint",
    "adopt": "adopt_command:adopt_command",
}
SERVER_COMMANDS = {name: f"server_commands:{name}" for name in ("status", "start", "stop", "url")}
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--database-url", envvar=None, default=None, metavar="URL",
              help="Target database (else POSTSTACK_DATABASE_URL, DATABASE_URL, [tool.poststack], "
                   "else the project's embedded PostgreSQL). Visible to other users in ps: prefer "
                   "--database-url-file or the environment for passwords.")
@click.option("--database-url-file", default=None, metavar="PATH",
              help="Read the database URL from this file (one line), keeping the password out of argv "
                   "(also POSTSTACK_DATABASE_URL_FILE).")
@click.option("--migrations-path", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Migrations directory (else POSTSTACK_MIGRATIONS_PATH, default ./migrations).")
@click.option("--history-schema", default=None, help="Schema of the history tables (default poststack).")
@click.option("--lock-timeout", default=None, metavar="SECONDS",
              help="How long to wait for the migration lock (default 60).")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and requested output.")
@click.version_option(__version__, "--version", prog_name="poststack")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, database_url_file: str | None, migrations_path: str | None,
        history_schema: str | None, lock_timeout: str | None, verbose: int, quiet: bool) -> None:
    """poststack: PostgreSQL schema migrations whose recorded state can be trusted."""
    if quiet and verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; pass one of them", ctx)
    remember_secret_source(database_url)  # before anything can fail: error lines are scrubbed of its password
    explicit = {"database_url": database_url, "migrations_path": migrations_path, "history_schema": history_schema,
                "lock_timeout": lock_timeout, "database_url_file": database_url_file}
    settings = load_settings(**explicit)  # type: ignore[arg-type]
    remember_secret_source(settings.database_url)
    ctx.obj = CliContext(settings, -1 if quiet else verbose,
                         explicit={k: v for k, v in explicit.items() if v is not None})


@cli.group(cls=LazyGroup, lazy=DB_COMMANDS, root_options=True)
def db() -> None:
    """Migrate, roll back, inspect and repair a database."""


@cli.group(cls=LazyGroup, lazy=SERVER_COMMANDS)
def server() -> None:
    """Manage the project-local embedded PostgreSQL (used when no database URL is given)."""
