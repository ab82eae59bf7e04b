"""What migrate, rollback and status return: plain results, shared by the runner, the CLI and the tests.

Kept apart from ``schema_migration`` (which re-exports them, so ``from poststack.schema_migration import
MigrateResult`` keeps working) so that the runner module holds the running and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from poststack.db.history import HistoryRow
from poststack.db.lock import LockHolder
from poststack.engine.plan import ChangedFile, ChangedRollback, RollbackStep
from poststack.source.files import Migration


@dataclass(frozen=True)
class StepResult:
    version: int
    version_text: str
    name: str
    execution_ms: int | None
    no_transaction: bool = False


@dataclass
class MigrateResult:
    """What migrate did (or, with dry_run, would do)."""

    dry_run: bool
    from_version: str | None
    to_version: str | None
    steps: list[StepResult] = field(default_factory=list)
    planned: list[Migration] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resuming: dict[int, HistoryRow] = field(default_factory=dict)  # unfinished rows the planned ones resume


@dataclass
class RollbackResult:
    dry_run: bool
    from_version: str | None
    to_version: str | None
    steps: list[StepResult] = field(default_factory=list)
    planned: list[RollbackStep] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def planned_versions(self) -> list[int]:
        return [s.row.version for s in self.planned]

    def describe(self) -> str:
        """The plan as the prompt shows it: 'roll back 2 migration(s) (003, 002)'."""
        names = ", ".join(s.row.version_text for s in self.planned)
        return f"roll back {len(self.planned)} migration(s) ({names})"


ConfirmRollback = Callable[[RollbackResult], bool]  # called under the lock with the plan that will run


@dataclass
class MigrationStatus:
    """The files and the history side by side, plus the current lock holder."""

    database: str  # masked URL
    history_exists: bool
    current_version: str | None
    applied: list[HistoryRow]
    pending: list[Migration]
    changed: list[ChangedFile]
    missing_files: list[HistoryRow]
    unfinished: list[HistoryRow]
    out_of_order: list[Migration]
    lock: LockHolder | None
    changed_rollbacks: list[ChangedRollback] = field(default_factory=list)
