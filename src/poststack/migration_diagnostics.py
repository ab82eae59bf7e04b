"""MigrationDiagnostics: the Python API for diagnose, repair and clean. The CLI is a thin shell over it.

Facts come from the files, the history, the lock and pg_catalog, read on one connection in one snapshot and a
handful of set-based queries (``poststack.integrity.gathering``); every issue is derived from them
(``poststack.integrity.diagnosis``), and repair and clean act only on what they re-derive under the lock
(``poststack.integrity.repair``, ``poststack.integrity.cleaning``).
"""

from __future__ import annotations

from collections.abc import Iterable

from poststack.integrity.cleaning import Cleaner
from poststack.integrity.diagnosis import DiagnosisResult, DiagnosisSummary, derive_issues, diagnose
from poststack.integrity.facts import Facts
from poststack.integrity.gathering import DEFAULT_LOCK_AGE, Inspected
from poststack.integrity.issues import Issue, checked_codes
from poststack.integrity.repair import Repairer
from poststack.integrity.repair_results import RepairResult

__all__ = ["DEFAULT_LOCK_AGE", "DiagnosisResult", "DiagnosisSummary", "Facts", "Issue", "MigrationDiagnostics",
           "derive_issues"]


class MigrationDiagnostics(Inspected):
    """Find (and where safe, fix) disagreements between the files, the history and the real schema.

    An ``Inspected`` target (database, directory, history schema, lock timeout, lock age, replay server) with
    the commands on it.
    """

    def diagnose(self) -> DiagnosisResult:
        """Every issue found, worst first. Read-only: takes no lock and writes nothing."""
        return diagnose(self)

    def repair(self, issues: Iterable[Issue], *, force: bool = False, dry_run: bool = False,
               issue_types: Iterable[str] | None = None) -> RepairResult:
        """Fix the auto-fixable issues given (see poststack.integrity.repair for what each fix does and needs)."""
        wanted = set(checked_codes(issue_types or (), "--issue-type"))
        chosen = [i for i in issues if not wanted or i.code in wanted]
        return Repairer(self, force=force, dry_run=dry_run).run(chosen)

    def cleaner(self) -> Cleaner:
        """clean's blunt tools (locks, failed rows, legacy duplicates), each planned before it acts."""
        return Cleaner(self)
