"""A transactional migration applied one statement at a time, observed: locks, rewrites and timings.

This is ``executor.apply_transactional`` with the statements run separately inside the one transaction,
so that between them the lock recorder can read what each statement acquired and rewrote, and each
statement's duration can be measured. The statements and the history row still commit (or vanish)
together. A lock is held from the statement that took it until the transaction ends, so its hold time
is measured from that statement's start to the end of the commit: "this ALTER holds ACCESS EXCLUSIVE on
users for 4.2 s at 1 M rows" is what ``verify --rows`` shows before production does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from poststack.catalog.lock_recorder import LOCK_MODES, LockRecorder, LockTaken, Rewrite
from poststack.db.history import History
from poststack.engine.sending import sql_error
from poststack.errors import MigrationFailed
from poststack.source.files import Migration
from poststack.source.sqltext import SqlSyntaxError, split_statements


@dataclass(frozen=True)
class LockHeld:
    relation: str
    mode: str
    held_ms: float  # from the start of the statement that took it to the end of the commit
    new_relation: bool


@dataclass
class StatementTiming:
    """One statement: where it starts, how long it ran, and the locks it took (with their hold times)."""

    line: int
    duration_ms: float
    locks: list[LockHeld] = field(default_factory=list)


@dataclass
class Observation:
    locks: list[LockTaken] = field(default_factory=list)  # per relation, the strongest mode
    rewrites: list[Rewrite] = field(default_factory=list)
    statements: list[StatementTiming] = field(default_factory=list)


def apply_observed(conn: psycopg.Connection[Any], history: History, migration: Migration) -> Observation:
    """Apply a transactional migration statement by statement and report what each one did."""
    where, version_text = str(migration.path), migration.version_text
    try:
        statements = split_statements(migration.sql)
    except SqlSyntaxError as exc:
        line = f":{exc.line}" if exc.line else ""
        raise MigrationFailed(f"{where}{line}: migration {version_text} failed: syntax error: {exc.message}",
                              path=where, line=exc.line, sqlstate="42601") from None
    start = time.perf_counter()
    timings: list[tuple[int, float, float]] = []  # (line, started, duration)
    try:
        with conn.transaction():
            recorder = LockRecorder(conn, history.schema)
            for statement in statements:
                began = time.perf_counter()
                try:
                    conn.execute(statement.text.encode())
                except psycopg.Error as exc:
                    raise sql_error(exc, where=where, version_text=version_text, text=statement.text,
                                             line_offset=statement.line - 1) from None
                timings.append((statement.line, began, time.perf_counter() - began))
                recorder.after_statement(statement.line)
            history.insert(conn, migration, execution_ms=int((time.perf_counter() - start) * 1000))
    except psycopg.Error as exc:  # the history write or the commit itself
        raise sql_error(exc, where=where, version_text=version_text, text=migration.sql) from None
    committed = time.perf_counter()
    return Observation(recorder.strongest(), list(recorder.rewrites), _timed(timings, recorder.taken, committed))


def _timed(timings: list[tuple[int, float, float]], taken: list[LockTaken], committed: float) -> list[StatementTiming]:
    """Per statement, the locks first taken by it, strongest mode per relation, with hold times."""
    result = []
    for line, began, duration in timings:
        # keyed by name and newness: an index rebuilt under its old name is two relations (old and new)
        strongest: dict[tuple[str, bool], LockTaken] = {}
        for lock in taken:
            key = (lock.relation, lock.new_relation)
            if lock.line == line and (key not in strongest or _rank(lock.mode) > _rank(strongest[key].mode)):
                strongest[key] = lock
        held = [LockHeld(lock.relation, lock.mode, round((committed - began) * 1000, 3), lock.new_relation)
                for lock in sorted(strongest.values(), key=lambda lock: lock.relation)]
        result.append(StatementTiming(line, round(duration * 1000, 3), held))
    return result


def _rank(mode: str) -> int:
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else -1
