"""The advisory lock that serialises deployers, and the report of who holds it.

A session-level lock taken with ``pg_try_advisory_lock`` in a poll loop rather than a blocking
``pg_advisory_lock``: a blocked lock request would make ``CREATE INDEX CONCURRENTLY`` (which waits for
every older transaction) deadlock against a waiting deployer, and polling lets us honour a timeout.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from poststack.db.connection import client_identity
from poststack.errors import LockTimeout


def lock_key(schema: str) -> int:
    """A stable signed 64-bit key derived from the history schema: one lock per history."""
    digest = hashlib.sha256(f"poststack:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _split_key(key: int) -> tuple[int, int]:
    # pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


@dataclass(frozen=True)
class LockHolder:
    """The backend holding the migration lock, as pg_locks and pg_stat_activity show it."""

    pid: int
    application_name: str
    client_addr: str | None
    backend_start: datetime | None
    state: str | None
    state_change: datetime | None
    query: str | None
    blocked_by: list[int]
    held_for_seconds: float | None

    def describe(self) -> str:
        # application_name is "poststack user@host:pid lock@HH:MM:SSZ" when the holder is poststack
        who = self.application_name or "unknown client"
        since = self.backend_start.isoformat(timespec="seconds") if self.backend_start else "unknown"
        waits = f", waiting on pid(s) {', '.join(map(str, self.blocked_by))}" if self.blocked_by else ""
        return f"pid {self.pid} ({who}), connected since {since}, {self.state or 'unknown state'}{waits}"


_HOLDER_QUERY = """
SELECT l.pid, coalesce(a.application_name, ''), a.client_addr::text, a.backend_start, a.state,
       a.state_change, a.query, pg_blocking_pids(l.pid),
       extract(epoch FROM clock_timestamp() - coalesce(a.backend_start, clock_timestamp()))::float8
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def lock_holder(conn: psycopg.Connection[Any], schema: str) -> LockHolder | None:
    """Who holds the lock now, or None. Needs no privileges beyond reading pg_locks."""
    high, low = _split_key(lock_key(schema))
    row = conn.execute(_HOLDER_QUERY, [high, low]).fetchone()
    if row is None:
        return None
    return LockHolder(row[0], row[1], row[2], row[3], row[4], row[5], row[6], list(row[7] or []), row[8])


# Ends the backend only while it is the one that was judged (same pid, same session start) and still holds
# the lock: one statement, so neither a released lock nor a reused pid can redirect the termination.
_TERMINATE_JUDGED = """
SELECT pg_terminate_backend(a.pid)
FROM pg_stat_activity a
WHERE a.pid = %s AND a.backend_start IS NOT DISTINCT FROM %s AND EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
    AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


def terminate_holder(conn: psycopg.Connection[Any], schema: str, judged: LockHolder) -> bool:
    """End ``judged`` if, and only if, it still holds the lock; False when another backend (or none) does."""
    high, low = _split_key(lock_key(schema))
    row = conn.execute(_TERMINATE_JUDGED, [judged.pid, judged.backend_start, high, low]).fetchone()
    return bool(row and row[0])


def try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    return bool(row and row[0])


@contextmanager
def migration_lock(conn: psycopg.Connection[Any], schema: str, timeout: float) -> Iterator[None]:
    """Hold the lock for the block; raise LockTimeout naming the holder after ``timeout`` seconds.

    The connection must be in autocommit so the lock is not tied to a transaction the caller might
    roll back. While held, application_name records since when, for anyone diagnosing a stuck deploy.
    """
    key = lock_key(schema)
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = 0.05
    while not try_lock(conn, key):
        if time.monotonic() >= deadline:
            holder = lock_holder(conn, schema)
            who = holder.describe() if holder else "a backend that has since released it"
            raise LockTimeout(f"migration lock not acquired within {timeout:g}s (--lock-timeout): held by {who}")
        time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        delay = min(delay * 2, 1.0)
    since = datetime.now(UTC).strftime("%H:%M:%SZ")
    conn.execute("SELECT set_config('application_name', %s, false)",
                 [f"poststack {client_identity()} lock@{since}"[:63]])
    try:
        yield
    finally:
        if not conn.closed:
            with suppress(psycopg.Error):  # if the session is gone, so is the lock
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def describe_pids(conn: psycopg.Connection[Any], pids: list[int]) -> dict[int, str]:
    """What each backend the lock holder waits on is doing, from pg_stat_activity (one query)."""
    rows = conn.execute(
        "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), coalesce(query, '') "
        "FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchall()
    return {pid: f"{app or 'unknown client'}, {state or 'unknown state'}, query: {' '.join(query.split())[:120]}"
            for pid, app, state, query in rows}
