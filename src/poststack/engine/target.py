"""Target: one resolved database, one migrations directory, one history schema and one lock timeout.

Both services (``MigrationRunner`` and ``MigrationDiagnostics``) are a Target with commands on it, and every
engine or integrity function that needs "the database and its migrations" takes a Target, never a service:
recovery, marking, adopt and repair depend on these building blocks only, so the layers run one way
(services -> integrity -> engine) and the embedded-server fallback, the schema-name check and the
connection settings are written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from poststack.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_SCHEMA, validate_schema_name
from poststack.db import embedded
from poststack.db.connection import connect, mask_url
from poststack.db.history import History
from poststack.db.lock import migration_lock
from poststack.engine.plan import MigrationState, compare
from poststack.source.files import MigrationSet, load_migrations


class Target:
    """The database and the migrations a command works on; ``database_url=None`` is the embedded server."""

    def __init__(self, database_url: str | None = None, migrations_path: str | Path = "migrations", *,
                 history_schema: str = DEFAULT_SCHEMA, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.database_url = embedded.url_or_default(database_url)
        self.migrations_path = Path(migrations_path)
        self.history = History(validate_schema_name(history_schema))
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self.database_url)!r}, {str(self.migrations_path)!r})"

    def load(self) -> MigrationSet:
        """The migration files as they are on disk now (read on every call: files change between commands)."""
        return load_migrations(self.migrations_path)

    def connection(self) -> psycopg.Connection[Any]:
        """An autocommit connection (transactions are explicit); closed when used in a ``with`` block."""
        return connect(self.database_url, autocommit=True)

    @contextmanager
    def locked(self, *, create_history: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """A connection holding the migration lock, with the history tables present if asked for.

        Commands that can only read or remove history (rollback) pass ``create_history=False`` so that a
        refused command leaves a database without poststack's schema exactly as it found it.
        """
        with self.connection() as conn, migration_lock(conn, self.history.schema, self.lock_timeout):
            if create_history:
                self.history.ensure(conn)
            yield conn

    def state(self, conn: psycopg.Connection[Any], migrations: MigrationSet | None = None) -> MigrationState:
        """The files compared with the history rows read on ``conn``."""
        return compare(migrations if migrations is not None else self.load(), self.history.rows(conn))
