"""The issues diagnose reports, and the pure checks that derive them from facts already gathered.

Every check here is a function of facts (files, history, lock, catalog evidence), never of a connection:
gathering is done once, in a few set-based queries, by ``poststack.migration_diagnostics``. That keeps
diagnose linear in the number of migrations and lets each decision be tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from poststack.db.history import HistoryRow, HistoryStatus
from poststack.db.lock import LockHolder
from poststack.engine.plan import ChangedFile, ChangedRollback, MigrationState
from poststack.errors import UsageError
from poststack.source.files import FileProblem, Migration, migration_file_name, version_of

SEVERITIES = ("critical", "high", "medium", "low", "info")


def severity_rank(severity: str) -> int:
    """0 for critical ... 4 for info: lower is worse."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class IssueKind:
    """The fixed facts of an issue code: how bad it is by default and whether repair can fix it."""

    code: str
    severity: str
    auto_fixable: bool
    fix: str
    summary: str


# The catalog. Severities are chosen by what the issue blocks: critical = the database is in a state no
# command should build on; high = migrate refuses or the history is wrong; medium = needs a decision soon;
# low = cosmetic; info = worth knowing, not a fault (a project may deliberately ship no rollbacks).
KINDS: dict[str, IssueKind] = {k.code: k for k in (
    IssueKind("missing_tracking", "high", True, "poststack db recover",
              "the catalog equals the replayed state after an unrecorded migration: it ran outside poststack"),
    IssueKind("partially_applied", "critical", False, "finish or undo the migration by hand, then diagnose again",
              "the catalog lies between the replayed states before and after one migration"),
    IssueKind("schema_mismatch", "high", False,
              "restore what the differences show, or correct the history with 'poststack db mark'",
              "the catalog is not the state the history records, nor a later one"),
    IssueKind("checksum_mismatch", "high", True, "poststack db repair --issue-type checksum_mismatch --force",
              "an applied file changed in meaning"),
    IssueKind("cosmetic_change", "low", True, "poststack db repair --issue-type cosmetic_change",
              "an applied file changed in comments or whitespace only"),
    IssueKind("rollback_changed", "high", True,
              "review the diff, then 'poststack db repair --issue-type rollback_changed --force' to record the "
              "file, or roll back with --use-recorded (or --allow-changed)",
              "a rollback file changed in meaning since its migration was applied"),
    IssueKind("missing_file", "medium", True, "poststack db repair --issue-type missing_file",
              "an applied migration has no file"),
    IssueKind("rollback_missing", "info", False, "add a NNN_name.rollback.sql file",
              "a migration has no rollback file"),
    IssueKind("stuck_lock", "high", True, "poststack db clean --locks --force",
              "the migration lock is held longer than the threshold"),
    IssueKind("failed_migration", "critical", True, "poststack db repair --issue-type failed_migration",
              "a non-transactional migration crashed or failed"),
    IssueKind("invalid_index", "high", False, "REINDEX INDEX CONCURRENTLY (or DROP INDEX CONCURRENTLY)",
              "an index is not valid (indisvalid = false)"),
    IssueKind("out_of_order", "medium", False, "poststack db migrate --allow-out-of-order",
              "a pending version is lower than the newest applied one"),
    IssueKind("duplicate_version", "high", False, "rename one of the files",
              "two files share one version"),
    IssueKind("invalid_filename", "high", False, "rename or fix the file",
              "a file looks like a migration but cannot be one"),
    IssueKind("schema_drift", "medium", False, "review the diff; turn the change into a migration or undo it",
              "the schema changed outside poststack since the last migration"),
)}
ISSUE_CODES = tuple(KINDS)


def checked_severity(severity: str, option: str = "--severity") -> str:
    """``severity`` if it is one of SEVERITIES; else a one-line UsageError naming the option."""
    if severity not in SEVERITIES:
        raise UsageError(f"{option}: {severity!r} is not one of {', '.join(SEVERITIES)}")
    return severity


def checked_codes(codes: Iterable[str], option: str = "--type") -> list[str]:
    """The issue codes given, each known (the one place that checks them: CLI options and the Python API)."""
    codes = list(codes)
    unknown = [c for c in codes if c not in ISSUE_CODES]
    if unknown:
        raise UsageError(f"{option}: unknown issue code {unknown[0]!r} (one of: {', '.join(ISSUE_CODES)})")
    return codes


@dataclass(frozen=True)
class Issue:
    """One finding: what is wrong, how sure we are (evidence), and the command that fixes it."""

    code: str
    severity: str
    version: int | None
    message: str
    evidence: list[str] = field(default_factory=list)
    auto_fixable: bool = False
    fix: str = ""
    # stuck_lock: the backend judged stuck (pid and session start), so a fix ends that one and no other.
    holder: LockHolder | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, code: str, version: int | None, message: str, evidence: Iterable[str] = (), *,
           severity: str | None = None, auto_fixable: bool | None = None, fix: str | None = None) -> Issue:
        kind = KINDS[code]
        return cls(code, severity or kind.severity, version, message, list(evidence),
                   kind.auto_fixable if auto_fixable is None else auto_fixable, fix or kind.fix)

    def at_least(self, severity: str) -> bool:
        return severity_rank(self.severity) <= severity_rank(severity)


# -- checks on files and history (plan.compare already did the matching) -------------------------------

def file_problem_issues(problems: Iterable[FileProblem], missing_files: Iterable[int] = ()) -> list[Issue]:
    """Every FileProblem becomes an issue; empty/unreadable files and orphan rollbacks count as bad files.

    A rollback of a duplicated version, or of an applied version whose file is missing, is not an orphan:
    the duplicate or the missing file is the one thing to report.
    """
    problems = list(problems)
    duplicated = {p.version for p in problems if p.code == "duplicate_version"} | set(missing_files)
    issues = []
    for p in problems:
        if p.code == "orphan_rollback" and p.version in duplicated:
            continue
        code = "duplicate_version" if p.code == "duplicate_version" else "invalid_filename"
        evidence = [f"file: {p.path}", f"problem: {p.code}"]
        issues.append(Issue.of(code, p.version, p.message, evidence))
    return issues


def changed_file_issues(changed: Iterable[ChangedFile], rows: dict[int, HistoryRow]) -> list[Issue]:
    issues = []
    for c in changed:
        row = rows[c.version]
        evidence = [f"file: {c.filename} sha256 {c.file_checksum[:12]}",
                    f"history: sha256 {c.stored_checksum[:12]} applied {row.applied_at.isoformat(timespec='seconds')}"]
        if c.kind == "cosmetic_change":
            evidence.append("semantic checksum (pglast parse tree) unchanged: comments or whitespace only")
            message = f"{c.filename}: comments or whitespace changed since it was applied"
        else:
            evidence.append("semantic checksum differs: the statements changed"
                            if row.semantic_checksum else "no semantic checksum recorded; any edit counts")
            message = f"{c.filename}: changed since it was applied ({row.applied_at:%Y-%m-%d %H:%M})"
        issues.append(Issue.of(c.kind, c.version, message, evidence))
    return issues


_DIFF_LINES = 40  # of evidence per changed rollback; the whole diff is one 'rollback --dry-run' away


def changed_rollback_issues(changed: Iterable[ChangedRollback], rows: dict[int, HistoryRow]) -> list[Issue]:
    """Rollback files that differ from the rollback SQL recorded at apply time.

    A change of meaning is high: ``rollback`` refuses the file (running it would undo something other than
    what the history says was applied). Comments or whitespace only are low, as for a migration file.
    """
    issues = []
    for c in changed:
        row = rows[c.version]
        applied = row.applied_at.isoformat(timespec="seconds")
        evidence = [f"file: {c.filename} sha256 {c.file_checksum[:12]}",
                    f"history: rollback sha256 {c.stored_checksum[:12]} recorded when {c.version_text} was applied "
                    f"({applied})"]
        diff = c.diff()
        if c.cosmetic:
            evidence.append("semantic checksum of the recorded rollback SQL equals the file's: comments or "
                            "whitespace only")
            issues.append(Issue.of("rollback_changed", c.version,
                                   f"{c.filename}: comments or whitespace changed since {c.version_text} was applied",
                                   evidence, severity="low",
                                   fix="poststack db repair --issue-type rollback_changed"))
            continue
        evidence.append("semantic checksum differs: the statements changed" if c.recorded_sql is not None
                        else "no rollback SQL recorded to compare with; any edit counts")
        evidence += diff[:_DIFF_LINES] + ([f"... ({len(diff) - _DIFF_LINES} more diff lines)"]
                                          if len(diff) > _DIFF_LINES else [])
        issues.append(Issue.of("rollback_changed", c.version,
                               f"{c.filename}: changed in meaning since {c.version_text} was applied; rollback "
                               "refuses it", evidence))
    return issues


def missing_file_issues(rows: Iterable[HistoryRow], directory: str) -> list[Issue]:
    issues = []
    for row in rows:
        stored = "stored SQL available" + (" (and rollback SQL)" if row.rollback_sql else "")
        evidence = [f"history: version {row.version_text} {row.name}, status {row.status}, source {row.source}",
                    f"directory {directory}: no {row.version_text}_{row.name}.sql", stored]
        # The history row names the file repair would write: a name that is not a valid migration file name
        # ('../x', '/elsewhere', '²') is never turned into a path, so repair cannot fix this one.
        restorable = (migration_file_name(row.version_text, row.name) is not None
                      and version_of(row.version_text) == row.version)
        if not restorable:
            evidence.append(f"history row version {row.version}: version_text {row.version_text!r} and name "
                            f"{row.name!r} do not form a valid migration file name; repair will not write it")
        issues.append(Issue.of(
            "missing_file", row.version,
            f"migration {row.version_text} ({row.name}) is recorded as {row.status} but has no file",
            evidence, auto_fixable=None if restorable else False,
            fix=None if restorable else "restore the file by hand under a valid NNN_name.sql name"))
    return issues


def rollback_missing_issues(migrations: Iterable[Migration]) -> list[Issue]:
    return [Issue.of("rollback_missing", m.version, f"{m.filename} has no rollback file",
                     [f"looked for {m.version_text}_{m.name}.rollback.sql in {m.path.parent}: not found"])
            for m in migrations if m.rollback is None]


def out_of_order_issues(state: MigrationState, skip: set[int]) -> list[Issue]:
    """Pending versions below the newest recorded one, unless catalog evidence already explains them."""
    if not state.rows:
        return []
    newest = max(state.rows, key=lambda r: r.version)
    return [Issue.of("out_of_order", m.version,
                     f"{m.filename} is pending but older than the newest recorded version {newest.version_text}",
                     [f"file: {m.filename} has no history row",
                      f"history: newest version {newest.version_text} ({newest.name})",
                      "migrate refuses it unless --allow-out-of-order is given"])
            for m in state.out_of_order if m.version not in skip]


def unfinished_issue(row: HistoryRow, *, lock_free: bool, objects: list[str]) -> Issue:
    """A running/failed row. A 'running' row only counts once nobody holds the lock (else it may be live)."""
    when = row.applied_at.isoformat(timespec="seconds")
    evidence = [f"history: status {row.status} since {when} by {row.applied_by} ({row.client or 'unknown client'})",
                f"history: {row.statements_done or 0} statement(s) completed"]
    if row.error:
        evidence.append(f"history: error: {row.error}")
    if row.status == HistoryStatus.RUNNING:
        evidence.append("lock: free, so the process that wrote 'running' is gone" if lock_free
                        else "lock: held (see stuck_lock)")
    evidence.extend(objects)
    verb = "crashed" if row.status == HistoryStatus.RUNNING else "failed"
    if (row.error or "").startswith("rollback "):  # an interrupted no-transaction rollback (see stepwise)
        return Issue.of("failed_migration", row.version,
                        f"the non-transactional rollback of {row.version_text} ({row.name}) {verb} part-way",
                        evidence, fix=f"poststack db rollback <a version below {row.version_text}> --confirm "
                                      "(resumes the interrupted rollback where its record says it stopped)")
    return Issue.of("failed_migration", row.version,
                    f"non-transactional migration {row.version_text} ({row.name}) {verb} part-way", evidence,
                    fix="poststack db migrate (resumes it: statements recorded done are skipped, an INVALID "
                        "index it left is dropped and built again); else poststack db repair --issue-type "
                        "failed_migration")


# -- the lock ----------------------------------------------------------------------------------------------

_LOCK_STAMP = re.compile(r"lock@([0-9]{2}):([0-9]{2}):([0-9]{2})Z")  # not \d: any client sets application_name


def lock_age_seconds(holder: LockHolder, now: datetime) -> tuple[float | None, str]:
    """How long the lock has been held, and on what basis.

    PostgreSQL records no acquisition time for a granted advisory lock. poststack stamps ``lock@HH:MM:SSZ``
    into its application_name when it takes the lock; for any other holder the connection's age is the
    only (upper) bound there is.
    """
    connection_age = holder.held_for_seconds
    match = _LOCK_STAMP.search(holder.application_name or "")
    if match:
        h, m, s = map(int, match.groups())
        now_utc = now.astimezone(UTC)
        stamp = now_utc.replace(hour=h, minute=m, second=s, microsecond=0)
        age = (now_utc - stamp).total_seconds() % 86400  # a stamp "in the future" is from yesterday
        if connection_age is None or age <= connection_age + 1:
            return age, f"lock taken at {h:02}:{m:02}:{s:02}Z (stamped in application_name)"
    if connection_age is None:
        return None, "no acquisition time and no connection start known"
    return connection_age, "upper bound: age of the holding connection (PostgreSQL keeps no lock time)"


def stuck_lock_issue(holder: LockHolder, *, threshold: float, now: datetime,
                     blockers: dict[int, str], running: list[HistoryRow]) -> Issue | None:
    """The lock is 'stuck' once held longer than ``threshold`` seconds (``--lock-age``)."""
    age, basis = lock_age_seconds(holder, now)
    if age is None or age < threshold:
        return None
    evidence = [f"pg_locks: advisory migration lock granted to pid {holder.pid}",
                f"pg_stat_activity: application_name {holder.application_name or '(none)'!r}, "
                f"client {holder.client_addr or 'local socket'}, state {holder.state or 'unknown'}",
                f"held for {age:.0f}s ({basis}); threshold {threshold:g}s (--lock-age)"]
    if holder.query:
        evidence.append(f"pg_stat_activity: last query: {' '.join(holder.query.split())[:200]}")
    if holder.blocked_by:
        for pid in holder.blocked_by:
            evidence.append(f"pg_blocking_pids: waits on pid {pid}: {blockers.get(pid, 'gone')}")
    else:
        evidence.append("pg_blocking_pids: not waiting on anyone")
    for row in running:
        evidence.append(f"history: migration {row.version_text} ({row.name}) is 'running', "
                        f"{row.statements_done or 0} statement(s) done")
    found = Issue.of("stuck_lock", None,
                     f"migration lock held for {age:.0f}s by pid {holder.pid} ({holder.application_name or 'unknown'})",
                     evidence)
    return replace(found, holder=holder)


def legacy_duplicate_issues(duplicates: Iterable[tuple[str, str, str]], table: str) -> list[Issue]:
    """Extra rows per version in the legacy history table (which, unlike ours, has no primary key)."""
    by_version: dict[str, list[str]] = {}
    for _ctid, version, data in duplicates:
        by_version.setdefault(version, []).append(data)
    return [Issue.of("duplicate_version", version_of(v),
                     f"legacy history {table} has {len(rows) + 1} rows for version {v}",
                     [f"{table}: extra row {data}" for data in rows] + ["the earliest applied row is kept"],
                     auto_fixable=False, fix="poststack db clean --duplicates")
            for v, rows in by_version.items()]
