"""kill -9 of the real ``poststack`` process at random points of migrate, rollback, recover and repair.

Each trial starts from a random state on a fresh database, starts the command, waits until its first
backend shows in pg_stat_activity, sleeps a random fraction of the command's calibrated run time and sends
SIGKILL. The migrations make those points meaningful: transactional ones sleep a few ms between statements
(the kill lands inside the transaction), non-transactional ones build several indexes CONCURRENTLY on a
20,000-row table (the kill lands between them, or while one is built).

After the kill, once the orphaned backend has finished whatever it was doing:

- every transactional migration is recorded exactly when its objects exist;
- diagnose reports every non-transactional leftover, and nothing a crash cannot explain;
- the documented way back (repair --force, the manual undo repair asks for on mixed evidence, migrate)
  ends with a clean diagnose and the very schema a crash-free run builds.

The seed is printed; rerun one with POSTSTACK_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from reliability_support import (
    apply_untracked,
    history,
    observe,
    poststack_backends,
    settle,
    spawn,
    transactional_disagreements,
    unreported_leftovers,
    wait_until_gone,
)

from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing import DatabaseFactory, write_migrations

pytestmark = [pytest.mark.integration, pytest.mark.database]

NOTX = "-- poststack:no-transaction\n"
FILES = {
    "001_accounts.sql": "CREATE TABLE accounts (id int PRIMARY KEY, v int NOT NULL);\n"
                        "INSERT INTO accounts SELECT g, g % 97 FROM generate_series(1, 20000) g;\n",
    "001_accounts.rollback.sql": "DROP TABLE accounts;\n",
    "002_orders.sql": "CREATE TABLE orders (id int, account int);\nSELECT pg_sleep(0.01);\n"
                      "CREATE INDEX orders_account_idx ON orders (account);\nSELECT pg_sleep(0.01);\n"
                      "CREATE VIEW recent_orders AS SELECT id FROM orders;\n",
    "002_orders.rollback.sql": "DROP VIEW recent_orders;\nSELECT pg_sleep(0.01);\nDROP TABLE orders;\n",
    "003_account_indexes.sql": NOTX + "CREATE INDEX CONCURRENTLY accounts_v_idx ON accounts (v);\n"
                               "CREATE INDEX CONCURRENTLY accounts_v_id_idx ON accounts (v, id);\n"
                               "CREATE INDEX CONCURRENTLY accounts_id_v_idx ON accounts (id, v);\n",
    "003_account_indexes.rollback.sql": NOTX + "DROP INDEX CONCURRENTLY accounts_id_v_idx;\n"
                                        "DROP INDEX CONCURRENTLY accounts_v_id_idx;\n"
                                        "DROP INDEX CONCURRENTLY accounts_v_idx;\n",
    "004_audit.sql": "CREATE TABLE audit (at timestamptz DEFAULT now(), what text);\nSELECT pg_sleep(0.01);\n"
                     "ALTER TABLE accounts ADD COLUMN note text;\n"
                     "CREATE FUNCTION account_count() RETURNS bigint\n"
                     "    LANGUAGE sql AS 'SELECT count(*) FROM accounts';\n",
    "004_audit.rollback.sql": "DROP FUNCTION account_count();\nALTER TABLE accounts DROP COLUMN note;\n"
                              "SELECT pg_sleep(0.01);\nDROP TABLE audit;\n",
    "005_note_indexes.sql": NOTX + "CREATE INDEX CONCURRENTLY accounts_note_idx ON accounts (note);\n"
                            "CREATE INDEX CONCURRENTLY accounts_v_note_idx ON accounts (v, note);\n",
    "005_note_indexes.rollback.sql": NOTX + "DROP INDEX CONCURRENTLY accounts_v_note_idx;\n"
                                     "DROP INDEX CONCURRENTLY accounts_note_idx;\n",
    "006_summary.sql": "CREATE MATERIALIZED VIEW account_summary AS SELECT v, count(*) AS n FROM accounts GROUP BY v;\n"
                       "SELECT pg_sleep(0.01);\nCREATE UNIQUE INDEX account_summary_v_idx ON account_summary (v);\n",
    "006_summary.rollback.sql": "DROP MATERIALIZED VIEW account_summary;\n",
}
VERSIONS = [1, 2, 3, 4, 5, 6]
NO_TRANSACTION = {3: 3, 5: 2}  # version -> number of statements
OPERATIONS = ("migrate", "rollback", "recover", "repair")
# What a kill may leave for diagnose to report, by operation; anything else is a false alarm or worse.
EXPLAINABLE = {
    "migrate": {"failed_migration", "invalid_index"},
    "rollback": {"failed_migration", "invalid_index"},
    # schema_drift: 004 applied by hand adds a column (and a function) to what 001 built; diagnose counts
    # those as drift besides missing_tracking (only an unrecorded migration's relations are discounted).
    "recover": {"missing_tracking", "schema_drift"},
    "repair": {"failed_migration", "invalid_index", "cosmetic_change", "checksum_mismatch"},
}


@dataclass
class Trial:
    """One kill: the state it started from, the command, and where the kill landed."""

    number: int
    operation: str
    command: list[str]
    setup: str
    untracked: frozenset[int] = frozenset()
    # Kill shortly after this non-transactional migration's row shows this progress (None: 'running')
    # rather than at a random time: there the interesting states are, and they are a small part of a run.
    trigger: tuple[int, int | None] | None = None
    killed_running: bool = False
    delay: float = 0.0

    def __str__(self) -> str:
        after = "" if self.trigger is None else (
            f" after {self.trigger[0]:03d} showed " + (f"{self.trigger[1]} statement(s) done"
                                                       if self.trigger[1] is not None else "'running'"))
        when = (f"killed {self.delay * 1000:.0f} ms{after}" if self.killed_running
                else f"exited before the kill at {self.delay * 1000:.0f} ms{after}")
        return f"trial {self.number}: {self.setup}; poststack {' '.join(self.command)}: {when}"


class CrashLab:
    """Fresh databases and directories per trial, kill windows learned from real runs, the checks after a kill."""

    def __init__(self, databases: DatabaseFactory, workdir: Path, rng: random.Random, *,
                 progress_kills: float = 0.5) -> None:
        self.databases = databases
        self.workdir = workdir
        self.rng = rng
        self.progress_kills = progress_kills  # share of migrate/rollback trials killed at a progress point
        self.pristine = write_migrations(workdir / "pristine", FILES)
        self.reference, full_run = self._reference()
        # How long each command works once connected: first the full migrate of the reference run, then
        # the run time of any trial that finished before its kill (so later kills land inside the run).
        self.windows = dict.fromkeys(OPERATIONS, full_run)

    def _reference(self) -> tuple[Snapshot, float]:
        """The schema a crash-free ``poststack db migrate`` builds, and how long it worked."""
        with self.databases.scratch("crashref") as url:
            proc = spawn(url, self.pristine, "db", "migrate")
            started = wait_for_first_backend(url, proc)
            assert proc.wait() == 0, proc.communicate()
            elapsed = time.monotonic() - started
            with observe(url) as conn:
                return snapshot(conn, exclude_schemas=("poststack",)), elapsed

    # -- one trial --------------------------------------------------------------------------------------
    def prepare(self, number: int, operation: str, url: str, directory: Path) -> Trial:
        """Bring the database into a random starting state for ``operation``; return the trial to run."""
        runner = MigrationRunner(url, directory)
        rng = self.rng
        if operation == "migrate":
            start = rng.choice([0, *VERSIONS[:-1]])
            if start:
                runner.migrate(start)
            trial = Trial(number, operation, ["db", "migrate"], f"migrated to {start}")
            candidates = [v for v in NO_TRANSACTION if v > start]
            if candidates and rng.random() < self.progress_kills:
                version = rng.choice(candidates)
                trial.trigger = (version, rng.randrange(NO_TRANSACTION[version]))
            return trial
        if operation == "rollback":
            start = rng.choice(VERSIONS[1:])
            target = rng.choice([0, *[v for v in VERSIONS if v < start]])
            runner.migrate(start)
            trial = Trial(number, operation, ["db", "rollback", str(target), "--confirm"],
                          f"migrated to {start}, rolling back to {target}")
            candidates = [v for v in NO_TRANSACTION if target < v <= start]
            if candidates and rng.random() < self.progress_kills:
                trial.trigger = (rng.choice(candidates), None)
            return trial
        if operation == "recover":
            tracked = rng.choice([0, *VERSIONS[:-1]])
            end = rng.choice([v for v in VERSIONS if v > tracked])
            if tracked:
                runner.migrate(tracked)
            migrations = load_migrations(directory).by_version()
            untracked = frozenset(range(tracked + 1, end + 1))
            for version in sorted(untracked):
                apply_untracked(url, migrations[version])
            return Trial(number, operation, ["db", "recover"], f"migrated to {tracked}, applied "
                         f"{sorted(untracked)} by hand", untracked)
        # repair: a concurrent index build ended by the server, a cosmetic edit and a real one
        runner.migrate(2)
        crash_first_concurrent_index(url, directory)
        edited = rng.sample([1, 2], 2)
        edit(directory, edited[0], "-- reviewed by the DBA team\n")
        edit(directory, edited[1], "SELECT 1;\n")
        return Trial(number, operation, ["db", "repair", "--force"],
                     f"003 crashed on its first index, {edited[0]:03d} edited cosmetically, "
                     f"{edited[1]:03d} changed in meaning")

    def kill_at_random(self, trial: Trial, url: str, directory: Path) -> None:
        proc = spawn(url, directory, *trial.command)
        if trial.trigger is not None:
            started = wait_for_progress(url, proc, *trial.trigger)
            trial.delay = self.rng.uniform(0, 0.05)
        else:
            started = wait_for_first_backend(url, proc)
            trial.delay = self.rng.uniform(0, self.windows[trial.operation])
        try:
            code = proc.wait(timeout=max(trial.delay - (time.monotonic() - started), 0))
        except subprocess.TimeoutExpired:
            trial.killed_running = True
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.communicate()
            return
        if trial.trigger is None:
            self.windows[trial.operation] = max(time.monotonic() - started, 0.01)
        _, stderr = proc.communicate()
        assert code == 0, f"{trial}: the command failed on its own:\n{stderr}"

    def check(self, trial: Trial, url: str, directory: Path) -> list[str]:
        """The invariants after the kill; returns the way back that was taken (for the statistics)."""
        wait_until_gone(url)
        assert transactional_disagreements(url, directory, untracked=trial.untracked) == [], trial
        diagnosis = MigrationDiagnostics(url, directory).diagnose()
        assert unreported_leftovers(url, directory, diagnosis) == [], (trial, diagnosis.issues)
        surprising = [(i.code, i.version, i.message) for i in diagnosis.issues
                      if i.code not in EXPLAINABLE[trial.operation]]
        assert surprising == [], trial
        way_back = settle(url, directory)
        assert transactional_disagreements(url, directory) == [], trial
        assert [(r.version, r.status) for r in history(url)] == [(v, "applied") for v in VERSIONS], trial
        with observe(url) as conn:
            assert snapshot(conn, exclude_schemas=("poststack",)) == self.reference, trial
        return way_back.steps

    def run(self, number: int, operation: str) -> tuple[Trial, list[str]]:
        directory = self.workdir / f"trial{number}"
        shutil.copytree(self.pristine, directory)
        with self.databases.scratch("crash") as url:
            trial = self.prepare(number, operation, url, directory)
            self.kill_at_random(trial, url, directory)
            print(trial)
            steps = self.check(trial, url, directory)
            print("   way back:", "; ".join(steps))
        shutil.rmtree(directory)
        return trial, steps


def edit(directory: Path, version: int, text: str) -> None:
    """Append to a migration file (not its rollback)."""
    [path] = [p for p in directory.glob(f"{version:03d}_*.sql") if not p.name.endswith(".rollback.sql")]
    path.write_text(path.read_text() + text)


def wait_for_first_backend(url: str, proc: subprocess.Popen[str]) -> float:
    """The moment the command's first backend is seen (or it exited): where its database work begins."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with observe(url) as conn:
        while proc.poll() is None and not poststack_backends(conn, dbname):
            time.sleep(0.001)
    return time.monotonic()


def wait_for_progress(url: str, proc: subprocess.Popen[str], version: int, done: int | None) -> float:
    """The moment ``version``'s history row is 'running' with at least ``done`` statements done (or exit)."""
    query = ("SELECT 1 FROM poststack.migrations WHERE version = %s AND status = 'running' "
             "AND coalesce(statements_done, 0) >= %s")
    with observe(url) as conn:
        while proc.poll() is None:
            if conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is not None \
                    and conn.execute(query, [version, done or 0]).fetchone():
                break
            time.sleep(0.001)
    return time.monotonic()


def crash_first_concurrent_index(url: str, directory: Path) -> None:
    """003 killed for real while its first CREATE INDEX CONCURRENTLY waits: a 'running' row and an INVALID index."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with observe(url) as watcher, observe(url) as writer:
        writer.execute("BEGIN")
        writer.execute("UPDATE accounts SET v = v WHERE id = 1")  # CREATE INDEX CONCURRENTLY waits for writers
        proc = spawn(url, directory, "db", "migrate", "--target", "3")
        while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'poststack%%' "
                "AND query LIKE 'CREATE INDEX CONCURRENTLY accounts_v_idx%%' AND wait_event_type = 'Lock'",
                [dbname]).fetchone():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.communicate()
        watcher.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND application_name LIKE 'poststack%%'", [dbname])
        writer.execute("ROLLBACK")
    wait_until_gone(url)


def seed() -> int:
    value = int(os.environ.get("POSTSTACK_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"crash trials: seed {value} (rerun with POSTSTACK_CRASH_SEED={value})")
    return value


def test_kills_at_random_points_leave_a_consistent_recoverable_state(tmp_path, poststack_databases):
    """One trial per command; migrate and rollback killed amid non-transactional work where there is some."""
    lab = CrashLab(poststack_databases, tmp_path, random.Random(seed()), progress_kills=1.0)
    results = [lab.run(number, operation) for number, operation in enumerate(OPERATIONS, start=1)]
    print(f"{sum(trial.killed_running for trial, _ in results)} of {len(results)} kills hit a running process")


@pytest.mark.slow
def test_fifty_kills_at_random_points(tmp_path, poststack_databases):
    lab = CrashLab(poststack_databases, tmp_path, random.Random(seed()))
    results = [lab.run(number, OPERATIONS[number % 4]) for number in range(1, 53)]
    live = [trial for trial, _ in results if trial.killed_running]
    ways = Counter(" ".join(step.split()[:2]) for _, steps in results for step in steps
                   if not step.startswith("migrate"))
    print(f"{len(live)} of {len(results)} kills hit a running process; way back: {dict(ways)}")
    assert len(live) >= len(results) // 3, "kill points are not meaningful: most kills came after the end"
    assert ways["repair retry"] + ways["repair mark_applied"] + ways["manual undo"] >= 1, ways
