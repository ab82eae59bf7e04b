"""MigrationDiagnostics: gather the facts once, derive every issue from them, and repair what is safe.

Facts come from the files, the history, the lock and pg_catalog, read on one connection in a handful of
set-based queries (never one query per migration or per object), so diagnose stays within a small factor of
``migration-status`` however long the history grows. The decisions live in ``poststack.integrity.issues`` (pure) and
the fixes in ``poststack.integrity.repair``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg
from psycopg import IsolationLevel

from poststack.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_SCHEMA, validate_schema_name
from poststack.db.connection import connect, mask_url
from poststack.db.history import History, HistoryRow
from poststack.db.lock import LockHolder, lock_holder
from poststack.engine.plan import MigrationState, compare
from poststack.errors import UsageError
from poststack.integrity import issues as checks
from poststack.integrity.issues import ISSUE_CODES, SEVERITIES, Issue, severity_rank
from poststack.source.files import MigrationSet, load_migrations

DEFAULT_LOCK_AGE = 300.0

__all__ = ["DEFAULT_LOCK_AGE", "DiagnosisResult", "DiagnosisSummary", "Issue", "MigrationDiagnostics"]


@dataclass(frozen=True)
class DiagnosisSummary:
    """The state of the database diagnose looked at (part of the stable JSON output)."""

    database: str  # masked URL
    history_schema: str
    history_exists: bool
    current_version: str | None
    files: int
    applied: int
    pending: int
    unfinished: int
    lock: LockHolder | None
    lock_held_seconds: float | None
    checks_skipped: list[str] = field(default_factory=list)
    issues_found: dict[str, int] = field(default_factory=dict)  # by severity, before any filter
    skipped_reasons: dict[str, str] = field(default_factory=dict)  # check code -> why it could not be made


@dataclass(frozen=True)
class DiagnosisResult:
    summary: DiagnosisSummary
    issues: list[Issue]

    def filtered(self, severity: str = "info", codes: Iterable[str] | None = None) -> DiagnosisResult:
        """Only issues at or above ``severity`` and, when given, of the listed codes."""
        if severity not in SEVERITIES:
            raise UsageError(f"--severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
        wanted = set(codes or ())
        unknown = wanted - set(ISSUE_CODES)
        if unknown:
            raise UsageError(f"--type: unknown issue code(s) {', '.join(sorted(unknown))}")
        kept = [i for i in self.issues if i.at_least(severity) and (not wanted or i.code in wanted)]
        return DiagnosisResult(self.summary, kept)

    @property
    def ok(self) -> bool:
        return not self.issues

    def of(self, code: str) -> list[Issue]:
        return [i for i in self.issues if i.code == code]


@dataclass
class Facts:
    """Everything diagnose looked at, gathered once; repair re-gathers under the lock before acting."""

    migrations: MigrationSet
    state: MigrationState
    history_exists: bool
    holder: LockHolder | None
    now: datetime
    blockers: dict[int, str] = field(default_factory=dict)
    evidence: dict[int, Any] = field(default_factory=dict)  # version -> poststack.catalog.object_evidence.Evidence
    invalid_indexes: list[Any] = field(default_factory=list)
    index_owner: dict[str, int] = field(default_factory=dict)  # qualified index name -> version
    drift: Any = None  # poststack.catalog.drift.Drift when the schema differs from the recorded snapshot
    drift_checked: bool = False  # a comparable snapshot existed, so "no drift" is known rather than assumed
    schema: Any = None  # poststack.integrity.schema_evidence.SchemaEvidence when the catalog was judged against states
    catalog_to_judge: Any = None  # the catalog read with the history, until it is judged (after the transaction)
    legacy_duplicates: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skip_reasons: dict[str, str] = field(default_factory=dict)

    @cached_property
    def rows(self) -> dict[int, HistoryRow]:
        return {r.version: r for r in self.state.rows}


class MigrationDiagnostics:
    """Find (and where safe, fix) disagreements between the files, the history and the real schema."""

    def __init__(self, database_url: str | None = None, migrations_path: str | Path = "migrations", *,
                 history_schema: str = DEFAULT_SCHEMA, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 lock_age: float = DEFAULT_LOCK_AGE, dev_url: str | None = None) -> None:
        if database_url is None:
            from poststack.db import embedded

            database_url = embedded.default_url()
        if lock_age < 0:
            raise UsageError(f"--lock-age: {lock_age:g} must not be negative")
        self.database_url = database_url
        self.migrations_path = Path(migrations_path)
        self.history = History(validate_schema_name(history_schema))
        self.lock_timeout = lock_timeout
        self.lock_age = lock_age
        self.dev_url = dev_url

    def __repr__(self) -> str:
        return f"MigrationDiagnostics({mask_url(self.database_url)!r}, {str(self.migrations_path)!r})"

    def connection(self) -> psycopg.Connection[Any]:
        """An autocommit connection (transactions are explicit); closed when used in a ``with`` block."""
        return connect(self.database_url, autocommit=True)

    # -- diagnose ----------------------------------------------------------------------------------------
    def diagnose(self) -> DiagnosisResult:
        """Every issue found, worst first. Read-only: takes no lock and writes nothing."""
        migrations = load_migrations(self.migrations_path)
        with self.connection() as conn:
            facts = self.gather(conn, migrations)
        found = derive_issues(facts, lock_age=self.lock_age, directory=str(self.migrations_path))
        state = facts.state
        age = checks.lock_age_seconds(facts.holder, facts.now)[0] if facts.holder else None
        counts = {s: sum(1 for i in found if i.severity == s) for s in SEVERITIES}
        summary = DiagnosisSummary(
            mask_url(self.database_url), self.history.schema, facts.history_exists, state.current_version_text,
            len(migrations), len(state.applied), len(state.pending), len(state.unfinished), facts.holder,
            age, facts.skipped, counts, dict(facts.skip_reasons))
        return DiagnosisResult(summary, found)

    def gather(self, conn: psycopg.Connection[Any], migrations: MigrationSet) -> Facts:
        """Every fact in one read-only REPEATABLE READ transaction: the history and the catalog are read in
        the same snapshot, so a migrate committing meanwhile can never look like a hand-applied migration."""
        with _one_snapshot(conn), conn.transaction():
            facts = self._gather(conn, migrations)
        from poststack.integrity import facts as catalog_facts

        catalog_facts.finish_judgement(facts, self.history.schema, target_url=self.database_url,
                                       dev_url=self.dev_url)
        return facts

    def _gather(self, conn: psycopg.Connection[Any], migrations: MigrationSet) -> Facts:
        exists = self.history.exists(conn)
        state = compare(migrations, self.history.rows(conn) if exists else [])
        holder = lock_holder(conn, self.history.schema)
        if holder is not None and holder.pid == conn.info.backend_pid:
            holder = None  # repair and clean gather under the lock they hold: then nobody else is running
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        facts = Facts(migrations, state, exists, holder, row[0] if row else datetime.now().astimezone())
        if holder and holder.blocked_by:
            facts.blockers = _describe_pids(conn, holder.blocked_by)
        from poststack.integrity import cleaning
        from poststack.integrity import facts as catalog_facts

        catalog_facts.gather(conn, facts, self.history.schema, target_url=self.database_url, dev_url=self.dev_url)
        facts.legacy_duplicates = cleaning.legacy_duplicates(conn)
        return facts

    # -- repair ------------------------------------------------------------------------------------------
    def repair(self, issues: Iterable[Issue], *, force: bool = False, dry_run: bool = False,
               issue_types: Iterable[str] | None = None) -> Any:
        """Fix the auto-fixable issues given (see poststack.integrity.repair for what each fix does and needs)."""
        from poststack.integrity.repair import Repairer

        wanted = set(issue_types or ())
        unknown = wanted - set(ISSUE_CODES)
        if unknown:
            raise UsageError(f"--issue-type: unknown issue code(s) {', '.join(sorted(unknown))}")
        chosen = [i for i in issues if not wanted or i.code in wanted]
        return Repairer(self, force=force, dry_run=dry_run).run(chosen)


def derive_issues(facts: Facts, *, lock_age: float, directory: str) -> list[Issue]:
    """All issues the facts show, worst first, then by version."""
    from poststack.integrity import facts as catalog_facts

    state = facts.state
    rows = facts.rows
    found: list[Issue] = []
    found += checks.file_problem_issues(facts.migrations.problems, [r.version for r in state.missing_files])
    found += checks.changed_file_issues(state.changed, rows)
    found += checks.changed_rollback_issues(state.changed_rollbacks, rows)
    found += checks.missing_file_issues(state.missing_files, directory)
    found += checks.rollback_missing_issues(facts.migrations)
    running = [r for r in state.unfinished if r.status == "running"]
    if facts.holder:
        stuck = checks.stuck_lock_issue(facts.holder, threshold=lock_age, now=facts.now,
                                        blockers=facts.blockers, running=running)
        if stuck:
            found.append(stuck)
    for row in state.unfinished:
        if row.status == "running" and facts.holder is not None:
            continue  # the lock is held: this migration may be running right now (stuck_lock covers hangs)
        found.append(checks.unfinished_issue(row, lock_free=facts.holder is None,
                                             objects=catalog_facts.evidence_lines(facts, row.version)))
    tracking = catalog_facts.tracking_issues(facts)
    found += tracking
    found += catalog_facts.invalid_index_issues(facts)
    found += checks.out_of_order_issues(state, skip={i.version for i in tracking if i.version is not None})
    found += catalog_facts.drift_issues(facts)
    found += checks.legacy_duplicate_issues(facts.legacy_duplicates, "public.schema_migrations")
    found.sort(key=lambda i: (severity_rank(i.severity), i.version if i.version is not None else -1, i.code))
    return found


@contextmanager
def _one_snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Make the next transaction REPEATABLE READ, READ ONLY; the connection's own settings come back after."""
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    try:
        yield
    finally:
        conn.isolation_level, conn.read_only = saved


def _describe_pids(conn: psycopg.Connection[Any], pids: list[int]) -> dict[int, str]:
    """What each backend the lock holder waits on is doing, from pg_stat_activity (one query)."""
    rows = conn.execute(
        "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), coalesce(query, '') "
        "FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchall()
    return {pid: f"{app or 'unknown client'}, {state or 'unknown state'}, query: {' '.join(query.split())[:120]}"
            for pid, app, state, query in rows}

