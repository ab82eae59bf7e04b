"""The error tree users catch, each error carrying a stable code and the CLI exit code it maps to.

Exit codes are part of the CLI contract (see README): scripts branch on them, so every failure the library
can raise belongs to exactly one class here and the CLI never invents its own.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ISSUES = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_LOCK = 4
EXIT_MIGRATION_FAILED = 5


class PoststackError(Exception):
    """Base of every error poststack raises on purpose; its message is one line fit for a terminal."""

    code: str = "error"
    exit_code: int = EXIT_ISSUES
    # Lines of evidence shown before the one ``error:`` line (a diff, two plans); never part of the message.
    details: tuple[str, ...] = ()


class UsageError(PoststackError):
    """A bad option or argument: nothing was touched."""

    code = "usage"
    exit_code = EXIT_USAGE


class ConfirmationRequired(UsageError):
    """A destructive command was not confirmed (no --confirm and no terminal to ask on)."""

    code = "confirmation_required"


class MigrationFileError(PoststackError):
    """The migrations directory or a file in it cannot be used: bad name, encoding, duplicate version."""

    code = "bad_migration_file"
    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, problem: str = "invalid_file") -> None:
        super().__init__(message)
        self.problem = problem  # the FileProblem / diagnose code: empty_file, bad_encoding, ...


class RollbackRefused(UsageError):
    """A rollback cannot be done as asked (unknown target, missing rollback file); nothing was rolled back."""

    code = "rollback_refused"


class ConnectError(PoststackError):
    """The server cannot be reached or refused the credentials."""

    code = "connect_failed"
    exit_code = EXIT_CONNECT


class AccessDenied(ConnectError):
    """Connected, but the role may not write what poststack must write (the history schema, read-only session)."""

    code = "access_denied"


class LockTimeout(PoststackError):
    """Another deployer held the migration lock for longer than the lock timeout."""

    code = "lock_timeout"
    exit_code = EXIT_LOCK


class ChecksumChanged(PoststackError):
    """An applied migration's file changed since it was applied; migrate refuses unless told otherwise."""

    code = "checksum_mismatch"
    exit_code = EXIT_ISSUES


class MigrationFailed(PoststackError):
    """A migration's SQL failed; its transaction was rolled back so it left no trace."""

    code = "migration_failed"
    exit_code = EXIT_MIGRATION_FAILED

    def __init__(self, message: str, *, version: int | None = None, path: str | None = None,
                 line: int | None = None, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.version = version
        self.path = path
        self.line = line
        self.sqlstate = sqlstate


class StateError(PoststackError):
    """The recorded state does not allow the operation (for example a failed non-transactional migration)."""

    code = "state_error"
    exit_code = EXIT_ISSUES


class RollbackChanged(ChecksumChanged):
    """A rollback file's meaning changed since its migration was applied; nothing was rolled back.

    ``details`` holds the unified diff of the rollback SQL recorded at apply time against the file.
    """

    code = "rollback_changed"

    def __init__(self, message: str, diff: list[str]) -> None:
        super().__init__(message)
        self.details = tuple(diff)


class PlanChanged(StateError):
    """The plan made under the migration lock differs from the one that was confirmed; nothing was done.

    ``details`` shows both plans.
    """

    code = "plan_changed"

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = tuple(details)


class ExtensionUnavailable(MigrationFailed):
    """A migration's ``CREATE EXTENSION`` names an extension the server does not have installed.

    Still exit 5: the migration's SQL failed on this server and left no trace; the message names the
    extension and how to run against a server that has it (see ``poststack.db.extensions``).
    """

    code = "extension_unavailable"

    def __init__(self, message: str, *, extension: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.extension = extension


EXIT_INTERRUPTED = 130


class Interrupted(PoststackError):
    """The user interrupted a run (SIGINT); the message says what was left and how to go on."""

    code = "interrupted"
    exit_code = EXIT_INTERRUPTED


class TransactionEscaped(MigrationFailed):
    """A transactional migration's SQL ended poststack's transaction (COMMIT, ROLLBACK... that the scan missed).

    Nothing is recorded and what was still open is rolled back, but unlike other migration failures this one
    may have left a trace: whatever the file committed itself is kept. The message says what ran.
    """

    code = "transaction_escaped"


class StatementLockTimeout(LockTimeout):
    """A migration's statement could not get its table locks within --statement-lock-timeout, on every retry."""

    code = "statement_lock_timeout"


class ScratchDatabaseError(ConnectError):
    """No scratch database can be created on the target's server (exit 3, like any access problem).

    Raised by ``poststack.db.scratch_databases`` (verify, replayed evidence); the message names the role and
    what it lacks (CREATEDB) or the server's own reason.
    """

    code = "scratch_database_unavailable"


class EvidenceUnavailable(PoststackError):
    """No server can replay the migrations, so no state can be proven: callers record nothing.

    Exit 3 like a connection failure (the server to replay on is missing or unusable), but not a
    ConnectError: callers that retry or fall back on a ConnectError must not treat it as one. Raised by
    ``poststack.engine.replay``; ``diagnose`` reports the checks as skipped instead.
    """

    code = "evidence_unavailable"
    exit_code = EXIT_CONNECT


class SqlSyntaxError(PoststackError, ValueError):
    """PostgreSQL's parser (pglast) could not parse a text; ``line`` is 1-based within the text given.

    Each command turns it into its own error before it reaches a user (migrate: MigrationFailed, exit 5;
    recover: MigrationFileError, exit 2; validate and lint: a reported problem), so it surfaces as itself
    only from the library API (``split_statements``, ``check_syntax``, ``objects.extract``), as a bad input.
    Also a ValueError, as it was before it joined this tree: code calling that API may catch it as one.
    """

    code = "sql_syntax_error"
    exit_code = EXIT_USAGE

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class SnapshotFormatError(PoststackError, ValueError):
    """A stored schema snapshot is not one this version reads (another format, or not a snapshot at all).

    A user meets it loading a golden schema file (``poststack.testing.load_schema``); internally a stored
    snapshot of another format is treated as absent. Also a ValueError, as it was before it joined this
    tree: those internal readers and code using ``Snapshot.from_dict``/``from_json`` catch it as one.
    """

    code = "snapshot_format"
    exit_code = EXIT_USAGE
