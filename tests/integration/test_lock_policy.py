"""--statement-lock-timeout / --lock-retries: a migration queued behind another session's lock gives up quickly,
retries with backoff naming the blocker, and exits 4 when the retries run out, leaving nothing half-done."""

from __future__ import annotations

import threading

import psycopg
import pytest
from reliability_support import history, observe

from poststack.config import lock_policy_values
from poststack.errors import UsageError
from poststack.testing.cli_runner import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {"001_t.sql": "CREATE TABLE t (a int);", "002_alter.sql": "ALTER TABLE t ADD COLUMN c int;"}
BLOCKER = "pst-blocker"


def blocker(url: str) -> psycopg.Connection:
    """A session that reads t in an open transaction: ALTER TABLE t must wait for it."""
    conn = psycopg.connect(url, application_name=BLOCKER)
    conn.execute("SELECT * FROM t")
    return conn


def test_retries_run_out_with_exit_4_naming_the_blocking_session(database_url, make_migrations) -> None:
    cli = CLITestRunner(database_url, make_migrations(FILES))
    assert cli.run_command("migrate", ["--target", "1"]).exit_code == 0
    with blocker(database_url) as holder:
        result = cli.run_command("migrate", ["--statement-lock-timeout", "0.2", "--lock-retries", "2"])
        pid = holder.info.backend_pid
    assert result.exit_code == 4, result
    assert result.stderr.count("retrying in") == 2
    assert f"blocked by pid {pid} ({BLOCKER}), state 'idle in transaction', query 'SELECT * FROM t'" in result.stderr
    assert "002_alter.sql:1: migration 002" in result.stderr and "in 3 attempt(s)" in result.stderr
    assert [(r.version, r.status) for r in history(database_url)] == [(1, "applied")]


def test_a_retry_succeeds_once_the_blocker_is_gone(database_url, make_migrations, monkeypatch) -> None:
    cli = CLITestRunner(database_url, make_migrations(FILES))
    assert cli.run_command("migrate", ["--target", "1"]).exit_code == 0
    monkeypatch.setenv("POSTSTACK_STATEMENT_LOCK_TIMEOUT", "0.2")
    monkeypatch.setenv("POSTSTACK_LOCK_RETRIES", "8")
    holder = blocker(database_url)
    pid = holder.info.backend_pid
    release = threading.Timer(1.0, holder.close)
    release.start()
    try:
        result = cli.run_command("migrate")
    finally:
        release.join()
    assert result.exit_code == 0, result
    assert "lock timeout (0.2s)" in result.stderr and f"pid {pid}" in result.stderr
    assert [(r.version, r.status) for r in history(database_url)] == [(1, "applied"), (2, "applied")]


def test_a_no_transaction_statement_retries_alone_and_migrate_resumes_it_later(database_url, make_migrations) -> None:
    files = {**FILES, "002_alter.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);"}
    cli = CLITestRunner(database_url, make_migrations(files))
    assert cli.run_command("migrate", ["--target", "1"]).exit_code == 0
    with psycopg.connect(database_url, application_name=BLOCKER) as writer:
        writer.execute("INSERT INTO t VALUES (1)")  # an open writer: the index build waits for it
        result = cli.run_command("migrate", ["--statement-lock-timeout", "0.3", "--lock-retries", "1"])
        assert result.exit_code == 4, result
        assert result.stderr.count("retrying in") == 1 and BLOCKER in result.stderr
        assert "left index public.t_a INVALID" in result.stderr and "to resume" in result.stderr
    row = history(database_url)[-1]
    assert (row.version, row.status, row.statements_done) == (2, "failed", 0)
    assert cli.run_command("migrate").exit_code == 0  # the blocker is gone: migrate resumes and builds it
    with observe(database_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass").fetchone() == (
            True,)


@pytest.mark.parametrize(("timeout", "retries"), [("0", None), ("-1", None), ("nan", None), ("x", None),
                                                 (None, "-1"), (None, "two")])
def test_bad_lock_policy_values_are_usage_errors(timeout, retries) -> None:
    with pytest.raises(UsageError):
        lock_policy_values(timeout, retries)
