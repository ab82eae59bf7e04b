"""diagnose: every issue the facts show, worst first, with a summary of what was looked at.

The facts are gathered once (``poststack.integrity.gathering``); each check is a pure function of them
(``poststack.integrity.issues`` for the files and the history, ``poststack.integrity.catalog_facts`` for the
catalog and the replayed states), so diagnose stays within a small factor of ``migration-status`` however long
the history grows, and repair can re-derive the same issues under the lock before it acts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from poststack.db.connection import mask_url
from poststack.db.history import HistoryStatus
from poststack.db.lock import LockHolder
from poststack.integrity import catalog_facts
from poststack.integrity import issues as checks
from poststack.integrity.facts import Facts
from poststack.integrity.gathering import Inspected


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
    issues: list[checks.Issue]

    def filtered(self, severity: str = "info", codes: Iterable[str] | None = None) -> DiagnosisResult:
        """Only issues at or above ``severity`` and, when given, of the listed codes."""
        checks.checked_severity(severity)
        wanted = set(checks.checked_codes(codes or ()))
        kept = [i for i in self.issues if i.at_least(severity) and (not wanted or i.code in wanted)]
        return DiagnosisResult(self.summary, kept)

    @property
    def ok(self) -> bool:
        return not self.issues

    def of(self, code: str) -> list[checks.Issue]:
        return [i for i in self.issues if i.code == code]


def diagnose(target: Inspected) -> DiagnosisResult:
    """Every issue found, worst first. Read-only: takes no lock and writes nothing."""
    migrations = target.load()
    with target.connection() as conn:
        facts = target.gather(conn, migrations)
    found = derive_issues(facts, lock_age=target.lock_age, directory=str(target.migrations_path))
    state = facts.state
    age = checks.lock_age_seconds(facts.holder, facts.now)[0] if facts.holder else None
    counts = {s: sum(1 for i in found if i.severity == s) for s in checks.SEVERITIES}
    summary = DiagnosisSummary(
        mask_url(target.database_url), target.history.schema, facts.history_exists, state.current_version_text,
        len(migrations), len(state.applied), len(state.pending), len(state.unfinished), facts.holder,
        age, facts.skipped, counts, dict(facts.skip_reasons))
    return DiagnosisResult(summary, found)


def derive_issues(facts: Facts, *, lock_age: float, directory: str) -> list[checks.Issue]:
    """All issues the facts show, worst first, then by version."""
    state = facts.state
    rows = facts.rows
    found: list[checks.Issue] = []
    found += checks.file_problem_issues(facts.migrations.problems, [r.version for r in state.missing_files])
    found += checks.changed_file_issues(state.changed, rows)
    found += checks.changed_rollback_issues(state.changed_rollbacks, rows)
    found += checks.missing_file_issues(state.missing_files, directory)
    found += checks.rollback_missing_issues(facts.migrations)
    running = [r for r in state.unfinished if r.status == HistoryStatus.RUNNING]
    if facts.holder:
        stuck = checks.stuck_lock_issue(facts.holder, threshold=lock_age, now=facts.now,
                                        blockers=facts.blockers, running=running)
        if stuck:
            found.append(stuck)
    for row in state.unfinished:
        if row.status == HistoryStatus.RUNNING and facts.holder is not None:
            continue  # the lock is held: this migration may be running right now (stuck_lock covers hangs)
        found.append(checks.unfinished_issue(row, lock_free=facts.holder is None,
                                             objects=catalog_facts.evidence_lines(facts, row.version)))
    tracking = catalog_facts.tracking_issues(facts)
    found += tracking
    found += catalog_facts.invalid_index_issues(facts)
    found += checks.out_of_order_issues(state, skip={i.version for i in tracking if i.version is not None})
    found += catalog_facts.drift_issues(facts)
    found += checks.legacy_duplicate_issues(facts.legacy_duplicates, "public.schema_migrations")
    found.sort(key=lambda i: (checks.severity_rank(i.severity), i.version if i.version is not None else -1, i.code))
    return found
