"""Gathering the facts diagnose, repair and clean judge from, in one snapshot of the database.

``Inspected`` is the Target those commands work on (a Target plus the lock age and the replay server), so
integrity code depends on it and never on the ``MigrationDiagnostics`` service built on top of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import IsolationLevel

from poststack.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_SCHEMA
from poststack.db.legacy import legacy_duplicates
from poststack.db.lock import describe_pids, lock_holder
from poststack.engine.plan import compare
from poststack.engine.target import Target
from poststack.errors import UsageError
from poststack.integrity import catalog_facts
from poststack.integrity.facts import Facts
from poststack.source.files import MigrationSet

DEFAULT_LOCK_AGE = 300.0


class Inspected(Target):
    """The Target diagnose, repair and clean work on: how old a lock may be, and where to replay."""

    def __init__(self, database_url: str | None = None, migrations_path: str | Path = "migrations", *,
                 history_schema: str = DEFAULT_SCHEMA, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 lock_age: float = DEFAULT_LOCK_AGE, dev_url: str | None = None) -> None:
        if lock_age < 0:
            raise UsageError(f"--lock-age: {lock_age:g} must not be negative")
        super().__init__(database_url, migrations_path, history_schema=history_schema, lock_timeout=lock_timeout)
        self.lock_age = lock_age
        self.dev_url = dev_url

    def gather(self, conn: psycopg.Connection[Any], migrations: MigrationSet) -> Facts:
        """Every fact in one read-only REPEATABLE READ transaction: the history and the catalog are read in
        the same snapshot, so a migrate committing meanwhile can never look like a hand-applied migration.

        The replay the judgement may need runs after that transaction has ended (``finish_judgement``).
        """
        with _one_snapshot(conn), conn.transaction():
            facts = self._gather(conn, migrations)
        catalog_facts.finish_judgement(facts, self.history.schema, target_url=self.database_url,
                                       dev_url=self.dev_url)
        return facts

    def _gather(self, conn: psycopg.Connection[Any], migrations: MigrationSet) -> Facts:
        exists = self.history.exists(conn)
        state = compare(migrations, self.history.rows(conn) if exists else [])
        holder = lock_holder(conn, self.history.schema)
        if holder is not None and holder.pid == conn.info.backend_pid:
            holder = None  # repair and clean gather under the lock they hold: then nobody else is running
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        facts = Facts(migrations, state, exists, holder, row[0] if row else datetime.now().astimezone())
        if holder and holder.blocked_by:
            facts.blockers = describe_pids(conn, holder.blocked_by)
        catalog_facts.gather(conn, facts, self.history.schema, target_url=self.database_url, dev_url=self.dev_url)
        facts.legacy_duplicates = legacy_duplicates(conn)
        return facts


@contextmanager
def _one_snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Make the next transaction REPEATABLE READ, READ ONLY; the connection's own settings come back after."""
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    try:
        yield
    finally:
        conn.isolation_level, conn.read_only = saved
