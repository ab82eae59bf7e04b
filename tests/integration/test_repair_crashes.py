"""Non-transactional migrations killed mid-way (the backend terminated for real), and what repair decides.

The crash is produced, not faked: a migrate runs in a thread, the test waits until PostgreSQL shows it at
the chosen point (pg_stat_activity) and ends its backend with pg_terminate_backend.
"""

import threading
import time
from pathlib import Path

import psycopg
import pytest

from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def codes(diag: MigrationDiagnostics) -> list[tuple[str, int | None]]:
    return sorted((i.code, i.version or 0) for i in diag.diagnose().issues)


def wait_for(conn: psycopg.Connection, query: str, params: list, what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(query, params).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def migrate_in_thread(runner: MigrationRunner) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.migrate()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def snapshot(url: str) -> tuple:
    """History, audit and catalog as plain data, to prove a dry run changed nothing."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT * FROM poststack.migrations ORDER BY version").fetchall()
        audit = conn.execute("SELECT count(*) FROM poststack.audit_log").fetchone()
        catalog = conn.execute(
            "SELECT c.relname, c.relkind, coalesce(i.indisvalid, true) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE n.nspname = 'public' ORDER BY 1").fetchall()
    return rows, audit, catalog


CIC_FILES = {
    "001_t.sql": "CREATE TABLE t (v int);\n",
    "001_t.rollback.sql": "DROP TABLE t;\n",
    "002_t_idx.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY t_v_idx ON t (v);\n",
    "002_t_idx.rollback.sql": "DROP INDEX t_v_idx;\n",
}


@pytest.fixture
def killed_concurrent_index(tmp_path, database_url):
    """002's CREATE INDEX CONCURRENTLY is terminated while it waits for an open writer: INVALID index left."""
    directory = write(tmp_path / "m", CIC_FILES)
    runner = MigrationRunner(database_url, directory)
    runner.migrate(1)
    with psycopg.connect(database_url, autocommit=True) as watcher, psycopg.connect(database_url) as writer:
        writer.execute("INSERT INTO t VALUES (1)")  # open transaction: CIC must wait for it
        thread, errors = migrate_in_thread(runner)
        pid = wait_for(watcher, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%' "
                                "AND wait_event_type = 'Lock'", [], "CREATE INDEX CONCURRENTLY to wait")
        watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(30)
        writer.rollback()
    assert errors, "the migrate thread should have failed"
    return directory, runner, MigrationDiagnostics(database_url, directory)


def test_killed_concurrent_index_is_diagnosed_and_retried_after_forced_repair(killed_concurrent_index, database_url):
    _directory, runner, diag = killed_concurrent_index
    result = diag.diagnose()
    assert codes(diag) == [("failed_migration", 2), ("invalid_index", 2)]
    failed = result.of("failed_migration")[0]
    assert "crashed" in failed.message
    assert any("lock: free" in line for line in failed.evidence)
    before = snapshot(database_url)
    dry = diag.repair(result.issues, force=True, dry_run=True)
    assert [(a.code, a.action) for a in dry.fixed] == [("failed_migration", "retry")]
    assert "t_v_idx" in dry.fixed[0].description
    assert snapshot(database_url) == before  # --dry-run changed nothing: history, audit, catalog
    done = diag.repair(result.issues, force=True)
    assert [(a.code, a.action) for a in done.fixed] == [("failed_migration", "retry")]
    assert codes(diag) == []
    runner.migrate()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v_idx'::regclass").fetchone()[0]
        assert conn.execute("SELECT action, version FROM poststack.audit_log").fetchall() == [("retry", 2)]


def test_a_statement_and_its_progress_commit_together_so_a_crash_between_them_cannot_happen(tmp_path, database_url):
    """A statement that may run in a transaction block commits with its progress update: blocking the update
    and ending the backend leaves neither (the row says 0 done, the table is absent), and migrate resumes.

    (Before, the statement committed first and a crash before the update left the record behind the catalog,
    for repair to mark applied from catalog evidence.)"""
    files = {"001_report.sql": "-- poststack:no-transaction\n"
                               "CREATE TABLE report AS SELECT 1 AS id FROM pg_sleep(1);\n",
             "001_report.rollback.sql": "DROP TABLE report;\n"}
    directory = write(tmp_path / "m", files)
    runner, diag = MigrationRunner(database_url, directory), MigrationDiagnostics(database_url, directory)
    with psycopg.connect(database_url, autocommit=True) as watcher, psycopg.connect(database_url) as blocker:
        thread, errors = migrate_in_thread(runner)
        wait_for(watcher, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE TABLE report%%'", [],
                 "the migration statement to start")
        blocker.execute("SELECT 1 FROM poststack.migrations WHERE version = 1 FOR UPDATE")
        pid = wait_for(watcher, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE TABLE report%%' "
                                "AND wait_event_type = 'Lock'", [], "the progress update to block")
        watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(30)
        blocker.rollback()
    assert errors
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status, statements_done FROM poststack.migrations").fetchall() == [("running", 0)]
        assert conn.execute("SELECT to_regclass('public.report')").fetchone() == (None,)
    assert [(i.code, i.version) for i in diag.diagnose().issues] == [("failed_migration", 1)]
    runner.migrate()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status, statements_done FROM poststack.migrations").fetchall() == [("applied", 1)]
    assert codes(diag) == []


def test_crashed_migration_with_mixed_evidence_is_refused(tmp_path, database_url):
    """Statement 1 committed (table exists), statement 2 (an UPDATE) may or may not have: no guessing."""
    files = {"001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1);\n",
             "001_t.rollback.sql": "DROP TABLE t;\n",
             "002_fill.sql": "-- poststack:no-transaction\nCREATE TABLE filled (v int);\n"
                             "UPDATE t SET v = v + 1;\n",
             "002_fill.rollback.sql": "DROP TABLE filled;\n"}
    directory = write(tmp_path / "m", files)
    runner, diag = MigrationRunner(database_url, directory), MigrationDiagnostics(database_url, directory)
    runner.migrate(1)
    with psycopg.connect(database_url, autocommit=True) as watcher, psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT 1 FROM t FOR UPDATE")  # the UPDATE will wait for this row
        thread, errors = migrate_in_thread(runner)
        pid = wait_for(watcher, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE t%%' "
                                "AND wait_event_type = 'Lock'", [], "the UPDATE to block")
        watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(30)
        blocker.rollback()
    assert errors
    result = diag.diagnose()
    assert [(i.code, i.version) for i in result.issues] == [("failed_migration", 2)], result.issues
    before = snapshot(database_url)
    repaired = diag.repair(result.issues, force=True)
    assert repaired.fixed == [] and "mixed" in repaired.skipped[0].reason
    assert snapshot(database_url) == before
