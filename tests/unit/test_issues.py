"""Pure decisions of diagnose: lock age, file problems, filters, legacy duplicates (no database)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from poststack.db.lock import LockHolder
from poststack.errors import UsageError
from poststack.integrity.issues import (
    ISSUE_CODES,
    KINDS,
    SEVERITIES,
    Issue,
    file_problem_issues,
    legacy_duplicate_issues,
    lock_age_seconds,
    stuck_lock_issue,
)
from poststack.migration_diagnostics import DiagnosisResult, DiagnosisSummary
from poststack.source.files import FileProblem

NOW = datetime(2025, 3, 1, 0, 5, 0, tzinfo=UTC)


def holder(app: str, connection_age: float | None) -> LockHolder:
    start = NOW - timedelta(seconds=connection_age) if connection_age is not None else None
    return LockHolder(4242, app, None, start, "idle", None, "SELECT 1", [], connection_age)


def test_catalog_covers_every_design_code_with_a_known_severity():
    assert set(ISSUE_CODES) == {
        "missing_tracking", "partially_applied", "checksum_mismatch", "cosmetic_change", "rollback_changed",
        "missing_file",
        "rollback_missing", "stuck_lock", "failed_migration", "invalid_index", "out_of_order",
        "duplicate_version", "invalid_filename", "schema_drift", "schema_mismatch"}
    assert all(kind.severity in SEVERITIES and kind.fix for kind in KINDS.values())


def test_lock_age_uses_poststacks_stamp_across_midnight():
    age, basis = lock_age_seconds(holder("poststack ci@host:1 lock@23:55:00Z", 3600), NOW)
    assert age == 600 and "stamped" in basis


def test_lock_age_falls_back_to_the_connection_age_for_other_holders():
    age, basis = lock_age_seconds(holder("psql", 1234.0), NOW)
    assert age == 1234.0 and "upper bound" in basis


def test_a_stamp_older_than_the_connection_is_not_believed():
    age, _ = lock_age_seconds(holder("poststack x lock@00:00:00Z", 60.0), NOW)  # stamp says 300 s
    assert age == 60.0


def test_stuck_only_beyond_the_threshold():
    young = holder("psql", 10.0)
    assert stuck_lock_issue(young, threshold=300, now=NOW, blockers={}, running=[]) is None
    issue = stuck_lock_issue(young, threshold=5, now=NOW, blockers={}, running=[])
    assert issue is not None and issue.code == "stuck_lock" and "pid 4242" in issue.message
    assert "pg_blocking_pids: not waiting on anyone" in issue.evidence


def test_orphan_rollback_of_a_duplicated_version_is_not_reported_twice():
    problems = [FileProblem("duplicate_version", Path("002_a.sql"), "duplicate migration version 2", 2),
                FileProblem("orphan_rollback", Path("002_a.rollback.sql"), "orphan", 2),
                FileProblem("empty_file", Path("003_c.sql"), "file is empty", 3)]
    issues = file_problem_issues(problems)
    assert [(i.code, i.version) for i in issues] == [("duplicate_version", 2), ("invalid_filename", 3)]
    assert "problem: empty_file" in issues[1].evidence


def test_legacy_duplicates_group_by_version():
    issues = legacy_duplicate_issues([("(0,2)", "001", '{"v": 1}'), ("(0,3)", "001", '{"v": 2}')], "public.sm")
    assert [(i.code, i.version, i.fix) for i in issues] == [("duplicate_version", 1, "poststack db clean --duplicates")]
    assert "3 rows for version 001" in issues[0].message


def _result(*issues: Issue) -> DiagnosisResult:
    summary = DiagnosisSummary("db", "poststack", True, None, 0, 0, 0, 0, None, None)
    return DiagnosisResult(summary, list(issues))


def test_filters_by_severity_threshold_and_code():
    result = _result(Issue.of("cosmetic_change", 1, "m"), Issue.of("rollback_missing", 1, "m"),
                     Issue.of("failed_migration", 2, "m"))
    assert [i.code for i in result.filtered("low").issues] == ["cosmetic_change", "failed_migration"]
    assert [i.code for i in result.filtered("critical").issues] == ["failed_migration"]
    assert [i.code for i in result.filtered("info", ["rollback_missing"]).issues] == ["rollback_missing"]


@pytest.mark.parametrize("severity, codes", [("urgent", None), ("low", ["nope"])])
def test_bad_filters_raise_usage_errors(severity, codes):
    with pytest.raises(UsageError):
        _result().filtered(severity, codes)
