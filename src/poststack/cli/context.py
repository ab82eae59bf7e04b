"""What the root command resolves once and every subcommand reads: settings, output format, verbosity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from poststack.config import Settings

if TYPE_CHECKING:
    from poststack.schema_migration import MigrationRunner


@dataclass
class CliContext:
    settings: Settings
    verbosity: int = 0

    def runner(self) -> MigrationRunner:
        from poststack.schema_migration import MigrationRunner

        s = self.settings
        return MigrationRunner(s.resolved_url(), s.migrations_path, history_schema=s.history_schema,
                               lock_timeout=s.lock_timeout, statement_lock_timeout=s.statement_lock_timeout,
                               lock_retries=s.lock_retries)

    def with_lock_policy(self, statement_lock_timeout: float | None, lock_retries: int | None) -> CliContext:
        """This context with --statement-lock-timeout / --lock-retries (else env, else pyproject) resolved."""
        from dataclasses import replace

        from poststack.config import load_lock_policy

        settings = load_lock_policy(self.settings, statement_lock_timeout=statement_lock_timeout,
                                    lock_retries=lock_retries)
        return replace(self, settings=settings)

    def say(self, message: str) -> None:
        """Progress and notes for humans: stderr, so stdout stays clean for JSON and pipes."""
        if self.verbosity >= 0:
            click.echo(message, err=True)


pass_ctx = click.make_pass_decorator(CliContext)

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format; json is stable and documented.")
