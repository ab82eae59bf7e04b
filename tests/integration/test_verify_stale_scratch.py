"""``db verify`` killed with -9 leaves its scratch database; the next verify drops it, and nothing else.

Issue 11 item 7. The proof a leftover is verify's own: the name, the owner, the comment naming the creating
backend (pid and start time) and that backend being gone, with no session on the database. Every decoy
here lacks one piece of that proof and must survive. Other xdist workers run verify meanwhile: their scratch
databases have live creators, so they are never touched either.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from reliability_support import HANG_GUARD_SECONDS, OBSERVER, spawn

from poststack.db.scratch_databases import SCRATCH_PREFIX
from poststack.testing import CLITestRunner

SLOW = {"001_slow.sql": "CREATE TABLE slow (id int);\nSELECT pg_sleep(600);\n",
        "001_slow.rollback.sql": "DROP TABLE slow;\n"}
QUICK = {"001_quick.sql": "CREATE TABLE quick (id int);\n", "001_quick.rollback.sql": "DROP TABLE quick;\n"}
MARK = "poststack verify scratch database; creator pid {} started {}"


def wait_for(conn: psycopg.Connection[Any], query: str, params: list[Any]) -> Any:
    """Poll until the query returns a row; the guard only turns a hang into a failure."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while (row := conn.execute(query, params).fetchone()) is None:
        assert time.monotonic() < deadline, f"hang waiting for: {query} {params}"
        time.sleep(0.02)
    return row


def dead_backend(url: str) -> tuple[int, int]:
    """The pid and start (microseconds) of a backend that existed and is gone."""
    with psycopg.connect(url, autocommit=True, application_name=OBSERVER) as gone:
        pid, start = gone.execute("SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint "
                                  "FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    with psycopg.connect(url, autocommit=True, application_name=OBSERVER) as conn:
        wait_for(conn, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", [pid])
    return pid, start


@pytest.fixture
def admin(database_url) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, application_name=OBSERVER) as conn:
        yield conn


def test_verify_drops_the_scratch_database_of_a_killed_run_and_nothing_else(
        database_url, admin, make_migrations, make_role) -> None:
    made: list[str] = []

    def decoy(name: str, comment: str | None, owner: str | None = None) -> str:
        owned = sql.SQL(" OWNER {}").format(sql.Identifier(owner)) if owner else sql.SQL("")
        admin.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), owned))
        made.append(name)
        if comment is not None:
            admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))
        return name

    def hexname() -> str:
        return SCRATCH_PREFIX + uuid.uuid4().hex[:12]

    dead = MARK.format(*dead_backend(database_url))
    alive_pid, alive_start = admin.execute("SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint "
                                           "FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    decoys = [
        decoy(hexname(), None),  # no mark: nothing proves whose it is
        decoy(hexname(), MARK.format(alive_pid, alive_start)),  # its creator is alive (this connection)
        decoy(SCRATCH_PREFIX + "not_hex_name", dead),  # not a name verify makes
        decoy(hexname(), dead, owner=make_role("CREATEDB")),  # another role's
        decoy(hexname(), dead + " (edited)"),  # not exactly the mark
        decoy("my_app_" + uuid.uuid4().hex[:8], dead),  # not even the prefix
    ]
    in_use = decoy(hexname(), dead)
    # Its creator's pid now belongs to another backend (this connection): reuse does not keep it alive.
    reused_pid = decoy(hexname(), MARK.format(alive_pid, alive_start + 1))
    session = psycopg.connect(conninfo.make_conninfo(database_url, dbname=in_use), autocommit=True)
    try:
        # A verify killed with -9 while its scratch database runs a long migration. The check interval makes
        # that backend notice its client is gone (else it sleeps on, connected: not provably stale).
        url = conninfo.make_conninfo(database_url, options="-c client_connection_check_interval=50")
        proc = spawn(url, make_migrations(SLOW), "db", "verify")
        scratch = wait_for(admin, "SELECT datname FROM pg_stat_activity WHERE application_name LIKE %s "
                           "AND query LIKE %s AND datname LIKE 'poststack\\_verify\\_%%'",
                           [f"poststack %:{proc.pid}", "%pg_sleep%"])[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        wait_for(admin, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s)",
                 [f"poststack %:{proc.pid}"])
        assert scratch in databases(admin)  # left behind, as the issue found

        result = CLITestRunner(database_url, make_migrations(QUICK)).run_command("verify")
        assert result.ok, result
        left = databases(admin)
        assert scratch not in left and reused_pid not in left
        assert [(i, d) for i, d in enumerate([*decoys, in_use]) if d not in left] == []
    finally:
        session.close()
        for name in made:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def databases(conn: psycopg.Connection[Any]) -> set[str]:
    return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}
