"""Settings, resolved once: command-line flags > POSTSTACK_* environment > DATABASE_URL > pyproject.toml.

A missing database URL is not an error: it selects the project-local embedded PostgreSQL.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from poststack.errors import UsageError

DEFAULT_MIGRATIONS_PATH = "migrations"
DEFAULT_SCHEMA = "poststack"
DEFAULT_LOCK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    migrations_path: Path = Path(DEFAULT_MIGRATIONS_PATH)
    history_schema: str = DEFAULT_SCHEMA
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    statement_lock_timeout: float | None = None  # seconds; None: poststack sets no lock_timeout
    lock_retries: int = 0

    def resolved_url(self) -> str:
        """The URL to connect to; starts the embedded server when none was configured."""
        if self.database_url:
            return self.database_url
        from poststack import embedded

        return embedded.default_url()


def pyproject_table(start: Path) -> dict[str, Any]:
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"{candidate}: cannot read [tool.poststack]: {exc}") from None
            return dict(data.get("tool", {}).get("poststack", {}))
    return {}


def validate_schema_name(name: str) -> str:
    """History schema names are quoted as identifiers everywhere; only length and NUL can make them invalid."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise UsageError(f"--history-schema: {name!r} is not a valid schema name (1-63 bytes, no NUL)")
    if name.startswith("pg_"):
        raise UsageError(f"--history-schema: {name!r} is reserved: PostgreSQL keeps the pg_ prefix for system schemas")
    return name


def load_settings(*, database_url: str | None = None, migrations_path: str | Path | None = None,
                  history_schema: str | None = None, lock_timeout: float | None = None,
                  cwd: Path | None = None) -> Settings:
    env = os.environ
    project = pyproject_table((cwd or Path.cwd()).resolve())
    url = (database_url or env.get("POSTSTACK_DATABASE_URL") or env.get("DATABASE_URL")
           or project.get("database_url") or None)
    path = migrations_path or env.get("POSTSTACK_MIGRATIONS_PATH") or project.get("migrations_path")
    schema = (history_schema if history_schema is not None  # an explicit '' is an error, not the default
              else env.get("POSTSTACK_HISTORY_SCHEMA") or project.get("history_schema"))
    timeout = lock_timeout if lock_timeout is not None else env.get("POSTSTACK_LOCK_TIMEOUT",
                                                                    project.get("lock_timeout"))
    settings = Settings(database_url=url)
    if path:
        settings = replace(settings, migrations_path=Path(path))
    if schema is not None:
        settings = replace(settings, history_schema=validate_schema_name(str(schema)))
    if timeout is not None:
        try:
            value = float(timeout)
        except ValueError:
            raise UsageError(f"--lock-timeout: {timeout!r} is not a number of seconds") from None
        if not value >= 0:  # also refuses nan, which would make the lock wait forever
            raise UsageError(f"--lock-timeout: {timeout!r} must be a number of seconds, 0 or more")
        settings = replace(settings, lock_timeout=value)
    return settings


def lock_policy_values(statement_lock_timeout: object, lock_retries: object) -> tuple[float | None, int]:
    """Validated (--statement-lock-timeout, --lock-retries): a timeout above 0 (PostgreSQL reads 0 as none),
    a whole number of retries, 0 or more."""
    timeout: float | None = None
    if statement_lock_timeout is not None and statement_lock_timeout != "":
        try:
            timeout = float(statement_lock_timeout)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(f"--statement-lock-timeout: {statement_lock_timeout!r} is not a number of "
                             "seconds") from None
        if not 0 < timeout < float("inf"):
            raise UsageError(f"--statement-lock-timeout: {statement_lock_timeout!r} must be a number of seconds "
                             "above 0")
    retries = 0
    if lock_retries is not None and lock_retries != "":
        try:
            retries = int(str(lock_retries))
        except ValueError:
            raise UsageError(f"--lock-retries: {lock_retries!r} is not a whole number") from None
        if retries < 0:
            raise UsageError(f"--lock-retries: {lock_retries!r} must be 0 or more")
    return timeout, retries


def load_lock_policy(settings: Settings, *, statement_lock_timeout: float | None = None,
                     lock_retries: int | None = None, cwd: Path | None = None) -> Settings:
    """The settings with the statement lock policy: flags > POSTSTACK_STATEMENT_LOCK_TIMEOUT /
    POSTSTACK_LOCK_RETRIES > [tool.poststack] statement_lock_timeout / lock_retries."""
    env = os.environ
    project = pyproject_table((cwd or Path.cwd()).resolve())
    timeout = (statement_lock_timeout if statement_lock_timeout is not None
               else env.get("POSTSTACK_STATEMENT_LOCK_TIMEOUT", project.get("statement_lock_timeout")))
    retries = (lock_retries if lock_retries is not None
               else env.get("POSTSTACK_LOCK_RETRIES", project.get("lock_retries")))
    value, count = lock_policy_values(timeout, retries)
    return replace(settings, statement_lock_timeout=value, lock_retries=count)
