"""The one ``error:`` line: passwords scrubbed, control characters escaped, exit code from the error tree;
and ``exit_if``, how a command that ran to its end reports "issues found" (exit 1) or its result's own code.

Every failure of the command line ends here, whatever raised it: poststack's own errors, click's usage
errors and the driver's. The database URLs this run was given are remembered as soon as they are known, so
a message quoting one (libpq quotes connection strings it cannot parse) is scrubbed even when it came from a
URL that never parsed.
"""

from __future__ import annotations

import sys

from poststack.cli.render import escape
from poststack.errors import EXIT_ISSUES

_URLS: list[str] = []


def remember_secret_source(url: str | None) -> None:
    """A database URL (or key=value string) whose password must never reach an error line."""
    if url and url not in _URLS:
        _URLS.append(url)


def forget_secret_sources() -> None:
    _URLS.clear()


def error_line(message: str) -> str:
    # deferred: keeps start-up fast (the scrubber parses conninfo with psycopg, ~150 ms to import: --help and
    # --version never print an error line, and a command that talks to a database has imported it already)
    from poststack.db.connection import scrub_secrets

    for url in _URLS:
        message = scrub_secrets(message, url)
    message = scrub_secrets(message, None)  # URL userinfo and password= values of any other text
    return f"error: {escape(message)}"


def fail(message: str, code: int, verbose: bool) -> None:
    import traceback

    if verbose:
        traceback.print_exc()
    # One line, always: a newline or escape sequence in a file name must not forge lines on a terminal.
    print(error_line(message), file=sys.stderr)
    sys.exit(code)


def exit_if(failed: bool, code: int = EXIT_ISSUES) -> None:
    """End the command with ``code`` (default 1: issues found, a check failed, something was left undone).

    SystemExit, not click.Exit: it passes click's non-standalone main untouched, where click.Exit's code would
    be returned by ``cli.main`` and lost.
    """
    if failed:
        sys.exit(code)
