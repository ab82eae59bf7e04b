"""Non-transactional migrations and rollbacks: statement by statement, with recorded progress, resumable.

The history row is committed first (``running``), so a crash always leaves evidence. Then each statement:

* one that may run in a transaction block runs in one together with its progress write
  (``statements_done`` and a statement_log row): the record and the effect commit together or not at all;
* one that may not (``CREATE INDEX CONCURRENTLY``, ``VACUUM``, ``CALL``...) runs alone, its progress write
  right after; a crash between the two is the one case where the record lags, and resume settles it from the
  catalog (an index is there and valid, or it is not) or refuses to guess;
* a ``BEGIN ... COMMIT`` block of the file runs as written; its progress is written inside it, just before
  its COMMIT, so a block counts as done exactly when it committed. A failure inside it rolls it back and the
  statements of the block are not counted.

``migrate`` (``rollback``) resumes an unfinished run of the same text: statements recorded done are skipped
(their ``SET``s are replayed, for the session state the rest expects), an INVALID index left by the next one
is dropped and built again, and the rest runs.

This module is a run's life: where it starts (a fresh row, or a resume settled from the record and the
catalog) and how it finishes. Running the statements themselves is poststack.engine.stepwise_run.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import psycopg
from psycopg import sql

from poststack.db.history import History, HistoryRow, HistoryStatus, ensure_statement_log, statement_log
from poststack.db.lock_policy import RetryContext
from poststack.db.session import OWN_TRANSACTION
from poststack.engine.plan import ROLLBACK_MARK, RollbackStep
from poststack.engine.sending import send
from poststack.engine.statement_kinds import (
    REPEATABLE_KINDS,
    dropped_all,
    index_state,
    is_concurrent_drop,
    node,
    runs_alone,
)
from poststack.engine.stepwise_run import Run, Work
from poststack.errors import MigrationFailed, StateError
from poststack.source.files import Migration
from poststack.source.sqltext import SqlSyntaxError, Statement, split_statements


def _statements(text: str, where: str, version_text: str) -> list[Statement]:
    try:
        return split_statements(text)
    except SqlSyntaxError as exc:
        line = f":{exc.line}" if exc.line else ""
        raise MigrationFailed(f"{where}{line}: migration {version_text} failed: syntax error: {exc.message}",
                              path=where, line=exc.line, sqlstate="42601") from None


def _text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _settle_next(run: Run, index: int, uncertain: bool) -> int:
    """Where to go on from statement ``index``, the first not recorded done: proven done -> index + 1;
    an INVALID index it left is dropped (to be built again) -> index. Refuse when nothing can tell."""
    st = run.work.statements[index]
    state = index_state(run.conn, st)
    if state is not None:
        status, name = state
        if status == "valid":
            run.write("found_done", index, detail=f"index {'.'.join(name)} exists and is valid",
                      statements_done=index + 1)
            run.done = index + 1
            return index + 1
        if status == "invalid":
            schema, relname = name
            run.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                sql.Identifier(schema), sql.Identifier(relname)))
            run.write("dropped_invalid", index, detail=f"dropped INVALID index {schema}.{relname} to build it again")
        return index
    if is_concurrent_drop(st):
        if not dropped_all(run.conn, st):
            return index  # still there (perhaps INVALID, half dropped): dropping it again is the way on
        run.write("found_done", index, detail="the indexes it drops are gone", statements_done=index + 1)
        run.done = index + 1
        return index + 1
    if not uncertain or not runs_alone(st) or st.kind in REPEATABLE_KINDS:
        return index  # it failed (or could not have committed without its record): run it again
    raise StateError(f"{run.work.where}:{st.line}: statement {index + 1} of {run.work.what} was running when "
                     "poststack stopped, and whether it took effect cannot be read from the catalog; "
                     "nothing was run: check it by hand, then see 'poststack db diagnose'")


def _replay_session(run: Run, done: int) -> None:
    """Re-run the SET/RESET statements among the ones done, for the session state the rest expects."""
    replayed = 0
    for st in run.work.statements[:done]:
        if st.kind == "VariableSetStmt" and not getattr(node(st), "is_local", False):
            send(run.conn, st.text.encode())
            replayed += 1
    if done:
        run.write("skipped", None, detail=f"statements 1-{done} were done before; re-ran {replayed} SET "
                                          "statement(s) among them for their session state")


def _start(conn: psycopg.Connection[Any], history: History, work: Work, row: HistoryRow | None,
           retry: RetryContext | None = None) -> Run:
    """Begin or resume: returns the run positioned at the first statement still to do."""
    ensure_statement_log(history, conn)
    if row is None or row.status == HistoryStatus.APPLIED:
        run = Run(conn, history, work, 0, retry)
        changes: dict[str, Any] = {"status": HistoryStatus.RUNNING, "statements_done": 0}
        if work.direction == "rollback":
            changes["error"] = ROLLBACK_MARK + "in progress"
        run.write("started", None, detail=f"sha256 {work.checksum}", **changes)
        return run
    logged = [e for e in statement_log(history, conn, work.version, since=row.applied_at)
              if e.direction == work.direction and e.event in ("started", "resumed")]
    if not logged or logged[-1].detail != f"sha256 {work.checksum}":
        why = ("it was started by an older poststack that kept no statement log" if not logged
               else "the text to run changed since the interrupted run")
        raise StateError(f"{work.where}: cannot resume {work.what}: {why}; see 'poststack db diagnose'")
    done = row.statements_done or 0
    uncertain = row.status == HistoryStatus.RUNNING or "interrupted (SIGINT)" in (row.error or "")
    run = Run(conn, history, work, done, retry)
    run.write("resumed", None, detail=f"sha256 {work.checksum}", status=HistoryStatus.RUNNING,
              error=ROLLBACK_MARK + "in progress" if work.direction == "rollback" else None)
    _replay_session(run, done)
    if done < len(work.statements):
        run.next = _settle_next(run, done, uncertain)
    return run


def apply_non_transactional(conn: psycopg.Connection[Any], history: History, migration: Migration,
                            resume: HistoryRow | None = None, *, retry: RetryContext | None = None) -> int:
    """Run (or resume, given its unfinished row) a no-transaction migration; return its execution ms."""
    start = time.perf_counter()
    work = Work(migration.version, migration.version_text, str(migration.path), "migrate",
                _statements(migration.sql, str(migration.path), migration.version_text),
                _text_checksum(migration.sql))
    if resume is None:
        ensure_statement_log(history, conn)
        run = Run(conn, history, work, 0, retry)
        with conn.transaction():  # the row and its 'started' event commit together: resume relies on both
            conn.execute(OWN_TRANSACTION)
            history.insert(conn, migration, status=HistoryStatus.RUNNING, statements_done=0)
            conn.execute(run.progress("started", None, detail=f"sha256 {work.checksum}"))
    else:
        run = _start(conn, history, work, resume, retry)
    run.run_from(run.next)
    elapsed = int((time.perf_counter() - start) * 1000)
    run.write("finished", None, ms=elapsed, status=HistoryStatus.APPLIED, error=None, execution_ms=elapsed,
              statements_done=len(work.statements))
    return elapsed


def rollback_non_transactional(conn: psycopg.Connection[Any], history: History, step: RollbackStep, *,
                               retry: RetryContext | None = None) -> int:
    """Run (or resume, when the row is an unfinished rollback) a no-transaction rollback, then delete the row."""
    start = time.perf_counter()
    row = step.row
    work = Work(row.version, row.version_text, step.source, "rollback",
                _statements(step.sql, step.source, row.version_text), _text_checksum(step.sql))
    run = _start(conn, history, work, row, retry)
    run.run_from(run.next)
    with conn.transaction():
        conn.execute(OWN_TRANSACTION)
        conn.execute(run.progress("finished", None, ms=int((time.perf_counter() - start) * 1000)))
        history.delete(conn, row.version)
    return int((time.perf_counter() - start) * 1000)
