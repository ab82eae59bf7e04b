"""The ``poststack`` command line: parses options, calls the library, renders results. No logic lives here."""

from __future__ import annotations

import sys

from poststack.errors import EXIT_CONNECT, EXIT_INTERRUPTED, EXIT_ISSUES, PoststackError


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the click app, turning library errors into one line on stderr and an exit code."""
    # deferred: keeps start-up fast (every import of a poststack.cli submodule runs this package first; the
    # root group below brings click, the settings and psycopg's driver with it)
    import click

    # deferred: keeps start-up fast (as above: cli.root loads the settings and the command tables)
    from poststack.cli.failure import fail, forget_secret_sources
    from poststack.cli.render import escape
    from poststack.cli.root import cli
    from poststack.cli.root_options import verbosity_typed

    forget_secret_sources()
    args = sys.argv[1:] if argv is None else argv
    verbose = verbosity_typed(args, cli) > 0  # -v, -vv, -v -v, --verbose: a traceback before the error line
    try:
        cli.main(args=argv, prog_name="poststack", standalone_mode=False)
    except PoststackError as exc:
        for line in exc.details:  # evidence first (a diff, both plans), then the one error line
            print(f"  {escape(line)}", file=sys.stderr)
        fail(str(exc), exc.exit_code, verbose)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            fail("interrupted", EXIT_INTERRUPTED, False)
        fail("aborted", EXIT_ISSUES, False)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # click >= 8.2
        exc.show()  # bare ``poststack``: the help text is the answer, not an error
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(exc.format_message().rstrip(".") + hint, exc.exit_code, False)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code, False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED, False)
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            # A privilege the role lacks (a history schema it may not use, a superuser's backend it may not
            # end) is the same class of failure as one found before connecting: exit 3, not a bug report.
            reason = exc.diag.message_primary or " ".join(str(exc).split())
            fail(f"insufficient privilege: {reason} (grant the role what poststack needs; see docs/errors.md)",
                 EXIT_CONNECT, verbose)
        if isinstance(exc, psycopg.OperationalError):
            fail(f"database connection lost: {' '.join(str(exc).split())}", EXIT_CONNECT, verbose)
        if isinstance(exc, psycopg.Error):
            fail(f"database error: {' '.join(str(exc).split())}", EXIT_ISSUES, verbose)
        raise
    return 0
