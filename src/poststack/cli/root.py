"""The root ``poststack`` group and its global options; subcommand groups are registered here."""

from __future__ import annotations

import click

from poststack import __version__
from poststack.cli.context import CliContext
from poststack.config import load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--database-url", envvar=None, default=None, metavar="URL",
              help="Target database (else POSTSTACK_DATABASE_URL, DATABASE_URL, [tool.poststack], "
                   "else the project's embedded PostgreSQL).")
@click.option("--migrations-path", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Migrations directory (else POSTSTACK_MIGRATIONS_PATH, default ./migrations).")
@click.option("--history-schema", default=None, help="Schema of the history tables (default poststack).")
@click.option("--lock-timeout", type=float, default=None, metavar="SECONDS",
              help="How long to wait for the migration lock (default 60).")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and requested output.")
@click.version_option(__version__, "--version", prog_name="poststack")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, migrations_path: str | None, history_schema: str | None,
        lock_timeout: float | None, verbose: int, quiet: bool) -> None:
    """poststack: PostgreSQL schema migrations whose recorded state can be trusted."""
    settings = load_settings(database_url=database_url, migrations_path=migrations_path,
                             history_schema=history_schema, lock_timeout=lock_timeout)
    ctx.obj = CliContext(settings, -1 if quiet else verbose)


@cli.group()
def db() -> None:
    """Migrate, roll back, inspect and repair a database."""


@cli.group()
def server() -> None:
    """Manage the project-local embedded PostgreSQL (used when no database URL is given)."""


def _register() -> None:
    from poststack.cli import db_commands, server_commands

    db_commands.register(db)
    server_commands.register(server)
    try:
        from poststack.cli import integrity_commands
    except ImportError:  # the integrity toolkit ships in its own module
        return
    integrity_commands.register(db)


_register()
