"""Settings, resolved once: command-line flags > POSTSTACK_* environment > DATABASE_URL > pyproject.toml.

A missing database URL is not an error: it selects the project-local embedded PostgreSQL. Every value is
checked for its type here, whatever its source: a ``lock_timeout = true`` in pyproject.toml must not become
one second, nor ``history_schema = {a = 1}`` a schema named ``{'a': 1}``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from poststack.errors import UsageError

DEFAULT_MIGRATIONS_PATH = "migrations"
DEFAULT_SCHEMA = "poststack"
DEFAULT_LOCK_TIMEOUT = 60.0
# ASCII only: float() also reads Arabic-Indic digits and '1_0', which no one means as a timeout.
_SECONDS = re.compile(r"\s*(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*|\s*[+-]?(?:inf|infinity)\s*",
                      re.IGNORECASE)
_NEGATIVE = re.compile(r"\s*-\s*(?:[0-9.]|inf)", re.IGNORECASE)
# Schemas pg_dump leaves out by default (with every pg_* one): a history there would not be backed up.
RESERVED_SCHEMAS = ("information_schema",)
MAX_URL_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    migrations_path: Path = Path(DEFAULT_MIGRATIONS_PATH)
    history_schema: str = DEFAULT_SCHEMA
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    lint_enable: tuple[str, ...] = ()  # [tool.poststack] lint_enable: opt-in lint rules to turn on
    lint_disable: tuple[str, ...] = ()  # [tool.poststack] lint_disable: lint rules to turn off
    statement_lock_timeout: float | None = None  # seconds; None: poststack sets no lock_timeout
    lock_retries: int = 0


def find_pyproject(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The first pyproject.toml from ``start`` upwards, parsed; None when there is none."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            import tomllib  # only when there is a pyproject.toml to read

            try:
                return candidate, tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"{candidate}: cannot read [tool.poststack]: {exc}") from None
    return None


def pyproject_table(start: Path) -> dict[str, Any]:
    found = find_pyproject(start)
    if found is None:
        return {}
    candidate, data = found
    tool = data.get("tool", {})
    table = tool.get("poststack", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        wrong = tool if not isinstance(tool, dict) else table
        raise UsageError(f"{candidate}: [tool.poststack] must be a table, not {_toml_type(wrong)}")
    return _typed(dict(table), candidate)


_PYPROJECT_TYPES: dict[str, tuple[type, ...]] = {
    "database_url": (str,), "database_url_file": (str,), "migrations_path": (str,), "history_schema": (str,),
    "lock_timeout": (int, float, str),
}


def _typed(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Refuse values of the wrong TOML type (bool is an int to Python: checked first)."""
    for key, types in _PYPROJECT_TYPES.items():
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, types):
            want = "a number of seconds" if key == "lock_timeout" else "a string"
            raise UsageError(f"{path}: [tool.poststack] {key} must be {want}, not {_toml_type(value)} {value!r}")
    return table


def _toml_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def validate_schema_name(name: str) -> str:
    """History schema names are quoted as identifiers everywhere; only length and NUL can make them invalid,
    and system schemas (which pg_dump leaves out, so the history would not be backed up) are refused."""
    if not isinstance(name, str):
        raise UsageError(f"--history-schema: {name!r} is not a schema name (a string)")
    if name in RESERVED_SCHEMAS:
        raise UsageError(f"--history-schema: {name!r} is reserved: a system schema, left out by pg_dump")
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise UsageError(f"--history-schema: {name!r} is not a valid schema name (1-63 bytes, no NUL)")
    if name.startswith("pg_"):
        raise UsageError(f"--history-schema: {name!r} is reserved: PostgreSQL keeps the pg_ prefix for system schemas")
    return name


def parse_seconds(value: object, option: str = "--lock-timeout") -> float:
    """Seconds, 0 or more (``inf`` waits forever), from a flag, the environment or pyproject.toml."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UsageError(f"{option}: {value!r} is not a number of seconds")
    if isinstance(value, str) and not _SECONDS.fullmatch(value):
        if _NEGATIVE.match(value):
            raise UsageError(f"{option}: {value!r} must be a number of seconds, 0 or more")
        raise UsageError(f"{option}: {value!r} is not a number of seconds")
    number = float(value)
    if math.isnan(number) or number < 0:  # nan would make the lock wait forever
        raise UsageError(f"{option}: {value!r} must be a number of seconds, 0 or more")
    return number


def read_url_file(path: str | Path, option: str = "--database-url-file") -> str:
    """The database URL kept in a file (so the password is in neither argv nor the environment).

    The file's content is never part of an error message: it is a secret.
    """
    file = Path(path)
    try:
        if not file.is_file():
            raise UsageError(f"{option}: {file} is not a readable file")
        data = file.read_bytes()[:MAX_URL_FILE_BYTES + 1]
    except OSError as exc:
        raise UsageError(f"{option}: {file}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {file} is not UTF-8 text") from None
    if len(data) > MAX_URL_FILE_BYTES or not text or "\n" in text or "\x00" in text:
        raise UsageError(f"{option}: {file} must hold one line: the database URL")
    return text


def load_settings(*, database_url: str | None = None, migrations_path: str | Path | None = None,
                  history_schema: str | None = None, lock_timeout: float | str | None = None,
                  database_url_file: str | Path | None = None, cwd: Path | None = None) -> Settings:
    env = os.environ
    if database_url is not None and database_url_file is not None:
        raise UsageError("--database-url and --database-url-file contradict each other; pass one of them")
    project = pyproject_table((cwd or Path.cwd()).resolve())
    url = _first_url([
        (database_url, None), (database_url_file, "--database-url-file"),
        (env.get("POSTSTACK_DATABASE_URL"), None),
        (env.get("POSTSTACK_DATABASE_URL_FILE"), "POSTSTACK_DATABASE_URL_FILE"),
        (env.get("DATABASE_URL"), None), (project.get("database_url"), None),
        (project.get("database_url_file"), "[tool.poststack] database_url_file")])
    path = migrations_path or env.get("POSTSTACK_MIGRATIONS_PATH") or project.get("migrations_path")
    schema = (history_schema if history_schema is not None  # an explicit '' is an error, not the default
              else env.get("POSTSTACK_HISTORY_SCHEMA") or project.get("history_schema"))
    timeout = lock_timeout if lock_timeout is not None else env.get("POSTSTACK_LOCK_TIMEOUT",
                                                                    project.get("lock_timeout"))
    settings = Settings(database_url=url, lint_enable=_rule_list(project, "lint_enable"),
                        lint_disable=_rule_list(project, "lint_disable"))
    if path:
        settings = replace(settings, migrations_path=Path(path))
    if schema is not None:
        settings = replace(settings, history_schema=validate_schema_name(schema))
    if timeout is not None:
        settings = replace(settings, lock_timeout=parse_seconds(timeout))
    return settings


def _rule_list(project: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of lint rule ids from [tool.poststack] (ids are checked by lint, which knows them)."""
    value = project.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"[tool.poststack] {key}: expected a list of lint rule ids, got {value!r}")
    return tuple(value)


def _first_url(candidates: list[tuple[str | Path | None, str | None]]) -> str | None:
    """The first URL given, in precedence order; ``option`` set means the value is a file to read it from."""
    for value, option in candidates:
        if value is None or value == "":
            continue
        return read_url_file(value, option) if option else str(value)
    return None


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
