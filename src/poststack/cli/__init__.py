"""The ``poststack`` command line: parses options, calls the library, renders results. No logic lives here."""

from __future__ import annotations

import sys

from poststack.errors import EXIT_CONNECT, EXIT_INTERRUPTED, EXIT_ISSUES, PoststackError

_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the click app, turning library errors into one line on stderr and an exit code."""
    import click

    from poststack.cli.root import cli

    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="poststack", standalone_mode=False)
    except PoststackError as exc:
        _fail(str(exc), exc.exit_code, verbose)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        click.echo("error: aborted", err=True)
        sys.exit(EXIT_ISSUES)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # click >= 8.2
        exc.show()  # bare ``poststack``: the help text is the answer, not an error
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(exc.format_message().rstrip(".") + hint, exc.exit_code, False)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code, False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            _fail(f"database connection lost: {' '.join(str(exc).split())}", EXIT_CONNECT, verbose)
        if isinstance(exc, psycopg.Error):
            _fail(f"database error: {' '.join(str(exc).split())}", EXIT_ISSUES, verbose)
        raise
    return 0


def _fail(message: str, code: int, verbose: bool) -> None:
    import traceback

    if verbose:
        traceback.print_exc()
    # One line, always: a newline or escape sequence in a file name must not forge lines on a terminal.
    print(f"error: {message.translate(_ESCAPES)}", file=sys.stderr)
    sys.exit(code)
