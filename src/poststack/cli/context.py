"""What the root command resolves once and every subcommand reads: settings, output format, verbosity."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import click

from poststack.cli.failure import remember_secret_source
from poststack.cli.render import line
from poststack.config import Settings, load_lock_policy, load_settings

if TYPE_CHECKING:
    from poststack.schema_migration import MigrationRunner


@dataclass
class CliContext:
    settings: Settings
    verbosity: int = 0
    explicit: dict[str, object] = field(default_factory=dict)  # settings given on the command line

    def override(self, name: str, value: object, ctx: click.Context) -> None:
        """A root option typed after the subcommand: fold it in (see cli.root_options)."""
        if name in ("verbose", "quiet"):
            quiet = name == "quiet"
            if (self.verbosity > 0) if quiet else (self.verbosity < 0):
                raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; pass one of them", ctx)
            self.verbosity = -1 if quiet else self.verbosity + int(value)  # type: ignore[call-overload]
            return
        if name == "database_url":
            remember_secret_source(value if isinstance(value, str) else None)
        self.explicit[name] = value
        self.settings = load_settings(**self.explicit)  # type: ignore[arg-type]
        remember_secret_source(self.settings.database_url)

    def runner(self) -> MigrationRunner:
        # deferred: keeps start-up fast (every command, --help included, imports this module; only the commands
        # that run migrations need the migration engine)
        from poststack.schema_migration import MigrationRunner

        s = self.settings
        return MigrationRunner(s.database_url, s.migrations_path, history_schema=s.history_schema,
                               lock_timeout=s.lock_timeout, statement_lock_timeout=s.statement_lock_timeout,
                               lock_retries=s.lock_retries)

    def with_lock_policy(self, statement_lock_timeout: float | None, lock_retries: int | None) -> CliContext:
        """This context with --statement-lock-timeout / --lock-retries (else env, else pyproject) resolved."""
        settings = load_lock_policy(self.settings, statement_lock_timeout=statement_lock_timeout,
                                    lock_retries=lock_retries)
        return replace(self, settings=settings)

    def say(self, message: str) -> None:
        """Progress and notes for humans: stderr, so stdout stays clean for JSON and pipes."""
        if self.verbosity >= 0:
            line(message, err=True)


pass_ctx = click.make_pass_decorator(CliContext)

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format; json is stable and documented.")

# diagnose, recover, repair and mark judge the catalog against replayed states: where to replay them.
dev_url_option = click.option("--dev-url", envvar="POSTSTACK_DEV_URL", default=None, metavar="URL",
                              help="Server to replay the migrations on (else the target's, else the embedded one).")
