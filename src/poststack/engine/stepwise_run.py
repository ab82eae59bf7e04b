"""Running a non-transactional text statement by statement, the history row and the statement log in step.

``Run`` is the machine poststack.engine.stepwise drives once it has decided where to start (a fresh run, or
a resume it settled): how each kind of statement runs and when its progress is written (with it in one
transaction, right after it when it must run alone, inside the file's own ``BEGIN ... COMMIT`` block just
before its COMMIT), the statement lock-timeout retries, and what a failure or a Ctrl-C records and says.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

from poststack.db.history import History, HistoryStatus, progress_sql
from poststack.db.lock_policy import LOCK_NOT_AVAILABLE, RetryContext
from poststack.db.session import OWN_LOCALS, OWN_TRANSACTION
from poststack.engine.plan import ROLLBACK_MARK
from poststack.engine.sending import StatementError, connection_lost, send, sql_error
from poststack.engine.statement_kinds import left_index, runs_alone, transaction_word
from poststack.errors import Interrupted, MigrationFailed, StatementLockTimeout
from poststack.source.sqltext import Statement

# The statement's run time, computed by the server in the query that ran it (it started with the query).
_ELAPSED = sql.SQL("(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int")
_IN_BLOCK = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)


@dataclass(frozen=True)
class Work:
    """One non-transactional text being run for a history row."""

    version: int
    version_text: str
    where: str
    direction: str  # "migrate" or "rollback"
    statements: list[Statement]
    checksum: str  # of the text run, logged at start so a resume can prove it runs the same text

    @property
    def what(self) -> str:
        return (f"non-transactional migration {self.version_text}" if self.direction == "migrate"
                else f"the non-transactional rollback of {self.version_text}")

    @property
    def resume_command(self) -> str:
        return "poststack db migrate" if self.direction == "migrate" else "the same 'poststack db rollback'"

    @property
    def error_prefix(self) -> str:
        return "" if self.direction == "migrate" else ROLLBACK_MARK + "failed: "


class Run:
    """Runs statements from a given index, keeping the history row and the statement log in step."""

    def __init__(self, conn: psycopg.Connection[Any], history: History, work: Work, done: int,
                 retry: RetryContext | None = None) -> None:
        self.conn = conn
        self.history = history
        self.work = work
        self.retry = retry if retry is not None and retry.policy.active else None
        self.done = done  # statements recorded done in the history row
        self.block_start: int | None = None  # index of the BEGIN of the file's open block
        self.next = done  # the first statement still to run

    # -- history writes -------------------------------------------------------------------------------
    def progress(self, event: str, index: int | None = None, ms: int | sql.Composable | None = None,
                 detail: str | None = None, **changes: Any) -> sql.Composed:
        st = self.work.statements[index] if index is not None else None
        return progress_sql(self.history, self.work.version, self.work.direction, event,
                            statement=index + 1 if index is not None else None, line=st.line if st else None,
                            ms=ms, detail=detail, **changes)

    def write(self, event: str, index: int | None = None, ms: int | None = None, detail: str | None = None,
              **changes: Any) -> None:
        """A history write in a transaction of its own (the session must be idle)."""
        self.conn.execute(sql.SQL("BEGIN; {}; {}; COMMIT").format(
            sql.SQL(OWN_TRANSACTION), self.progress(event, index, ms, detail, **changes)).as_bytes(self.conn))

    # -- running --------------------------------------------------------------------------------------
    def run_from(self, first: int) -> None:
        statements = self.work.statements
        for index in range(first, len(statements)):
            attempt = 0
            while True:
                watch = self.retry.watch(self.conn) if self.retry else nullcontext()
                try:
                    with watch:
                        if attempt:
                            self._drop_left_invalid(index)
                        self._one(index)
                    break
                except StatementError as failed:
                    if not self._lock_timed_out(failed):
                        self._failed(index, failed.error, failed.offset if isinstance(failed, _Offset) else 0)
                    self._retry_or_give_up(index, attempt, watch)
                    attempt += 1
                except psycopg.Error as exc:
                    self._failed(index, exc, 0)
                except KeyboardInterrupt:
                    self._interrupted(index)
        if self.conn.info.transaction_status in _IN_BLOCK:
            begin = statements[self.block_start or 0]
            self.conn.execute("ROLLBACK")
            error = (f"{self.work.where}:{begin.line}: {self.work.what} failed: the file ends inside the "
                     f"transaction block begun on line {begin.line} (no COMMIT); poststack rolled it back")
            self.write("failed", self.block_start, status=HistoryStatus.FAILED, error=self.work.error_prefix + error,
                       statements_done=self.done)
            raise MigrationFailed(f"{error} ({self.done} of {len(statements)} statements had run and are kept)",
                                  path=self.work.where, line=begin.line)

    def _one(self, index: int) -> None:
        st = self.work.statements[index]
        word = transaction_word(st)
        started = time.perf_counter()
        if self.conn.info.transaction_status in _IN_BLOCK:
            if word == "commit":  # the block's progress commits with it, or not at all
                prefix = sql.SQL("{}; {};\n").format(sql.SQL(OWN_LOCALS), self.progress(
                    "ran", index, detail=f"transaction block from statement {(self.block_start or 0) + 1} "
                                         "committed", statements_done=index + 1)).as_string(self.conn)
                self._send(prefix, st.text)
                self.done, self.block_start = index + 1, None
            elif word == "rollback":
                self._send("", st.text)
                self.block_start = None
                self._record_done(index, started, "the file's transaction block was rolled back by it")
            else:
                self._send("", st.text)
            return
        if word == "begin":
            self._send("", st.text)
            self.block_start = index
            return
        if runs_alone(st) or st.kind == "TransactionStmt":
            self._send_alone(st.text)
            self._record_done(index, started)
            return
        write = self.progress("ran", index, ms=_ELAPSED, statements_done=index + 1)
        suffix = sql.SQL("\n;{}; {}; COMMIT").format(sql.SQL(OWN_LOCALS), write)
        # BEGIN in a query of its own: the statement then starts its query, as pg_stat_activity shows it.
        self.conn.execute(sql.SQL("BEGIN; {}").format(self._lock_setting()))
        try:
            self._send("", st.text, suffix.as_string(self.conn))
        except StatementError as failed:
            if self.conn.info.transaction_status in _IN_BLOCK:
                self.conn.execute("ROLLBACK")
            if failed.index == 0 and failed.error.diag.sqlstate == "25001":  # cannot run in a block: alone
                self._send_alone(st.text)
                self._record_done(index, started)
                return
            raise
        self.done = index + 1

    # -- the statement lock-timeout policy ------------------------------------------------------------------
    def _lock_timed_out(self, failed: StatementError) -> bool:
        """A lock timeout the policy retries: outside the file's own blocks (a block is retried by no one)."""
        return (self.retry is not None and failed.error.diag.sqlstate == LOCK_NOT_AVAILABLE
                and self.block_start is None and self.conn.info.transaction_status not in _IN_BLOCK)

    def _retry_or_give_up(self, index: int, attempt: int, watch: object) -> None:
        assert self.retry is not None
        st = self.work.statements[index]
        try:
            self.retry.retry_or_raise(attempt, f"{self.work.where}:{st.line}", f"statement {index + 1} of "
                                      f"{self.work.what}", watch)
        except StatementLockTimeout as gave_up:
            self.write("failed", index, detail=str(gave_up), status=HistoryStatus.FAILED,
                       error=f"{self.work.error_prefix}{gave_up}", statements_done=self.done)
            left = left_index(self.conn, st)
            note = f"; it left index {left} INVALID, which resuming drops and builds again" if left else ""
            raise StatementLockTimeout(f"{gave_up} ({self.done} of {len(self.work.statements)} statements had run "
                                       f"and are kept{note}; run {self.work.resume_command} to resume)") from None

    def _drop_left_invalid(self, index: int) -> None:
        """Before another try of a CREATE INDEX CONCURRENTLY that timed out: drop the INVALID entry it left
        (under the same lock timeout, so a blocker still there just costs this attempt)."""
        left = left_index(self.conn, self.work.statements[index])
        if left:
            schema, name = left.split(".", 1)
            self._send_alone(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name)).as_string(self.conn))

    def _lock_setting(self) -> sql.Composable:
        return self.retry.policy.set_local() if self.retry else sql.SQL("")

    def _send_alone(self, text: str) -> None:
        """A statement that must run outside a block, under the policy's lock_timeout when there is one."""
        if self.retry is None:
            self._send("", text)
            return
        previous = self.conn.execute("SELECT current_setting('lock_timeout'), "
                                     "set_config('lock_timeout', %s, false)",
                                     [str(self.retry.policy.milliseconds)]).fetchone()
        try:
            self._send("", text)
        finally:
            if previous and not self.conn.broken and self.conn.info.transaction_status not in _IN_BLOCK:
                self.conn.execute("SELECT set_config('lock_timeout', %s, false)", [previous[0]])

    def _send(self, prefix: str, text: str, suffix: str = "") -> None:
        try:
            send(self.conn, (prefix + text + suffix).encode())
        except StatementError as failed:
            raise _Offset(failed.index, failed.error, len(prefix)) from None

    def _record_done(self, index: int, started: float, detail: str | None = None) -> None:
        self.write("ran", index, ms=int((time.perf_counter() - started) * 1000), detail=detail,
                   statements_done=index + 1)
        self.done = index + 1

    # -- failures -------------------------------------------------------------------------------------
    def _rolled_back_block(self, index: int) -> str:
        if self.block_start is None:
            return ""
        begin = self.work.statements[self.block_start]
        return (f"; statements {self.block_start + 1}-{index + 1} (the transaction block from line {begin.line}) "
                "were rolled back and did not run")

    def _failed(self, index: int, exc: psycopg.Error, offset: int) -> None:
        st = self.work.statements[index]
        n = len(self.work.statements)
        lost = connection_lost(self.conn, exc, f"{self.work.what} ({self.work.where}), statement {index + 1} of {n}",
                               f"{self.done} statement(s) had completed; the history row stays 'running': "
                               f"run {self.work.resume_command} to resume")
        if lost:
            raise lost from None
        rolled_back = self._rolled_back_block(index)
        if self.conn.info.transaction_status in _IN_BLOCK:
            self.conn.execute("ROLLBACK")
        self.block_start = None
        failure = sql_error(exc, where=self.work.where, version_text=self.work.version_text, text=st.text,
                            line_offset=st.line - 1, position_offset=offset)
        self.write("failed", index, detail=str(failure), status=HistoryStatus.FAILED,
                   error=f"{self.work.error_prefix}{failure}", statements_done=self.done)
        raise MigrationFailed(
            f"{failure} ({self.done} of {n} statements had run outside a transaction and are kept{rolled_back}; "
            f"fix the cause, then run {self.work.resume_command} to resume from statement {self.done + 1})",
            path=failure.path, line=failure.line, sqlstate=failure.sqlstate) from None

    def _interrupted(self, index: int) -> None:
        st = self.work.statements[index]
        n = len(self.work.statements)
        where = f"{self.work.where}:{st.line}"
        if self.conn.broken or self.conn.closed:
            raise Interrupted(f"interrupted during statement {index + 1} of {n} of {self.work.what} ({where}) and "
                              f"the connection was lost; the history row stays 'running': run "
                              f"{self.work.resume_command} to resume") from None
        rolled_back = self._rolled_back_block(index)
        if self.conn.info.transaction_status in _IN_BLOCK:
            self.conn.execute("ROLLBACK")
        row = self.history.row(self.conn, self.work.version)  # the record, not our idea of it
        self.done = (row.statements_done or 0) if row else self.done
        left = left_index(self.conn, st)
        note = f"; it left index {left} INVALID, which resuming drops and builds again" if left else ""
        mark = "" if self.work.direction == "migrate" else ROLLBACK_MARK
        error = (f"{mark}interrupted (SIGINT) during statement {index + 1} ({where}); "
                 "its outcome is settled when resuming")
        self.write("interrupted", index, status=HistoryStatus.FAILED, error=error, statements_done=self.done)
        raise Interrupted(f"interrupted during statement {index + 1} of {n} of {self.work.what} ({where}): "
                          f"{self.done} statement(s) completed and are kept{rolled_back}; the history row is "
                          f"'failed' at statement {self.done} of {n}{note}; run {self.work.resume_command} to "
                          "resume") from None


class _Offset(StatementError):
    """A StatementError whose query had ``offset`` characters of poststack's own before the statement."""

    def __init__(self, index: int, error: psycopg.Error, offset: int) -> None:
        super().__init__(index, error)
        self.offset = offset
