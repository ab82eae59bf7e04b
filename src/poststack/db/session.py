"""Session state between migrations: every migration and rollback starts from the same state.

A migration's ``SET search_path``, ``SET ROLE``, ``SET statement_timeout``, ``set_config(..., false)``, temporary
tables, LISTENs and open cursors outlive it on the session, so without a reset the second migration of a run
behaves differently from the same migration run alone (``audit`` lands in ``reporting``). ``DISCARD ALL`` would
be the obvious reset, but it also releases session-level advisory locks, among them poststack's migration
lock; so the reset is DISCARD ALL minus the advisory unlock and minus DEALLOCATE ALL (prepared statements are
the driver's own cache), followed by re-stamping poststack's application_name (the lock report reads it).

Not covered (documented): session-level advisory locks a migration takes itself (they cannot be released
without releasing poststack's), and settings a migration stores with ``ALTER DATABASE/ROLE ... SET``, which
PostgreSQL applies only to new connections.

poststack's own writes made while a migration's state may still be in force (the history row of a
transactional migration, the progress rows of a non-transactional one) run under ``OWN_LOCALS``: SET LOCAL
of identity, timeouts and search_path, undone at the end of that transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

RESET_SQL = ("SET statement_timeout = 0; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; CLOSE ALL; "
             "UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES")

# Sent inside poststack's own transaction, before its history writes; undone when that transaction ends.
# set_config(..., true) is SET LOCAL; one SELECT for all of them costs the server one statement, not four.
# statement_timeout first: a migration's 'SET statement_timeout = 1' must not time out the rest.
OWN_SETTINGS = ("pg_catalog.set_config('statement_timeout', '0', true), "
                "pg_catalog.set_config('lock_timeout', '0', true), "
                "pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true), "
                "pg_catalog.set_config('search_path', 'pg_catalog', true)")
OWN_IDENTITY = "SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL ROLE NONE"
OWN_LOCALS = f"SELECT {OWN_SETTINGS}; {OWN_IDENTITY}"
# The same as the first statements of a transaction of poststack's own (SET TRANSACTION must come first).
OWN_TRANSACTION = f"SET TRANSACTION READ WRITE; {OWN_LOCALS}"


def reset_sql(application_name: str) -> sql.Composed:
    """The reset as statements that may also run inside a transaction (there it commits with it)."""
    return sql.SQL("{}; SELECT pg_catalog.set_config('application_name', {}, false)").format(
        sql.SQL(RESET_SQL), sql.Literal(application_name))


def application_name_of(conn: psycopg.Connection[Any]) -> str:
    """The application_name to restore after a reset (poststack's, stamped when the lock was taken)."""
    row = conn.execute("SELECT current_setting('application_name')").fetchone()
    return str(row[0]) if row else ""


def reset_session(conn: psycopg.Connection[Any], application_name: str) -> None:
    """Return the (autocommit, idle) session to its state at connection, keeping the advisory lock.

    A transactional migration does not call this: the same statements open its transaction (one round
    trip less per migration), and commit, or roll back to the state before, with it.
    """
    conn.execute(reset_sql(application_name))
