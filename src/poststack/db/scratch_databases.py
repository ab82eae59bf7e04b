"""Scratch databases verify and the replay create, marked so that a later run can prove which leftovers are its own.

``db verify`` killed with -9 (or its machine lost) cannot drop its scratch database. Each one is therefore
created with a comment naming the backend that created it: its pid and its start time, in microseconds
since the epoch (a pid alone is reused). A later verify drops a ``poststack_verify_*`` database only when
all of this holds, and leaves everything else alone:

- the name is exactly the prefix and 12 hex digits, and the database belongs to the role verify runs as;
- its comment is exactly the mark this module writes;
- no backend with that pid and that start time exists (so its creator is gone: a verify still running,
  in any process on any machine, keeps its creating connection open until it drops the database);
- no session is connected to it (plain DROP DATABASE, never WITH (FORCE): a failure just skips it).

A verify killed between CREATE DATABASE and COMMENT (one round trip) leaves an unmarked database that no
run can prove is its own; it is reported by name in the log and must be dropped by hand.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from poststack.db.connection import connect, database_of, mask_url, with_database
from poststack.errors import ConnectError
from poststack.errors import ScratchDatabaseError as ScratchDatabaseError  # re-exported: its name here before errors.py

SCRATCH_PREFIX = "poststack_verify_"
_NAME = re.compile(re.escape(SCRATCH_PREFIX) + r"[0-9a-f]{12}")
_MARK = "poststack verify scratch database; creator pid {pid} started {start_us}"
_MARK_RE = re.compile(r"poststack verify scratch database; creator pid ([0-9]{1,10}) started (-?[0-9]{1,20})")
_log = logging.getLogger("poststack.engine.verify")


def _creator(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute("SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint FROM pg_stat_activity "
                       "WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def mark(conn: psycopg.Connection[Any], name: str) -> None:
    """Record on the new database ``name`` which backend (this connection's) created it."""
    pid, start_us = _creator(conn)
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(name), sql.Literal(_MARK.format(pid=pid, start_us=start_us))))


def drop_stale(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the scratch databases of verify runs whose creating backend is gone; return their names."""
    candidates = conn.execute(
        "SELECT d.datname, pg_catalog.shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d "
        "WHERE starts_with(d.datname, %s) AND d.datdba = (SELECT oid FROM pg_catalog.pg_roles "
        "WHERE rolname = current_user)", [SCRATCH_PREFIX]).fetchall()
    dropped: list[str] = []
    for name, comment in candidates:
        found = _MARK_RE.fullmatch(comment or "")
        if not _NAME.fullmatch(name) or found is None:
            _log.info("scratch database %s has no creator mark; left alone", name)
            continue
        busy = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s "
            "AND (extract(epoch FROM backend_start) * 1000000)::bigint = %s) "
            "OR EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = %s)",
            [int(found[1]), int(found[2]), name]).fetchone()
        if busy is None or busy[0]:
            continue  # its verify still runs (or someone is connected): not stale
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:  # someone connected meanwhile, or another verify dropped it first
            _log.info("stale scratch database %s not dropped: %s", name, exc.diag.message_primary)
            continue
        _log.info("dropped stale scratch database %s (its verify run was killed)", name)
        dropped.append(name)
    return dropped


# -- creating one --------------------------------------------------------------------------------
def maintenance_connection(url: str) -> psycopg.Connection[Any]:
    """A connection to the target's server to create databases from; falls back to the ``postgres``
    database when the target database does not exist yet (verify must work before the first deploy)."""
    try:
        return connect(url, autocommit=True)
    except ConnectError:
        if database_of(url) == "postgres":
            raise
        try:
            return connect(with_database(url, "postgres"), autocommit=True)
        except ConnectError:
            pass
        raise


def may_create_databases(conn: psycopg.Connection[Any]) -> bool:
    """Whether the session's role has CREATEDB (or is a superuser)."""
    row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """Create an empty database on the server of ``url``, yield its URL, drop it afterwards (even on error).

    Raises ScratchDatabaseError when the role may not create databases: verify never falls back to the
    target database itself.
    """
    with maintenance_connection(url) as conn:
        if not may_create_databases(conn):
            user = conn.info.user
            raise ScratchDatabaseError(f"role {user!r} on {mask_url(url)} may not create databases (CREATEDB); "
                                       "verify needs a scratch database: grant CREATEDB or use another URL")
        drop_stale(conn)  # left by a verify killed with -9: provably its own, else kept
        name = SCRATCH_PREFIX + uuid.uuid4().hex[:12]
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise ScratchDatabaseError(f"cannot create scratch database {name} on {mask_url(url)}: "
                                       f"{(exc.diag.message_primary or str(exc)).strip()}") from None
        try:
            mark(conn, name)
            yield with_database(url, name)
        finally:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


