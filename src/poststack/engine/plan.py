"""Comparing the files with the history, and planning migrate and rollback. Pure: no database.

Keeping this free of I/O is what lets the plan be recomputed cheaply after the lock is taken, and tested
without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poststack.db.history import HistoryRow, HistoryStatus
from poststack.errors import RollbackChanged, RollbackRefused, UsageError
from poststack.source.files import Migration, MigrationSet, header_directives, same_meaning, unified_diff


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
class ChangedRollback:
    """An applied migration whose rollback file differs from the rollback SQL recorded when it was applied.

    ``cosmetic`` is True when only comments or whitespace changed (the semantic checksum of the recorded
    text equals the file's); a rollback file that did not exist at apply time is not a change (nothing was
    recorded to compare it with).
    """

    version: int
    version_text: str
    filename: str  # the rollback file's name
    path: str
    cosmetic: bool
    stored_checksum: str
    file_checksum: str
    recorded_sql: str | None = field(default=None, repr=False)
    file_sql: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        return "cosmetic" if self.cosmetic else "changed"

    def diff(self) -> list[str]:
        """The unified diff of the recorded rollback SQL against the file."""
        if self.recorded_sql is None:
            return [f"(the history holds no rollback SQL for {self.version_text}, only its checksum)"]
        return unified_diff(self.recorded_sql, self.file_sql,
                            f"history:{self.filename}", self.path)


@dataclass(frozen=True)
class RollbackStep:
    """One migration to undo, with the rollback SQL to run and where it came from."""

    row: HistoryRow
    sql: str
    source: str  # path of the rollback file, or "history" when the recorded text is used
    no_transaction: bool
    warning: str | None = None  # e.g. the rollback file changed cosmetically since apply


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
    changed_rollbacks: list[ChangedRollback] = field(default_factory=list)

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
        (state.applied if row.status == HistoryStatus.APPLIED else state.unfinished).append(row)
        migration = files.get(row.version)
        if migration is None:
            state.missing_files.append(row)
        else:
            if migration.checksum != row.checksum:
                cosmetic = same_meaning(row.sql, row.checksum, row.semantic_checksum, migration.up)
                state.changed.append(ChangedFile(row.version, row.version_text, migration.filename,
                                                 "cosmetic_change" if cosmetic else "checksum_mismatch",
                                                 row.checksum, migration.checksum))
            changed_rollback = _changed_rollback(row, migration)
            if changed_rollback is not None:
                state.changed_rollbacks.append(changed_rollback)
    highest = max((r.version for r in rows), default=None)
    for migration in migrations:
        if migration.version not in recorded:
            state.pending.append(migration)
            if highest is not None and migration.version < highest:
                state.out_of_order.append(migration)
    return state


def _changed_rollback(row: HistoryRow, migration: Migration) -> ChangedRollback | None:
    """The rollback file against what was recorded at apply time (byte checksum, then meaning)."""
    rollback = migration.rollback
    if rollback is None or row.rollback_checksum is None or rollback.checksum == row.rollback_checksum:
        return None
    cosmetic = same_meaning(row.rollback_sql, row.rollback_checksum, None, rollback)
    return ChangedRollback(row.version, row.version_text, rollback.path.name, str(rollback.path), cosmetic,
                           row.rollback_checksum, rollback.checksum, row.rollback_sql, rollback.text)


def plan_migrate(state: MigrationState, target: int | None) -> list[Migration]:
    """The pending migrations up to and including target, in version order."""
    if target is None:
        return list(state.pending)
    if target not in state.migrations.by_version() and target != 0:
        raise UsageError(f"--target {target}: no migration file has version {target}")
    current = state.current_version
    pending = {m.version for m in state.pending}
    if current is not None and target < current and target not in pending:
        # Only an applied version (or 0) can be rolled back to: that is what the advice must name.
        applied = {r.version for r in state.applied}
        advice = (_rollback_advice(state, target) if target in applied or target == 0
                  else "see 'poststack db migration-status'")
        raise UsageError(f"--target {target} is below the current version {state.current_version_text}; "
                         f"{advice}")
    # A pending target below the current version is an out-of-order apply, refused or allowed as such.
    return [m for m in state.pending if m.version <= target]


def _rollback_advice(state: MigrationState, target: int) -> str:
    """'use rollback N' only when that rollback could run; else why it could not."""
    try:
        plan_rollback(state, target)
    except (RollbackRefused, RollbackChanged) as exc:
        return f"migrate cannot go down, and 'poststack db rollback {target}' would refuse: {exc}"
    return f"use 'poststack db rollback {target}' to go down to it"


def plan_rollback(state: MigrationState, target: int, *, allow_changed: bool = False,
                  use_recorded: bool = False) -> list[RollbackStep]:
    """Applied migrations newer than target, newest first, each with its rollback SQL.

    Everything is checked before anything runs: an unknown target, a missing rollback or a rollback file
    whose meaning changed since apply refuses the lot. A changed file runs only with ``allow_changed``;
    ``use_recorded`` runs the rollback SQL recorded at apply time instead of the file wherever the history
    holds one (a rollback file written after its migration was applied has no recorded text, so it runs).
    A cosmetic edit (comments, whitespace) runs the file, with a warning on the step.
    """
    if allow_changed and use_recorded:
        raise UsageError("--allow-changed and --use-recorded contradict each other; pass one of them")
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
    changed = {c.version: c for c in state.changed_rollbacks}
    steps = []
    refused: list[ChangedRollback] = []
    for row in sorted(state.unfinished, key=lambda r: -r.version):  # interrupted rollbacks: finish them first
        step = rollback_step(row, files)
        if row.version <= target or not step.no_transaction:
            why = (f"roll back to a version below {row.version_text} to finish it" if row.version <= target
                   else "its rollback file is no longer '-- poststack:no-transaction', so it cannot be resumed")
            raise RollbackRefused(f"the rollback of {row.version_text} ({row.name}) was interrupted part-way: "
                                  f"{why}; nothing was rolled back")
        steps.append(step)
    for row in sorted((r for r in state.applied if r.version > target), key=lambda r: -r.version):
        migration = files.get(row.version)
        if row.rollback_sql is not None and (migration is None or use_recorded):  # '' = nothing to undo
            no_tx = row.no_transaction or "poststack:no-transaction" in header_directives(row.rollback_sql)
            steps.append(RollbackStep(row, row.rollback_sql, "history", no_tx))
        elif migration is not None and migration.rollback is not None:
            rollback = migration.rollback
            no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(rollback.text)
            change = changed.get(row.version)
            warning = None
            if change is not None and change.cosmetic:
                warning = f"{change.filename}: comments or whitespace changed since {row.version_text} was applied"
            elif change is not None and allow_changed:
                warning = (f"{change.filename}: changed since {row.version_text} was applied "
                           "(allowed by --allow-changed)")
            elif change is not None:
                refused.append(change)
            steps.append(RollbackStep(row, rollback.text, str(rollback.path), no_tx, warning))
        else:
            where = migration.filename if migration else f"version {row.version_text}"
            recorded = (" (the history holds the rollback SQL recorded at apply time: pass --use-recorded "
                        "to run it)" if row.rollback_sql is not None else "")
            raise RollbackRefused(f"{where}: no rollback file ({row.version_text}_{row.name}.rollback.sql)"
                                  f"{recorded}; nothing was rolled back")
    if refused:
        names = ", ".join(c.filename for c in refused)
        diff = [line for c in refused for line in c.diff()]
        raise RollbackChanged(f"rollback file(s) changed in meaning since their migration was applied: {names}; "
                              "nothing was rolled back. Review the diff (recorded -> file), then pass "
                              "--allow-changed to run the file(s) or --use-recorded to run the rollback SQL "
                              "recorded at apply time", diff)
    return steps


ROLLBACK_MARK = "rollback "  # the error column of a row whose no-transaction rollback is unfinished starts so


def is_rollback_row(row: HistoryRow) -> bool:
    """Whether an unfinished row is an interrupted rollback (its error says so) rather than a migration."""
    return row.status != HistoryStatus.APPLIED and (row.error or "").startswith(ROLLBACK_MARK)


def rollback_step(row: HistoryRow, files: dict[int, Migration]) -> RollbackStep:
    """The rollback SQL of one recorded migration: its rollback file, else the text stored at apply time."""
    migration = files.get(row.version)
    if migration is not None and migration.rollback is not None:
        rollback = migration.rollback
        no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(rollback.text)
        return RollbackStep(row, rollback.text, str(rollback.path), no_tx)
    if migration is None and row.rollback_sql is not None:  # '' = nothing to undo
        no_tx = row.no_transaction or "poststack:no-transaction" in header_directives(row.rollback_sql)
        return RollbackStep(row, row.rollback_sql, "history", no_tx)
    where = migration.filename if migration else f"version {row.version_text}"
    raise RollbackRefused(f"{where}: no rollback file ({row.version_text}_{row.name}.rollback.sql); "
                          "nothing was rolled back")
