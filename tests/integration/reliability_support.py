"""Shared machinery of the reliability tests: real poststack processes, their backends, and the invariants.

The invariants are the promises a user relies on after anything went wrong:

- a transactional migration is recorded exactly when its objects exist (``transactional_disagreements``);
- whatever a non-transactional run left half done, ``diagnose`` names it (``unreported_leftovers``);
- the documented way back (diagnose, repair, the manual undo repair asks for, migrate) ends clean (``settle``).

They are checked from the outside: the history table, pg_catalog (through
``poststack.catalog.object_evidence.assess``, which diagnose and recover use too) and pg_stat_activity,
never from poststack's own idea of what it did.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row

from poststack.catalog.object_evidence import ABSENT, PRESENT, UNCHECKABLE, assess
from poststack.errors import PoststackError
from poststack.migration_diagnostics import DiagnosisResult, MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.source.files import Migration, load_migrations
from poststack.source.objects import extract
from poststack.source.sqltext import split_statements
from poststack.testing.cli_runner import executable

OBSERVER = "reliability-observer"  # application_name of the tests' own connections: never 'poststack...'
# Hang guard for polling loops only (a backend that never exits is a hang to report, not a slow run).
HANG_GUARD_SECONDS = 300.0

# Everything that describes *what* was applied; when, by whom and how fast legitimately differ between runs.
HISTORY_COLUMNS = ("version", "version_text", "name", "checksum", "semantic_checksum", "rollback_checksum",
                   "sql", "rollback_sql", "no_transaction", "status", "statements_done", "source", "error")


def observe(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection that pg_stat_activity does not mistake for poststack."""
    return psycopg.connect(url, autocommit=True, application_name=OBSERVER)


def spawn(url: str, migrations: Path, *args: str) -> subprocess.Popen[str]:
    """Start the real ``poststack`` executable (the console script), output captured.

    SIGINT is set back to its default in the child, as on a terminal: a suite started as a background job
    (``pytest &`` in a script) runs with SIGINT ignored, the children inherit that, and a Ctrl-C test would
    wait on a process that can never hear it.
    """
    argv = [*executable(), "--database-url", url, "--migrations-path", str(migrations), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def history(url: str, schema: str = "poststack") -> list[Any]:
    """The history rows as named tuples of HISTORY_COLUMNS, by version ([] when there is no history yet)."""
    with observe(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", [f"{schema}.migrations"]).fetchone()[0] is None:
            return []
        query = sql.SQL("SELECT {} FROM {}.migrations ORDER BY version").format(
            sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS)), sql.Identifier(schema))
        with conn.cursor(row_factory=namedtuple_row) as cur:
            return cur.execute(query).fetchall()


def poststack_backends(conn: psycopg.Connection[Any], dbname: str) -> list[tuple[int, str, str]]:
    """(pid, state, query) of every poststack backend on the database."""
    return conn.execute(
        "SELECT pid, coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity "
        "WHERE datname = %s AND application_name LIKE 'poststack%%' AND pid <> pg_backend_pid()",
        [dbname]).fetchall()


def wait_until_gone(url: str) -> None:
    """Wait until no poststack backend is left on the database of ``url``.

    After a client is killed its backend goes on: it finishes the statement it runs (perhaps a COMMIT) and
    only notices the closed socket when it reads the next command. Judging the state before that would
    judge a moving target.
    """
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    with observe(url) as conn:
        while left := poststack_backends(conn, dbname):
            assert time.monotonic() < deadline, f"hang: poststack backends never exited: {left}"
            time.sleep(0.005)


def apply_untracked(url: str, migration: Migration) -> None:
    """Run a migration's SQL the way a DBA would by hand: no history row, no lock."""
    with observe(url) as conn:
        if migration.no_transaction:
            for statement in split_statements(migration.sql):
                conn.execute(statement.text.encode())
        else:
            with conn.transaction():
                conn.execute(migration.sql.encode())


def transactional_disagreements(url: str, migrations_path: Path, untracked: Collection[int] = ()) -> list[str]:
    """Transactional migrations whose history row and catalog objects disagree (each as a sentence).

    Recorded (any status) or applied by hand (``untracked``) -> every object it leaves must be there;
    otherwise none may be. ``uncheckable`` is accepted only for a migration without any catalog object.
    """
    migrations = list(load_migrations(migrations_path))
    recorded = {row.version: row for row in history(url)}
    with observe(url) as conn:
        evidence = assess(conn, migrations, applied=[v for v, row in recorded.items() if row.status == "applied"])
    problems = []
    for m in migrations:
        if m.no_transaction:
            continue
        ev = evidence[m.version]
        expected = PRESENT if m.version in recorded or m.version in untracked else ABSENT
        if ev.status != expected and not (ev.status == UNCHECKABLE and not extract(m.sql).expectations):
            state = f"recorded as {recorded[m.version].status}" if m.version in recorded else "not recorded"
            problems.append(f"{m.filename}: {state}, but the catalog says {ev.status}: {ev.summary()}")
    return problems


def unreported_leftovers(url: str, migrations_path: Path, diagnosis: DiagnosisResult) -> list[str]:
    """Non-transactional leftovers that diagnose failed to report.

    Leftovers are: an unfinished (running/failed) history row, an INVALID index, and a migration without a
    row whose objects (partly) exist. Each must appear as failed_migration / invalid_index /
    missing_tracking or partially_applied.
    """
    reported = {(i.code, i.version) for i in diagnosis.issues}
    invalid_reported = {line for i in diagnosis.of("invalid_index") for line in i.evidence}
    missing = []
    rows = {row.version: row for row in history(url)}
    for version, row in rows.items():
        if row.status != "applied" and ("failed_migration", version) not in reported:
            missing.append(f"{row.status} row of {row.version_text} not reported as failed_migration")
    with observe(url) as conn:
        invalid = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid").fetchall()
        migrations = list(load_migrations(migrations_path))
        unrecorded = [m.version for m in migrations if m.version not in rows]
        evidence = assess(conn, migrations, only=unrecorded, applied=list(rows)) if unrecorded else {}
    for (name,) in invalid:
        if not any(name in line for line in invalid_reported):
            missing.append(f"invalid index {name} not reported as invalid_index")
    for version, ev in evidence.items():
        codes = {"present": "missing_tracking", "partial": "partially_applied"}
        if ev.status in codes and (codes[ev.status], version) not in reported:
            missing.append(f"unrecorded migration {version} is {ev.status} but not reported as {codes[ev.status]}")
    return missing


@dataclass
class Settled:
    """What it took to get back to a clean state: the steps, for the failure message and the statistics."""

    steps: list[str] = field(default_factory=list)

    @property
    def needed_manual_undo(self) -> bool:
        return any(s.startswith("manual undo") for s in self.steps)


def undo_by_hand(url: str, row_sql: str) -> list[str]:
    """What a DBA does when repair refuses mixed evidence: drop every index the crashed migration creates."""
    dropped = []
    with observe(url) as conn:
        for obj in extract(row_sql).created:
            if obj.kind == "index":
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                    sql.Identifier(obj.schema or "public"), sql.Identifier(obj.name)))
                dropped.append(obj.qualified)
    return dropped


def settle(url: str, migrations_path: Path, *, rounds: int = 4) -> Settled:
    """Follow the documented way back to a clean, fully migrated database; fail with the story if it is not.

    Round by round: repair --force what repair can decide (recover for missing_tracking, retry or mark for
    crashed runs); when repair refuses mixed evidence, undo by hand as its message says and let repair look
    again; then migrate, which must leave diagnose clean.
    """
    diag = MigrationDiagnostics(url, migrations_path)
    runner = MigrationRunner(url, migrations_path)
    done = Settled()
    for _ in range(rounds):
        found = diag.diagnose()
        if found.issues:
            result = diag.repair(found.issues, force=True)
            done.steps += [f"repair {a.action} {a.version}" for a in result.fixed]
            rows = {row.version: row for row in history(url)}
            undone = False
            for skipped in result.skipped:
                row = rows.get(skipped.version) if skipped.version is not None else None
                if row is not None and row.status != "applied" and "mixed result" in skipped.reason:
                    done.steps.append(f"manual undo of {row.version_text}: {undo_by_hand(url, row.sql)}")
                    undone = True
                elif skipped.code == "missing_tracking" and skipped.version is not None \
                        and "poststack db mark" in skipped.reason:
                    # Applied by hand, but its last statements change no schema: no state proves it ran to
                    # its end, so repair's recover (rightly) records nothing and passes on recover's advice
                    # to mark it if it did. The trial applied the whole file, so a person would mark it.
                    runner.mark(skipped.version)
                    done.steps.append(f"mark {skipped.version} ({skipped.reason})")
                    undone = True
                else:
                    done.steps.append(f"repair skipped {skipped.code} {skipped.version}: {skipped.reason}")
            if undone:
                continue
        try:
            migrated = runner.migrate()
        except PoststackError as exc:
            raise AssertionError("the way back failed:\n  " + "\n  ".join(done.steps) + f"\nmigrate: {exc}") from exc
        done.steps.append(f"migrate applied {[s.version for s in migrated.steps]}")
        final = diag.diagnose()
        if final.ok:
            return done
        done.steps.append(f"after migrate: {[(i.code, i.version) for i in final.issues]}")
    raise AssertionError("no way back to a clean state:\n  " + "\n  ".join(done.steps) + "\nfinal issues:\n  "
                         + "\n  ".join(f"{i.code} {i.version}: {i.message}" for i in diag.diagnose().issues))


def exit_summary(procs: Sequence[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process, after waiting for all of them."""
    return [(p.wait(), *p.communicate()) for p in procs]
