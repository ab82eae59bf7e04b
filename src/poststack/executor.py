"""Running one migration or one rollback, with its history write, and turning SQL errors into one line.

Transactional work runs the file and the history write in one transaction. Non-transactional work
(``-- poststack:no-transaction``) commits a ``running`` row first, runs statement by statement in
autocommit recording progress, and only then flips to ``applied``: a crash leaves evidence, never a lie.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from poststack.errors import ConnectError, MigrationFailed
from poststack.files import Migration
from poststack.history import History
from poststack.plan import RollbackStep
from poststack.sqltext import SqlSyntaxError, Statement, line_of, split_statements


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


def sql_error(exc: psycopg.Error, *, where: str, version_text: str, text: str,
              line_offset: int = 0) -> MigrationFailed:
    """A one-line error naming the file, the line PostgreSQL pointed at, and PostgreSQL's message."""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    line = None
    if diag.statement_position:
        line = line_of(text, int(diag.statement_position) - 1) + line_offset
    elif line_offset:
        line = line_offset + 1
    location = f"{where}:{line}" if line else where
    hint = f" (hint: {diag.message_hint.strip()})" if diag.message_hint else ""
    return MigrationFailed(f"{location}: migration {version_text} failed: {message}{hint}".replace("\n", " "),
                           path=where, line=line, sqlstate=diag.sqlstate)


def connection_lost(conn: psycopg.Connection[Any], exc: psycopg.Error, where: str,
                    outcome: str) -> ConnectError | None:
    """A ConnectError (exit 3) when ``exc`` came from losing the connection, else None.

    A terminated backend or a restarted server is not a failing migration (exit 5 promises the SQL itself
    failed); the user must learn that the connection died and what state that leaves.
    """
    if not conn.broken:
        return None
    reason = " ".join((exc.diag.message_primary or str(exc)).split())
    return ConnectError(f"database connection lost during {where}: {reason}; {outcome}")


def _statements(text: str, where: str, version_text: str) -> list[Statement]:
    try:
        return split_statements(text)
    except SqlSyntaxError as exc:
        line = f":{exc.line}" if exc.line else ""
        raise MigrationFailed(f"{where}{line}: migration {version_text} failed: syntax error: {exc.message}",
                              path=where, line=exc.line, sqlstate="42601") from None


def apply_transactional(conn: psycopg.Connection[Any], history: History, migration: Migration) -> int:
    """Run the file and insert its history row atomically; return the execution time in ms."""
    # Parse for the semantic checksum (cached on the file) before the transaction opens: on a large file
    # parsing takes seconds, which must not be spent holding the locks the migration's statements took.
    _ = migration.semantic_checksum
    start = time.perf_counter()
    committing = False
    try:
        with conn.transaction():
            conn.execute(migration.sql.encode())  # bytes: sent as-is, no client-side placeholder parsing
            elapsed = _elapsed_ms(start)
            history.insert(conn, migration, execution_ms=elapsed)
            committing = True
    except psycopg.Error as exc:
        outcome = ("it was being committed and may or may not be recorded: see 'poststack db migration-status'"
                   if committing else "it had not committed: none of it was kept or recorded")
        lost = connection_lost(conn, exc, f"migration {migration.version_text} ({migration.path})", outcome)
        raise lost or sql_error(exc, where=str(migration.path), version_text=migration.version_text,
                                text=migration.sql) from None
    return elapsed


def apply_non_transactional(conn: psycopg.Connection[Any], history: History, migration: Migration) -> int:
    """Run statement by statement in autocommit behind a committed ``running`` history row."""
    statements = _statements(migration.sql, str(migration.path), migration.version_text)
    start = time.perf_counter()
    with conn.transaction():
        history.insert(conn, migration, status="running", statements_done=0)
    _run_outside_transaction(conn, history, statements, version=migration.version,
                             version_text=migration.version_text, where=str(migration.path),
                             what="non-transactional migration", record_progress=True)
    elapsed = _elapsed_ms(start)
    with conn.transaction():
        history.update(conn, migration.version, status="applied", execution_ms=elapsed, error=None)
    return elapsed


def _run_outside_transaction(conn: psycopg.Connection[Any], history: History, statements: list[Statement], *,
                             version: int, version_text: str, where: str, what: str, record_progress: bool,
                             error_prefix: str = "") -> None:
    """Run statements one by one in autocommit; a failure is recorded on the history row, then raised.

    Each statement commits on its own, so an error here leaves the earlier ones in place: the message and
    the row say how many had run, and a lost connection is told apart from a failing statement.
    """
    for done, statement in enumerate(statements, start=1):
        try:
            conn.execute(statement.text.encode())
        except psycopg.Error as exc:
            lost = connection_lost(conn, exc, f"{what} {version_text} ({where}), statement {done} of "
                                              f"{len(statements)}",
                                   f"{done - 1} statement(s) had completed; run 'poststack db diagnose'")
            if lost:
                raise lost from None
            failure = sql_error(exc, where=where, version_text=version_text, text=statement.text,
                                line_offset=statement.line - 1)
            _record_failure(conn, history, version, f"{error_prefix}{failure}", done - 1)
            raise MigrationFailed(
                f"{failure} ({done - 1} of {len(statements)} statements had run outside a transaction; "
                "see 'poststack db diagnose')", path=failure.path, line=failure.line,
                sqlstate=failure.sqlstate) from None
        if record_progress:
            with conn.transaction():
                history.update(conn, version, statements_done=done)


def _record_failure(conn: psycopg.Connection[Any], history: History, version: int, error: str,
                    done: int) -> None:
    try:
        with conn.transaction():
            history.update(conn, version, status="failed", error=error, statements_done=done)
    except psycopg.Error:
        pass  # the connection died with the statement; the 'running' row is the evidence diagnose reads


def rollback_one(conn: psycopg.Connection[Any], history: History, step: RollbackStep) -> int:
    """Undo one migration: its rollback SQL and the removal of its history row."""
    row = step.row
    start = time.perf_counter()
    if not step.no_transaction:
        committing = False
        try:
            with conn.transaction():
                conn.execute(step.sql.encode())
                history.delete(conn, row.version)
                committing = True
        except psycopg.Error as exc:
            outcome = ("it was being committed and may or may not have happened: see 'poststack db "
                       "migration-status'" if committing else "it had not committed: nothing was rolled back")
            lost = connection_lost(conn, exc, f"the rollback of {row.version_text} ({step.source})", outcome)
            raise lost or sql_error(exc, where=step.source, version_text=row.version_text, text=step.sql) from None
        return _elapsed_ms(start)
    statements = _statements(step.sql, step.source, row.version_text)
    with conn.transaction():
        history.update(conn, row.version, status="running", error="rollback in progress", statements_done=0)
    # Progress is not recorded: repair judges a 'running' row's statements_done against the forward SQL.
    _run_outside_transaction(conn, history, statements, version=row.version, version_text=row.version_text,
                             where=step.source, what="the non-transactional rollback of",
                             record_progress=False, error_prefix="rollback failed: ")
    with conn.transaction():
        history.delete(conn, row.version)
    return _elapsed_ms(start)
