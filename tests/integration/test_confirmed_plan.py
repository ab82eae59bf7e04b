"""What rollback runs is what was confirmed (issue 10, item 4), with a real concurrent deployer.

The plan is made and confirmed under the migration lock: a deployer that starts applying 004 while the
prompt is open waits for the lock, so the rollback undoes exactly the versions the prompt named and the
deployer's migration is never rolled back. A plan confirmed earlier (``expected``) that no longer holds is
refused, with both plans shown.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from poststack.errors import PlanChanged
from poststack.schema_migration import MigrationRunner, RollbackResult
from poststack.testing.cli_runner import executable

pytestmark = [pytest.mark.integration]

FILES = {
    "001_a.sql": "CREATE TABLE a (id int);\n", "001_a.rollback.sql": "DROP TABLE a;\n",
    "002_b.sql": "CREATE TABLE b (id int);\n", "002_b.rollback.sql": "DROP TABLE b;\n",
    "003_c.sql": "CREATE TABLE c (id int);\n", "003_c.rollback.sql": "DROP TABLE c;\n",
}
LATE = {"004_d.sql": "CREATE TABLE d (id int);\nINSERT INTO d VALUES (42);\n", "004_d.rollback.sql": "DROP TABLE d;\n"}
OBSERVER = "confirmed-plan-observer"


def versions(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM poststack.migrations ORDER BY version")]


def spawn_deployer(url: str, directory: Path) -> subprocess.Popen[str]:
    argv = [*executable(), "--database-url", url, "--migrations-path", str(directory), "--lock-timeout", "120",
            "db", "migrate", "--target", "004"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True)


def wait_until_polling_the_lock(url: str, deployer: subprocess.Popen[str]) -> None:
    """Until the deployer's backend has asked for the migration lock (and, being refused, polls)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True, application_name=OBSERVER) as conn:
        while time.monotonic() < deadline:
            assert deployer.poll() is None, deployer.communicate()
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND query LIKE 'SELECT pg_try_advisory_lock%%' AND application_name <> %s "
                               "AND pid <> ALL(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
                               [OBSERVER]).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the deployer never asked for the lock")


@pytest.fixture
def at_003(make_migrations, database_url) -> Path:
    directory = make_migrations(FILES)
    MigrationRunner(database_url, directory).migrate()
    for name, text in LATE.items():  # 004 arrives with the next deploy
        (directory / name).write_text(text)
    return directory


def test_a_deployer_applying_004_during_the_prompt_waits_and_004_is_never_rolled_back(at_003, database_url):
    deployer: list[subprocess.Popen[str]] = []
    shown: list[list[int]] = []

    def confirm(plan: RollbackResult) -> bool:
        shown.append(plan.planned_versions)
        deployer.append(spawn_deployer(database_url, at_003))
        wait_until_polling_the_lock(database_url, deployer[0])
        return True

    result = MigrationRunner(database_url, at_003).rollback(1, confirm=confirm)
    assert shown == [[3, 2]] and [s.version for s in result.steps] == [3, 2]
    out, err = deployer[0].communicate(timeout=120)
    assert deployer[0].returncode == 0, (out, err)
    assert versions(database_url) == [1, 2, 3, 4]  # the deployer went on after the rollback, from 001
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT id FROM d").fetchall() == [(42,)]


def test_a_plan_confirmed_before_the_history_moved_is_refused_showing_both(at_003, database_url):
    runner = MigrationRunner(database_url, at_003)
    shown = runner.rollback(1, dry_run=True)
    assert shown.planned_versions == [3, 2]
    deployer = spawn_deployer(database_url, at_003)  # another deploy lands between the prompt and the run
    assert deployer.wait(timeout=120) == 0
    with pytest.raises(PlanChanged) as caught:
        runner.rollback(1, expected=shown.planned_versions)
    assert caught.value.details == ("confirmed: 003, 002", "now, under the lock: 004, 003, 002")
    assert versions(database_url) == [1, 2, 3, 4]


def test_on_a_terminal_the_prompt_is_answered_under_the_lock(at_003, database_url):
    argv = [*executable(), "--database-url", database_url, "--migrations-path", str(at_003), "db", "rollback", "1"]
    main, terminal = pty.openpty()
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output, deployer = b"", None
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    output += os.read(main, 4096)
                except OSError:
                    break
            if deployer is None and b"[y/N]" in output:
                deployer = spawn_deployer(database_url, at_003)
                wait_until_polling_the_lock(database_url, deployer)
                os.write(main, b"y\n")
        code = proc.wait(timeout=60)
    finally:
        os.close(main)
    text = output.decode(errors="replace")
    assert deployer is not None and "roll back 2 migration(s) (003, 002)?" in text, text
    assert code == 0 and "Rolled back 2 migration(s): 003 -> 001" in text, text
    assert deployer.wait(timeout=120) == 0, deployer.communicate()
    assert versions(database_url) == [1, 2, 3, 4]


FAILING_CIC = {"001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);\n",
               "002_u.sql": "-- poststack:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n"}


def test_clean_does_not_delete_a_failed_row_written_after_the_plan_was_shown(make_migrations, database_url):
    from poststack.errors import MigrationFailed
    from poststack.integrity.cleaning import Cleaner
    from poststack.migration_diagnostics import MigrationDiagnostics

    directory = make_migrations(FAILING_CIC)
    with pytest.raises(MigrationFailed):
        MigrationRunner(database_url, directory).migrate()
    cleaner = Cleaner(MigrationDiagnostics(database_url, directory))
    plan = cleaner.plan(locks=False, failed=True, duplicates=False)
    assert [a.version for a in plan.actions] == [2]
    with psycopg.connect(database_url, autocommit=True) as conn:  # another run failed on 002 meanwhile
        conn.execute("UPDATE poststack.migrations SET applied_at = applied_at + interval '1 minute' "
                     "WHERE version = 2")
    result = cleaner.apply(plan, force=False)
    assert result.done == [] and "changed since it was shown" in result.skipped[0][1]
    assert versions(database_url) == [1, 2]
