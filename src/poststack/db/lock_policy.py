"""The statement lock-timeout policy: how long a migration's statement may queue for a lock, and how often
poststack rolls back and tries again, naming the session that blocked it each time.

Why: an ``ALTER TABLE`` that queues behind a long transaction holds its place in the lock queue, and every
query of the application on that table queues behind *it*. With a short ``lock_timeout`` the migration gives
up quickly instead (the application's queries go on), and retrying with backoff gets it through once the
blocker is gone. Off by default (no ``lock_timeout`` is set, as before); ``--statement-lock-timeout 5
--lock-retries 3`` is a sensible production setting. A transactional file's own ``SET lock_timeout`` comes
after poststack's and wins.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from poststack.db.connection import connect
from poststack.errors import StatementLockTimeout

LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class LockPolicy:
    """``statement_lock_timeout`` in seconds (None: poststack sets none); ``retries`` extra attempts."""

    statement_lock_timeout: float | None = None
    retries: int = 0

    @property
    def active(self) -> bool:
        return self.statement_lock_timeout is not None

    @property
    def milliseconds(self) -> int:
        return max(1, int((self.statement_lock_timeout or 0) * 1000))

    def set_local(self) -> sql.Composable:
        """The SET LOCAL to send first in a transaction (nothing when the policy is off)."""
        if not self.active:
            return sql.SQL("")
        return sql.SQL("SET LOCAL lock_timeout = {}; ").format(sql.Literal(self.milliseconds))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``: exponential from 0.5 s, capped at 30 s, jittered."""
        return min(0.5 * 2.0 ** attempt, 30.0) * random.uniform(0.75, 1.25)


_BLOCKERS = ("SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), coalesce(a.query, '') "
             "FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s))")


class BlockerWatch:
    """Watches, from a second connection, which sessions block a backend while its statement runs.

    When the statement fails on its lock timeout the blocker may already be gone; what was seen while it
    waited is the evidence. Polls every 50 ms; keeps the last non-empty sighting.
    """

    def __init__(self, url: str, backend_pid: int) -> None:
        self.url = url
        self.pid = backend_pid
        self.seen: list[tuple[int, str, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poststack-blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    rows: Any = conn.execute(_BLOCKERS, [self.pid]).fetchall()
                    if rows:
                        self.seen = [tuple(r) for r in rows]
                    self._stop.wait(0.05)
        except Exception:  # the watch is evidence, never a reason to fail (a lost connection ends it)
            return

    def describe(self) -> str:
        if not self.seen:
            return "no blocking session was seen (it may have ended at once)"
        return "; ".join(f"pid {pid} ({app or 'no application_name'}), state '{state}', query "
                         f"'{' '.join(query.split())[:120]}'" for pid, app, state, query in self.seen)


@dataclass(frozen=True)
class RetryContext:
    """What the executor needs to apply the policy: the URL (for the watch) and where to say a retry."""

    policy: LockPolicy
    url: str
    notify: Callable[[str], None] | None = None

    def attempts(self) -> int:
        return self.policy.retries + 1 if self.policy.active else 1

    def watch(self, conn: psycopg.Connection[Any]) -> BlockerWatch | nullcontext[None]:
        return BlockerWatch(self.url, conn.info.backend_pid) if self.policy.active else nullcontext()

    def retry_or_raise(self, attempt: int, where: str, what: str, watch: object) -> None:
        """After a lock timeout in attempt ``attempt`` (0-based): wait and return, or raise when none are left."""
        blockers = watch.describe() if isinstance(watch, BlockerWatch) else "unknown"
        seconds = f"{self.policy.statement_lock_timeout:g}s"
        if attempt + 1 >= self.attempts():
            raise StatementLockTimeout(
                f"{where}: {what} could not get its locks within {seconds} in {self.attempts()} attempt(s) "
                f"(--statement-lock-timeout, --lock-retries): blocked by {blockers}; each attempt was rolled back")
        pause = self.policy.backoff(attempt)
        if self.notify:
            self.notify(f"{where}: lock timeout ({seconds}) in {what}, attempt {attempt + 1} of {self.attempts()}: "
                        f"blocked by {blockers}; rolled back, retrying in {pause:.1f}s")
        time.sleep(pause)
