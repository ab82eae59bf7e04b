"""One line for a test server that cannot start or be reached: the cause, and the setting that changes it.

The embedded server's own log holds the cause (``No space left on device``, a read-only directory); the
wheel's exception mostly says that initdb or pg_ctl failed. So the log's telling lines are quoted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from poststack.connection import mask_url, scrub
from poststack.testing.server import DATA_DIR_ENV

_TELLING = re.compile(r"(FATAL|PANIC|ERROR|could not|No space left|Read-only|Permission denied|cannot)", re.I)
_SETTINGS = (f"set {DATA_DIR_ENV} to a writable directory with free space, or run on a server of your own "
             "with --poststack-database-url (or POSTSTACK_TEST_DATABASE_URL)")


def describe(exc: BaseException, config: pytest.Config) -> str:
    url = config.getoption("poststack_database_url") or os.environ.get("POSTSTACK_TEST_DATABASE_URL")
    if url:
        setting = ("--poststack-database-url" if config.getoption("poststack_database_url")
                   else "POSTSTACK_TEST_DATABASE_URL")
        text = scrub(str(exc), url).splitlines()[0] if str(exc) else type(exc).__name__
        return f"poststack: the test server {mask_url(url)} ({setting}) cannot be used: {text}"
    cause = _cause(exc)
    return f"poststack: the embedded PostgreSQL for the tests cannot start: {cause}; {_SETTINGS}"


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    log = _log_of(text)
    if log is not None:
        telling = [line.strip() for line in _tail(log) if _TELLING.search(line)]
        if telling:
            text += f" [{log.name}: {telling[-1]}]"
    return text


def _log_of(text: str) -> Path | None:
    match = re.search(r"\(see ([^)]+)\)", text)
    if match is None:
        return None
    path = Path(match.group(1))
    return path if path.is_file() else None


def _tail(path: Path, lines: int = 40) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
