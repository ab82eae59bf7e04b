"""stuck_lock and clean: a lock held for real by another connection, failed leftovers, legacy duplicates."""

import contextlib
import threading
import time
from pathlib import Path

import psycopg
import pytest

from poststack.db.lock import lock_key
from poststack.errors import MigrationFailed
from poststack.integrity.cleaning import Cleaner
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {"001_t.sql": "CREATE TABLE t (v int);\n", "001_t.rollback.sql": "DROP TABLE t;\n"}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def pid_alive(url: str, pid: int) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] == 1


def audit_actions(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT command, action, version FROM poststack.audit_log ORDER BY id").fetchall()


@pytest.fixture
def project(tmp_path, database_url):
    directory = write(tmp_path / "m", FILES)
    MigrationRunner(database_url, directory).migrate()
    return directory


def test_stuck_lock_reports_the_holder_and_clean_ends_it_only_with_force(project, database_url):
    holder = psycopg.connect(database_url, autocommit=True, application_name="deploy-42")
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
    pid = holder.info.backend_pid
    try:
        assert MigrationDiagnostics(database_url, project).diagnose().issues == []  # younger than --lock-age
        diag = MigrationDiagnostics(database_url, project, lock_age=0)
        result = diag.diagnose()
        assert [(i.code, i.severity) for i in result.issues] == [("stuck_lock", "high")]
        assert f"pid {pid}" in result.issues[0].message and "deploy-42" in result.issues[0].message
        assert result.summary.lock is not None and result.summary.lock.pid == pid
        cleaner = Cleaner(diag)
        plan = cleaner.plan(locks=True, failed=False, duplicates=False)
        assert [(a.kind, a.target, a.needs_force) for a in plan.actions] == [("end_lock_holder", str(pid), True)]
        unforced = cleaner.apply(plan, force=False)
        assert unforced.done == [] and unforced.skipped[0][1] == "needs --force"
        assert pid_alive(database_url, pid)
        forced = cleaner.apply(plan, force=True)
        assert [a.kind for a in forced.done] == ["end_lock_holder"]
        assert not pid_alive(database_url, pid)
        assert diag.diagnose().issues == []
        assert audit_actions(database_url) == [("clean", "end_lock_holder", None)]
    finally:
        holder.close()


def test_stuck_lock_shows_what_the_holder_waits_on(project, database_url):
    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # open transaction holding the table
    holder = psycopg.connect(database_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
    waiting = threading.Thread(target=lambda: _swallow(holder, "SELECT count(*) FROM t"), daemon=True)
    waiting.start()
    try:
        diag = MigrationDiagnostics(database_url, project, lock_age=0)
        deadline = time.monotonic() + 20
        while True:
            issues = diag.diagnose().issues
            lines = "\n".join(issues[0].evidence) if issues else ""
            if f"waits on pid {blocker.info.backend_pid}" in lines or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [i.code for i in issues] == ["stuck_lock"]
        assert f"pg_blocking_pids: waits on pid {blocker.info.backend_pid}" in lines
        assert "LOCK TABLE t" in lines  # what the blocker is doing
    finally:
        blocker.rollback()
        waiting.join(10)
        blocker.close()
        holder.close()


def _swallow(conn: psycopg.Connection, query: str) -> None:
    with contextlib.suppress(psycopg.Error):
        conn.execute(query)


def test_clean_failed_deletes_the_leftover_row_then_repair_drops_the_invalid_index(tmp_path, database_url):
    files = {"001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);\n",
             "001_t.rollback.sql": "DROP TABLE t;\n",
             "002_u.sql": "-- poststack:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n",
             "002_u.rollback.sql": "DROP INDEX t_v_key;\n"}
    directory = write(tmp_path / "m", files)
    with pytest.raises(MigrationFailed):
        MigrationRunner(database_url, directory).migrate()
    diag = MigrationDiagnostics(database_url, directory)
    cleaner = Cleaner(diag)
    plan = cleaner.plan(locks=False, failed=True, duplicates=False)
    assert [(a.kind, a.version) for a in plan.actions] == [("delete_failed_row", 2)]
    done = cleaner.apply(plan, force=False)
    assert [a.kind for a in done.done] == ["delete_failed_row"]
    assert audit_actions(database_url) == [("clean", "delete_failed_row", 2)]
    result = diag.diagnose()  # the row is gone; the INVALID index of pending 002 still blocks it
    assert [(i.code, i.version, i.auto_fixable) for i in result.issues] == [("invalid_index", 2, True)]
    fixed = diag.repair(result.issues, force=True)
    assert [a.action for a in fixed.fixed] == ["drop_invalid_index"]
    assert diag.diagnose().issues == []


def test_clean_duplicates_in_the_legacy_history_keeps_the_earliest_row(tmp_path, database_url):
    """An existing database adopted from the seed's tool: its history table predates poststack."""
    project = write(tmp_path / "m", FILES)
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE public.schema_migrations (version varchar(50), description text, "
                     "applied_at timestamptz, execution_time_ms int, checksum text, applied_by text)")
        conn.execute("INSERT INTO public.schema_migrations VALUES "
                     "('001', 'first', '2024-01-01', 5, 'aaa', 'ci'), ('001', 'again', '2024-02-01', 6, 'aaa', 'ci'),"
                     "('002', 'second', '2024-01-02', 5, 'bbb', 'ci')")
    MigrationRunner(database_url, project).migrate()
    diag = MigrationDiagnostics(database_url, project)
    result = diag.diagnose()
    assert [(i.code, i.version, i.fix) for i in result.issues] == [
        ("duplicate_version", 1, "poststack db clean --duplicates")]
    cleaner = Cleaner(diag)
    plan = cleaner.plan(locks=False, failed=False, duplicates=True)
    assert [(a.kind, a.version) for a in plan.actions] == [("delete_duplicate_row", 1)]
    assert '"again"' in plan.actions[0].details[0]
    cleaner.apply(plan, force=False)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version, description FROM public.schema_migrations ORDER BY 1").fetchall()
    assert rows == [("001", "first"), ("002", "second")]
    assert audit_actions(database_url) == [("clean", "delete_duplicate_row", 1)]
    assert diag.diagnose().issues == []
