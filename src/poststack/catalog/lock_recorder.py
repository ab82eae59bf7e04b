"""Which relation locks a migration takes, observed from inside its own transaction.

PostgreSQL holds a transaction's locks until it ends, so reading ``pg_locks`` for our own backend after
each statement shows exactly what the statements so far acquired; the difference from the previous read
is what the last statement added. This is the ground truth lint can only guess at: the lock report says
``AccessExclusiveLock on public.users`` because PostgreSQL granted it, not because a rule predicted it.

A relation dropped by the migration has no pg_class row any more inside the transaction, so names are
also read once before the migration starts and used for relations that disappeared.

Rewrites are observed the same way: a table, materialized view or index that existed before the migration
and whose ``relfilenode`` changed during a statement got new storage, i.e. was rewritten (or truncated)
by it. ``ALTER COLUMN ... TYPE bigint`` shows up; ``varchar(10)`` to ``varchar(20)`` (a catalog-only
change) does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

# Lock modes from weakest to strongest, as pg_locks spells them.
LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
# From ShareLock up, a lock blocks writes to the relation (ShareUpdateExclusive blocks only DDL/VACUUM).
BLOCKS_WRITES = frozenset(LOCK_MODES[4:])

_USER_RELATIONS = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid >= 16384 AND n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'"""

_FILENODES = """
SELECT c.oid, c.relfilenode, c.relkind::text FROM pg_class c
WHERE c.oid = ANY(%s) AND c.relkind IN ('r', 'm', 'i') AND c.relfilenode <> 0"""

_HELD = """
SELECT l.relation::oid, l.mode, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       coalesce(left(n.nspname, 3) = 'pg_' OR n.nspname IN ('information_schema', %s), false)
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.relation >= 16384
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


@dataclass(frozen=True)
class LockTaken:
    """A lock mode a migration acquired on a relation, and the first statement (file line) that took it."""

    relation: str
    mode: str
    line: int
    new_relation: bool  # created by this migration: nobody else can be waiting on it

    def describe(self) -> str:
        new = " (created by this migration)" if self.new_relation else ""
        return f"{self.mode} on {self.relation}{new} at line {self.line}"

    @property
    def blocks_writes(self) -> bool:
        return self.mode in BLOCKS_WRITES


@dataclass(frozen=True)
class Rewrite:
    """A relation that existed before the migration and got new storage during the statement at ``line``."""

    relation: str
    kind: str  # table, materialized view, index
    line: int
    lock: str  # the strongest lock the migration held on it right after the statement

    def describe(self) -> str:
        return f"line {self.line}: rewrote {self.relation} ({self.lock})"


_KINDS = {"r": "table", "m": "materialized view", "i": "index"}


class LockRecorder:
    """Reads the locks of one transaction after each statement and keeps the first time each appeared."""

    def __init__(self, conn: psycopg.Connection[Any], history_schema: str) -> None:
        self.conn = conn
        self.history_schema = history_schema
        with conn.cursor(row_factory=tuple_row) as cur:
            self.known: dict[int, str] = dict(cur.execute(_USER_RELATIONS).fetchall())
        self._existing = frozenset(self.known)
        self._seen: set[tuple[int, str]] = set()
        self.taken: list[LockTaken] = []
        self.rewrites: list[Rewrite] = []
        self._filenodes = self._read_filenodes()

    def _read_filenodes(self) -> dict[int, tuple[int, str]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(_FILENODES, [list(self._existing)]).fetchall()
        return {oid: (node, kind) for oid, node, kind in rows}

    def after_statement(self, line: int) -> None:
        """Record the locks the statement starting at ``line`` added (call inside the transaction)."""
        with self.conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(_HELD, [self.history_schema]).fetchall()
        for oid, mode, name, not_user in rows:
            if not_user or (oid, mode) in self._seen:
                continue
            self._seen.add((oid, mode))
            relation = name or self.known.get(oid)
            if relation is None:
                relation = "(a relation created and dropped by this migration)"
            elif oid not in self.known:
                self.known[oid] = relation
            self.taken.append(LockTaken(relation, mode, line, oid not in self._existing))
        held: dict[int, str] = {}
        for oid, mode, _name, _not_user in rows:
            if _rank(mode) > _rank(held.get(oid, "")):
                held[oid] = mode
        now = self._read_filenodes()
        for oid, (node, kind) in self._filenodes.items():
            if oid in now and now[oid][0] != node:
                self.rewrites.append(Rewrite(self.known[oid], _KINDS.get(kind, kind), line,
                                             held.get(oid, "lock not held")))
            elif oid not in now and kind == "i" and (rebuilt := self._rebuilt(self.known[oid])) is not None:
                # ALTER COLUMN TYPE drops and recreates the indexes on the column under the same name
                self.rewrites.append(Rewrite(self.known[oid], "index (rebuilt)", line,
                                             held.get(rebuilt, "lock not held")))
        self._filenodes = now

    def _rebuilt(self, name: str) -> int | None:
        """The oid of a new relation with the name a vanished index had, if any."""
        row = self.conn.execute("SELECT to_regclass(%s)::oid", [name]).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def strongest(self) -> list[LockTaken]:
        """Per relation, the strongest mode taken (first statement that took it): the summary users read."""
        best: dict[str, LockTaken] = {}
        for lock in self.taken:
            current = best.get(lock.relation)
            if current is None or _rank(lock.mode) > _rank(current.mode):
                best[lock.relation] = lock
        return sorted(best.values(), key=lambda lock: (lock.line, lock.relation))


def _rank(mode: str) -> int:
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else -1
