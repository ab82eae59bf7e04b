"""Sending a migration's SQL and naming its failure: what both ways of running a file share.

poststack.engine.executor runs a transactional file in one query and poststack.engine.stepwise a
non-transactional one statement by statement; the executor hands the latter its files, so these pieces live
below both rather than in the executor, where stepwise would have to import its own caller.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import generators, pq
from psycopg.errors import error_from_result

from poststack.errors import ConnectError, MigrationFailed
from poststack.source.sqltext import line_of


class StatementError(Exception):
    """A multi-statement query failed: ``index`` is the 0-based statement of the query that failed."""

    def __init__(self, index: int, error: psycopg.Error, results: list[pq.abc.PGresult] | None = None) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error
        self.results = results or []


def send(conn: psycopg.Connection[Any], query: bytes) -> list[pq.abc.PGresult]:
    """Run a (multi-statement) simple query and return every statement's result.

    psycopg's execute reports only the error of a failed multi-statement query, not which statement it was;
    the results received before the error say that (each completed statement sends one), which is how an
    error without a position still names its statement's line.
    """
    with conn.lock:
        conn.pgconn.send_query(query)
        results: list[pq.abc.PGresult] = conn.wait(generators.execute(conn.pgconn))
        while results and results[-1].status == pq.ExecStatus.COPY_IN:
            conn.pgconn.put_copy_end(b"COPY FROM STDIN is not supported in a migration")
            results[-1:] = conn.wait(generators.execute(conn.pgconn))
    for index, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise StatementError(index, error_from_result(result, encoding=conn.info.encoding), results)
        if result.status in (pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH):
            conn.pgconn.finish()  # cannot be drained here; a closed connection is honest, a stuck one is not
            raise psycopg.OperationalError("COPY TO STDOUT is not supported in a migration")
    return results


def sql_error(exc: psycopg.Error, *, where: str, version_text: str, text: str, line_offset: int = 0,
              position_offset: int = 0, statement_line: int | None = None) -> MigrationFailed:
    """A one-line error naming the file, the line PostgreSQL pointed at (else the failing statement's first
    line), and PostgreSQL's message."""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    line = None
    if diag.statement_position and int(diag.statement_position) > position_offset:
        line = line_of(text, int(diag.statement_position) - 1 - position_offset) + line_offset
    elif statement_line is not None:
        line = statement_line + line_offset
    elif line_offset:
        line = line_offset + 1
    location = f"{where}:{line}" if line else where
    hint = f" (hint: {diag.message_hint.strip()})" if diag.message_hint else ""
    return MigrationFailed(f"{location}: migration {version_text} failed: {message}{hint}".replace("\n", " "),
                           path=where, line=line, sqlstate=diag.sqlstate)


def connection_lost(conn: psycopg.Connection[Any], exc: psycopg.Error, where: str,
                    outcome: str) -> ConnectError | None:
    """A ConnectError (exit 3) when ``exc`` came from losing the connection, else None.

    A terminated backend or a restarted server is not a failing migration (exit 5 promises the SQL itself
    failed); the user must learn that the connection died and what state that leaves.
    """
    if not conn.broken:
        return None
    reason = " ".join((exc.diag.message_primary or str(exc)).split())
    return ConnectError(f"database connection lost during {where}: {reason}; {outcome}")
