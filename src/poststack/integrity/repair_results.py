"""What repair returns: each fix done (or planned), each issue left alone with its kind, and the result.

Apart from ``poststack.integrity.repair`` (which re-exports them) so that the CLI and the tests can name the
result types without the machinery that produces them, as ``poststack.engine.results`` does for migrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FixKind(StrEnum):
    """What one repair does; also the audit entry's action for the fixes repair audits itself."""

    RECHECKSUM = "rechecksum"  # re-record a changed file's checksum
    RERECORD_ROLLBACK = "rerecord_rollback"  # record the rollback file's text and checksum
    RESTORE_FILE = "restore_file"  # write a missing file from the SQL the history stores
    MARK_APPLIED = "mark_applied"  # an unfinished run whose whole effect is in the catalog
    RETRY = "retry"  # an unfinished run that left nothing (bar INVALID indexes, dropped): migrate runs it again
    DROP_INVALID_INDEX = "drop_invalid_index"  # an INVALID index a pending migration will build
    RECOVER = "recover"  # record a migration applied outside poststack (recover audits it)
    END_LOCK_HOLDER = "end_lock_holder"  # end a stuck lock holder (clean audits it)


@dataclass(frozen=True)
class RepairAction:
    """One fix, done (or with dry_run, planned)."""
    code: str
    version: int | None
    action: FixKind
    description: str
    details: list[str] = field(default_factory=list)


class SkipKind(StrEnum):
    """Why repair left an issue alone, which decides repair's exit code (not the wording of the reason)."""
    MANUAL = "manual"  # not auto-fixable: diagnose's fix text is for a person, repair exits 0 for it alone
    REFUSED = "refused"  # auto-fixable in kind, but the evidence or a missing --force stopped it: exit 1


@dataclass(frozen=True)
class SkippedIssue:
    """An issue repair left alone, with the reason and what the user can do."""
    code: str
    version: int | None
    reason: str
    details: list[str] = field(default_factory=list)
    kind: SkipKind = SkipKind.REFUSED


@dataclass
class RepairResult:
    dry_run: bool
    fixed: list[RepairAction] = field(default_factory=list)
    skipped: list[SkippedIssue] = field(default_factory=list)
