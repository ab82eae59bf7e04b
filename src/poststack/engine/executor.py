"""Running one migration or one rollback, with its history write, and turning SQL errors into one line.

Transactional work runs the file and the history write in one transaction, and before the write checks that
the transaction is still poststack's own (a COMMIT or ROLLBACK the pre-run scan missed would otherwise let
the history row be written for work that was committed half-way, or not at all). Non-transactional work
(``-- poststack:no-transaction``) is poststack.engine.stepwise: a ``running`` row, statement by statement with
recorded progress, resumable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

from poststack.db.history import History
from poststack.db.lock_policy import LOCK_NOT_AVAILABLE, LockPolicy, RetryContext
from poststack.db.session import OWN_IDENTITY, OWN_SETTINGS, reset_session, reset_sql
from poststack.engine import stepwise
from poststack.engine.plan import RollbackStep
from poststack.engine.sending import StatementError, connection_lost, send, sql_error
from poststack.errors import Interrupted, MigrationFailed, TransactionEscaped
from poststack.source.files import Migration
from poststack.source.txscan import scan, statement_at

# Sent with the file in one query: the id of poststack's transaction is stored transaction-locally before
# the file, and compared after it. A file that ended the transaction (COMMIT, ROLLBACK, PREPARE TRANSACTION
# the pre-run scan missed) fails the check, which aborts the statements after its transaction control (they ran
# in PostgreSQL's implicit block, which the error rolls back); txid_status() then says whether poststack's
# transaction was committed or discarded by the file. txid_current() rather than pg_current_xact_id(): it
# exists under that name on every server poststack supports (the history insert assigns an id anyway).
_ESCAPED = "poststack: the migration ended poststack's transaction"
_PROBE = "SELECT pg_catalog.set_config('poststack.xact', pg_catalog.txid_current()::text, true)"
_CHECK = (f"\n;SELECT CASE WHEN pg_catalog.current_setting('poststack.xact', true) = "
          f"pg_catalog.txid_current()::text THEN 'ok' ELSE ('{_ESCAPED.replace(chr(39), chr(39) * 2)} ' || "
          "pg_catalog.txid_current())::int8::text END")


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


@dataclass(frozen=True)
class _Unit:
    """One transactional migration or rollback: its text, where it comes from and its history write."""

    text: str
    where: str
    version_text: str
    what: str  # "migration 002 (path)" / "the rollback of 002 (path)"
    write_history: Callable[[int], None]  # given the elapsed ms, inside the transaction
    nothing_done: str  # what a failure before the commit leaves, for the messages
    reset_to: str | None = None  # reset the session after it (in its transaction), restoring this application_name


class _LockTimedOut(Exception):
    """An attempt failed on the statement lock timeout (only raised when a lock policy is active)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _run_transactional(conn: psycopg.Connection[Any], unit: _Unit, retry: RetryContext | None) -> int:
    """Run the unit (retried on lock timeouts when a policy is active) in a transaction checked to be its own."""
    attempt = 0
    while True:
        watch = retry.watch(conn) if retry else nullcontext()
        try:
            with watch:
                return _attempt(conn, unit, retry.policy if retry else None)
        except _LockTimedOut as timed_out:
            assert retry is not None
            retry.retry_or_raise(attempt, timed_out.where, unit.what, watch)
            attempt += 1


def _attempt(conn: psycopg.Connection[Any], unit: _Unit, policy: LockPolicy | None) -> int:
    """One try: BEGIN with the probe, the file with the check after it, the history write, COMMIT.

    The file is sent in a query of its own, first in it: pg_stat_activity shows the migration's SQL, and
    PostgreSQL's positions are the file's own.
    """
    start = time.perf_counter()
    committing = False
    limited = policy is not None and policy.active
    xid: bytes | None = None
    try:
        begin = sql.SQL("BEGIN; {}{}").format(policy.set_local() if policy else sql.SQL(""), sql.SQL(_PROBE))
        opened = send(conn, begin.as_bytes(conn))
        xid = opened[-1].get_value(0, 0)
        # After the check, in the same transaction: the session reset (so the next migration starts clean,
        # and a failure rolls it back to the clean state before this one), else at least poststack's own
        # identity and timeouts for the history write.
        after = (sql.SQL("; {}").format(reset_sql(unit.reset_to)) if unit.reset_to is not None
                 else sql.SQL("; {}; {}").format(sql.SQL(f"SELECT {OWN_SETTINGS}"), sql.SQL(OWN_IDENTITY)))
        send(conn, unit.text.encode() + _CHECK.encode() + after.as_bytes(conn))  # the file's bytes as they are
        elapsed = _elapsed_ms(start)
        unit.write_history(elapsed)
        committing = True
        conn.execute("COMMIT")
    except StatementError as failed:
        _rollback(conn)
        exc = failed.error
        lost = connection_lost(conn, exc, unit.what, f"it had not committed: {unit.nothing_done}")
        if lost:
            raise lost from None
        outcome = _xact_outcome(conn, xid)
        checked = _ESCAPED in (exc.diag.message_primary or "")
        statement = statement_at(unit.text, failed.index) if not checked else None
        error = sql_error(exc, where=unit.where, version_text=unit.version_text, text=unit.text,
                          statement_line=statement.line if statement else None)
        if checked or outcome == "committed":
            raise _escaped(unit, outcome, None if checked else error) from None
        if limited and exc.diag.sqlstate == LOCK_NOT_AVAILABLE:
            raise _LockTimedOut(f"{unit.where}:{error.line}" if error.line else unit.where) from None
        raise error from None
    except psycopg.Error as exc:
        _rollback(conn)
        outcome = ("it was being committed and may or may not be recorded: see 'poststack db migration-status'"
                   if committing and conn.broken else f"it had not committed: {unit.nothing_done}")
        lost = connection_lost(conn, exc, unit.what, outcome)
        raise lost or sql_error(exc, where=unit.where, version_text=unit.version_text, text=unit.text) from None
    except KeyboardInterrupt:
        _rollback(conn)
        if committing:
            raise Interrupted(f"interrupted while committing {unit.what}: it may or may not have committed; "
                              "see 'poststack db migration-status'") from None
        raise Interrupted(f"interrupted during {unit.what}: its transaction was rolled back, "
                          f"{unit.nothing_done}") from None
    except BaseException:
        _rollback(conn)
        raise
    return elapsed


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """End poststack's transaction after a failure (a no-op when the file or the server already ended it)."""
    if not conn.closed and not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
        with suppress(psycopg.Error):  # the connection died: the server rolled it back
            conn.execute("ROLLBACK")


def _xact_outcome(conn: psycopg.Connection[Any], xid: bytes | None) -> str | None:
    """'committed', 'aborted' or 'in progress' for poststack's transaction id, after the rollback."""
    if xid is None or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return None
    try:
        row = conn.execute("SELECT pg_catalog.txid_status(%s::bigint)", [xid.decode()]).fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row and row[0] else None


def _escaped(unit: _Unit, outcome: str | None, failure: MigrationFailed | None) -> TransactionEscaped:
    """What a file that ended poststack's transaction left, as exactly as the server can tell."""
    control = [st for st in scan(unit.text) if st.is_transaction_control]
    if control:
        named = ", ".join(f"line {st.line} '{' '.join(st.text(unit.text).split())[:60]}'" for st in control[:5])
        how = f"its transaction control ({named})"
    else:
        how = ("a statement poststack's scan did not recognise as transaction control (is "
               "standard_conforming_strings off for this database or role?)")
    if outcome == "committed":
        kept = "committed poststack's transaction: what the file ran before that is kept"
    elif outcome == "aborted":
        kept = "rolled back poststack's transaction: nothing of it before that is kept"
    else:
        kept = "ended poststack's transaction: what ran before that may have been committed"
    then = (f"; then it failed: {failure}" if failure is not None
            else "; poststack's check after the file failed, which rolled back the statements after it")
    return TransactionEscaped(
        f"{unit.where}: {unit.what}: {how} {kept}{then}; nothing was recorded: check with "
        "'poststack db diagnose', then mark the file '-- poststack:no-transaction' or remove its transaction "
        "control", path=unit.where)


def apply_transactional(conn: psycopg.Connection[Any], history: History, migration: Migration, *,
                        retry: RetryContext | None = None, reset_to: str | None = None) -> int:
    """Run the file and insert its history row atomically; return the execution time in ms."""
    # Parse for the semantic checksum (cached on the file) before the transaction opens: on a large file
    # parsing takes seconds, which must not be spent holding the locks the migration's statements took.
    _ = migration.semantic_checksum
    return _run_transactional(conn, _Unit(
        migration.sql, str(migration.path), migration.version_text,
        f"migration {migration.version_text} ({migration.path})",
        lambda elapsed: history.insert(conn, migration, execution_ms=elapsed),
        "none of it was kept or recorded", reset_to), retry)


def rollback_one(conn: psycopg.Connection[Any], history: History, step: RollbackStep, *,
                 retry: RetryContext | None = None, reset_to: str | None = None) -> int:
    """Undo one migration: its rollback SQL and the removal of its history row."""
    if step.no_transaction:
        try:
            return stepwise.rollback_non_transactional(conn, history, step, retry=retry)
        finally:
            if reset_to is not None and not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE:
                with suppress(psycopg.Error):
                    reset_session(conn, reset_to)
    row = step.row
    return _run_transactional(conn, _Unit(
        step.sql, step.source, row.version_text, f"the rollback of {row.version_text} ({step.source})",
        lambda _elapsed: history.delete(conn, row.version), "nothing was rolled back", reset_to), retry)


def apply_non_transactional(conn: psycopg.Connection[Any], history: History, migration: Migration, *,
                            retry: RetryContext | None = None) -> int:
    """Run statement by statement in autocommit behind a committed ``running`` history row."""
    return stepwise.apply_non_transactional(conn, history, migration, retry=retry)
