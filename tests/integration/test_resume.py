"""Non-transactional migrations and rollbacks are resumed by a plain migrate / rollback, after a failure, a
Ctrl-C or a kill -9, without hand SQL; a BEGIN ... COMMIT block inside them counts only when it committed."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from reliability_support import HANG_GUARD_SECONDS, history, observe, spawn, wait_until_gone

from poststack.testing.cli_runner import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

TABLE = {"001_t.sql": "CREATE TABLE t (a int, b int);\n"
                      "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;",
         "001_t.rollback.sql": "DROP TABLE t;"}
TWO_INDEXES = {**TABLE,
               "002_idx.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                              "CREATE UNIQUE INDEX CONCURRENTLY t_b ON t (b);",
               "002_idx.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY t_b;\n"
                                       "DROP INDEX CONCURRENTLY t_a;"}


def indexes(url: str) -> dict[str, bool]:
    """Index name -> valid, for the indexes on t."""
    with observe(url) as conn:
        return dict(conn.execute("SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                                 "WHERE indrelid = 't'::regclass").fetchall())


def events(url: str, version: int) -> list[tuple]:
    with observe(url) as conn:
        return conn.execute("SELECT direction, statement, event FROM poststack.statement_log "
                            "WHERE version = %s ORDER BY id", [version]).fetchall()


def test_a_failed_cic_migration_is_finished_by_a_plain_migrate(database_url, make_migrations) -> None:
    """The issue's example: the second index fails on duplicates; delete them; migrate finishes 002."""
    cli = CLITestRunner(database_url, make_migrations(TWO_INDEXES))
    assert cli.run_command("migrate", ["--target", "1"]).exit_code == 0
    with observe(database_url) as conn:
        conn.execute("UPDATE t SET b = 1 WHERE a <= 2")
    failed = cli.run_command("migrate")
    assert failed.exit_code == 5
    assert "002_idx.sql:3:" in failed.stderr and "resume from statement 2" in failed.stderr
    assert indexes(database_url) == {"t_a": True, "t_b": False}
    row = history(database_url)[-1]
    assert (row.status, row.statements_done) == ("failed", 1) and "t_b" in row.error
    diagnosis = CLITestRunner(database_url, cli.migrations_path).run_command("diagnose", ["--format", "json"])
    fixes = [i["fix"] for i in diagnosis.json["issues"] if i["code"] == "failed_migration"]
    assert fixes and fixes[0].startswith("poststack db migrate")

    with observe(database_url) as conn:
        conn.execute("DELETE FROM t WHERE a = 2")
    done = cli.run_command("migrate")
    assert done.exit_code == 0, done
    assert indexes(database_url) == {"t_a": True, "t_b": True}
    row = history(database_url)[-1]
    assert (row.status, row.statements_done, row.error) == ("applied", 2, None)
    assert events(database_url, 2) == [
        ("migrate", None, "started"), ("migrate", 1, "ran"), ("migrate", 2, "failed"),
        ("migrate", None, "resumed"), ("migrate", None, "skipped"), ("migrate", 2, "dropped_invalid"),
        ("migrate", 2, "ran"), ("migrate", None, "finished")]


def test_a_failed_no_transaction_rollback_is_finished_by_a_plain_rollback(database_url, make_migrations) -> None:
    files = {**TWO_INDEXES, "002_idx.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY t_b;\n"
                                                    "DROP INDEX CONCURRENTLY t_a_renamed;"}
    directory = make_migrations(files)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    failed = cli.run_command("rollback", ["1", "--confirm"])
    assert failed.exit_code == 5 and "t_a_renamed" in failed.stderr
    row = history(database_url)[-1]
    assert (row.status, row.statements_done) == ("failed", 1) and row.error.startswith("rollback failed:")
    assert cli.run_command("migrate").exit_code == 1  # migrate does not resume a rollback; it says how
    with observe(database_url) as conn:
        conn.execute("ALTER INDEX t_a RENAME TO t_a_renamed")
    done = cli.run_command("rollback", ["1", "--confirm"])
    assert done.exit_code == 0, done
    assert indexes(database_url) == {} and [r.version for r in history(database_url)] == [1]
    assert [e for e in events(database_url, 2) if e[0] == "rollback"][-3:] == [
        ("rollback", None, "skipped"), ("rollback", 2, "ran"), ("rollback", None, "finished")]


def test_a_failing_transaction_block_in_a_no_transaction_file_is_rolled_back_and_not_counted(
        database_url, make_migrations) -> None:
    files = {**TABLE, "002_block.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                                       "BEGIN;\nINSERT INTO t VALUES (-1, -1);\nINSERT INTO t VALUES ('x', 0);\n"
                                       "COMMIT;\nCREATE INDEX CONCURRENTLY t_b ON t (b);"}
    directory = make_migrations(files)
    cli = CLITestRunner(database_url, directory, subprocess=True)
    result = cli.run_command("migrate")
    assert result.exit_code == 5
    assert "error ignored" not in result.stderr and "Traceback" not in result.stderr
    assert "002_block.sql:5:" in result.stderr
    assert "1 of 6 statements had run" in result.stderr and "statements 2-4" in result.stderr
    assert "rolled back and did not run" in result.stderr
    row = history(database_url)[-1]
    assert (row.status, row.statements_done) == ("failed", 1) and "invalid input syntax" in row.error
    with observe(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE a = -1").fetchone() == (0,)
    with observe(database_url) as conn:  # make the failing insert pass: the column becomes text
        conn.execute("ALTER TABLE t ALTER a TYPE text")
    assert cli.run_command("migrate").exit_code == 0
    assert indexes(database_url) == {"t_a": True, "t_b": True}
    with observe(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE b IN (-1, 0)").fetchone() == (2,)


def test_ctrl_c_during_create_index_concurrently_says_what_it_left_and_migrate_resumes(
        database_url, make_migrations) -> None:
    directory = make_migrations(TWO_INDEXES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate", ["--target", "1"]).exit_code == 0
    with observe(database_url) as writer:
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (0, 0)")  # CIC waits for this writer once its entry exists
        proc = spawn(database_url, directory, "db", "migrate")
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while indexes(database_url).get("t_a") is not False:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
        writer.execute("COMMIT")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted during statement 1 of 2" in stderr and "left index public.t_a INVALID" in stderr
    assert "'failed' at statement 0 of 2" in stderr and "run poststack db migrate to resume" in stderr
    row = history(database_url)[-1]
    assert (row.status, row.statements_done) == ("failed", 0) and "interrupted (SIGINT)" in row.error
    assert cli.run_command("migrate").exit_code == 0
    assert indexes(database_url) == {"t_a": True, "t_b": True}
    assert history(database_url)[-1].status == "applied"


# -- kill -9 at random points ---------------------------------------------------------------------------------

def _timed(url: str, directory: Path, *args: str) -> float:
    start = time.monotonic()
    proc = spawn(url, directory, *args)
    _, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, err
    return time.monotonic() - start


def _kill_trials(url: str, directory: Path, trials: int, rng: random.Random) -> list[str]:
    """Kill migrate (then rollback) of 002 at random points; one more command must always finish it."""
    cli = CLITestRunner(url, directory, subprocess=True)
    span = {"migrate": _timed(url, directory, "db", "migrate"),
            "rollback": _timed(url, directory, "db", "rollback", "1", "--confirm")}
    outcomes = []
    for trial in range(trials):
        for command, args, want in (("migrate", (), {"t_a": True, "t_b": True}),
                                    ("rollback", ("1", "--confirm"), {})):
            delay = rng.uniform(0, span[command] * 1.1)
            proc = spawn(url, directory, "db", command, *args)
            time.sleep(delay)
            proc.kill()
            proc.communicate()
            wait_until_gone(url)
            again = cli.run_command(command, list(args))
            story = f"trial {trial}: {command} killed after {delay:.3f}s, then: {again.stderr.strip()}"
            assert again.exit_code == 0, story
            assert indexes(url) == want, story
            rows = history(url)
            expected = [(1, "applied", None), (2, "applied", 2)] if command == "migrate" else [(1, "applied", None)]
            assert [(r.version, r.status, r.statements_done) for r in rows] == expected, story
            outcomes.append(story)
    return outcomes


def test_kill_during_cic_migration_and_rollback_always_ends_clean_after_one_more_command(
        database_url, make_migrations) -> None:
    directory = make_migrations(TWO_INDEXES)
    assert CLITestRunner(database_url, directory).run_command("migrate", ["--target", "1"]).exit_code == 0
    _kill_trials(database_url, directory, 3, random.Random(10))


@pytest.mark.slow
def test_kill_during_cic_migration_and_rollback_thirty_trials_each(database_url, make_migrations) -> None:
    directory = make_migrations({**TWO_INDEXES, "001_t.sql": "CREATE TABLE t (a int, b int);\n"
                                 "INSERT INTO t SELECT g, g FROM generate_series(1, 200000) g;"})
    assert CLITestRunner(database_url, directory).run_command("migrate", ["--target", "1"]).exit_code == 0
    _kill_trials(database_url, directory, 30, random.Random(30))
