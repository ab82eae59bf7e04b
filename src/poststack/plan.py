"""Comparing the files with the history, and planning migrate and rollback. Pure: no database.

Keeping this free of I/O is what lets the plan be recomputed cheaply after the lock is taken, and tested
without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poststack.errors import RollbackRefused, UsageError
from poststack.files import Migration, MigrationSet, header_directives
from poststack.history import HistoryRow


@dataclass(frozen=True)
class ChangedFile:
    """An applied migration whose file differs from what was applied."""

    version: int
    version_text: str
    filename: str
    kind: str  # "checksum_mismatch" (meaning changed) or "cosmetic_change" (comments/whitespace only)
    stored_checksum: str
    file_checksum: str


@dataclass(frozen=True)
class RollbackStep:
    """One migration to undo, with the rollback SQL to run and where it came from."""

    row: HistoryRow
    sql: str
    source: str  # path of the rollback file, or "history" when the file is gone and the stored text is used
    no_transaction: bool


@dataclass
class MigrationState:
    """The files and the history side by side."""

    migrations: MigrationSet
    rows: list[HistoryRow]
    applied: list[HistoryRow] = field(default_factory=list)
    unfinished: list[HistoryRow] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    changed: list[ChangedFile] = field(default_factory=list)
    missing_files: list[HistoryRow] = field(default_factory=list)
    out_of_order: list[Migration] = field(default_factory=list)

    @property
    def current_version(self) -> int | None:
        return self.applied[-1].version if self.applied else None

    @property
    def current_version_text(self) -> str | None:
        return self.applied[-1].version_text if self.applied else None

    @property
    def blocking_changes(self) -> list[ChangedFile]:
        return [c for c in self.changed if c.kind == "checksum_mismatch"]


def compare(migrations: MigrationSet, rows: list[HistoryRow]) -> MigrationState:
    state = MigrationState(migrations, rows)
    files = migrations.by_version()
    recorded = {r.version: r for r in rows}
    for row in rows:
        (state.applied if row.status == "applied" else state.unfinished).append(row)
        migration = files.get(row.version)
        if migration is None:
            state.missing_files.append(row)
        elif migration.checksum != row.checksum:
            same_meaning = (row.semantic_checksum is not None
                            and row.semantic_checksum == migration.semantic_checksum)
            state.changed.append(ChangedFile(row.version, row.version_text, migration.filename,
                                             "cosmetic_change" if same_meaning else "checksum_mismatch",
                                             row.checksum, migration.checksum))
    highest = max((r.version for r in rows), default=None)
    for migration in migrations:
        if migration.version not in recorded:
            state.pending.append(migration)
            if highest is not None and migration.version < highest:
                state.out_of_order.append(migration)
    return state


def plan_migrate(state: MigrationState, target: int | None) -> list[Migration]:
    """The pending migrations up to and including target, in version order."""
    if target is None:
        return list(state.pending)
    if target not in state.migrations.by_version() and target != 0:
        raise UsageError(f"--target {target}: no migration file has version {target}")
    current = state.current_version
    if current is not None and target < current:
        raise UsageError(f"--target {target} is below the current version {state.current_version_text}; "
                         f"use 'poststack db rollback {target}'")
    return [m for m in state.pending if m.version <= target]


def plan_rollback(state: MigrationState, target: int) -> list[RollbackStep]:
    """Applied migrations newer than target, newest first, each with its rollback SQL.

    Everything is checked before anything runs: an unknown target or a missing rollback refuses the lot.
    """
    applied_versions = {r.version for r in state.applied}
    if target != 0 and target not in applied_versions:
        raise RollbackRefused(f"rollback target {target} is not an applied version (applied: "
                              f"{', '.join(r.version_text for r in state.applied) or 'none'}; use 0 for all)")
    forward = [r for r in state.unfinished if not is_rollback_row(r)]
    if forward:
        row = forward[0]
        raise RollbackRefused(f"migration {row.version_text} ({row.name}) is {row.status} part-way; finish it "
                              "first ('poststack db migrate' resumes it), or see 'poststack db diagnose'")
    files = state.migrations.by_version()
    steps = []
    for row in sorted(state.unfinished, key=lambda r: -r.version):  # interrupted rollbacks: finish them first
        step = rollback_step(row, files)
        if row.version <= target or not step.no_transaction:
            why = (f"roll back to a version below {row.version_text} to finish it" if row.version <= target
                   else "its rollback file is no longer '-- poststack:no-transaction', so it cannot be resumed")
            raise RollbackRefused(f"the rollback of {row.version_text} ({row.name}) was interrupted part-way: "
                                  f"{why}; nothing was rolled back")
        steps.append(step)
    return steps + [rollback_step(row, files)
                    for row in sorted((r for r in state.applied if r.version > target), key=lambda r: -r.version)]


ROLLBACK_MARK = "rollback "  # the error column of a row whose no-transaction rollback is unfinished starts so


def is_rollback_row(row: HistoryRow) -> bool:
    """Whether an unfinished row is an interrupted rollback (its error says so) rather than a migration."""
    return row.status != "applied" and (row.error or "").startswith(ROLLBACK_MARK)


def rollback_step(row: HistoryRow, files: dict[int, Migration]) -> RollbackStep:
    """The rollback SQL of one recorded migration: its rollback file, else the text stored at apply time."""
    migration = files.get(row.version)
    if migration is not None and migration.rollback is not None:
        rollback = migration.rollback
        no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(rollback.text)
        return RollbackStep(row, rollback.text, str(rollback.path), no_tx)
    if migration is None and row.rollback_sql:
        no_tx = row.no_transaction or "poststack:no-transaction" in header_directives(row.rollback_sql)
        return RollbackStep(row, row.rollback_sql, "history", no_tx)
    where = migration.filename if migration else f"version {row.version_text}"
    raise RollbackRefused(f"{where}: no rollback file ({row.version_text}_{row.name}.rollback.sql); "
                          "nothing was rolled back")
