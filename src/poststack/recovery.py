"""``recover``: record migrations that already ran outside poststack, from catalog evidence only.

The unified-project scenario: files were applied by hand or by another tool, so they have no history row.
Walking the untracked files in version order, recover records each one the catalog shows as ``present``
(source ``recover``, audited), and stops at the first that does not fit a plain "applied up to here" story:

- ``partial``: some of its objects exist, some do not. Refused, object by object; nothing after it is recorded.
- ``absent``: it is simply pending, and so is everything after it. If a later file is nevertheless present
  (or partial), the evidence is out of order: refused, never guessed around.
- ``uncheckable`` (only INSERTs, a DO block...): refused unless ``force``, which records it and says so.

It also adopts the seed's legacy history ``public.schema_migrations``: each row is imported (source
``import``, audited, keeping its applied_at, applied_by and timing) after its SQL is checked against the
catalog; one row whose objects are absent or partial refuses the whole import. Everything is planned first
and written in one transaction under the migration lock: recover records its whole plan or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from poststack.drift import record_snapshot
from poststack.errors import EXIT_ISSUES, EXIT_OK, MigrationFileError
from poststack.evidence import ABSENT, PARTIAL, PRESENT, UNCHECKABLE, Evidence, assess
from poststack.files import Migration
from poststack.history import History
from poststack.legacy import LEGACY_TABLE, LegacyRow, legacy_migration, legacy_rows, matches_file

if TYPE_CHECKING:
    from poststack.schema_migration import MigrationRunner

RECORD, RECORD_FORCED, IMPORT = "record", "record_forced", "import"
PENDING, REFUSED, BLOCKED, ALREADY = "pending", "refused", "blocked", "already_recorded"
WRITES = (RECORD, RECORD_FORCED, IMPORT)


@dataclass(frozen=True)
class RecoverStep:
    """What recover did (or, in a dry run, would do) with one version, and the evidence it decided on."""

    version: int
    version_text: str
    name: str
    action: str  # record | record_forced | import | pending | refused | blocked | already_recorded
    reason: str
    status: str | None = None  # the catalog evidence: present | absent | partial | uncheckable
    evidence: list[str] = field(default_factory=list)
    origin: str = "file"  # file: an untracked migration file; legacy: a row of public.schema_migrations


@dataclass
class RecoverResult:
    dry_run: bool
    force: bool
    legacy_table: str | None = None  # set when a legacy history table was found
    steps: list[RecoverStep] = field(default_factory=list)

    @property
    def recorded(self) -> list[RecoverStep]:
        """Recorded or imported (in a dry run: would be)."""
        return [s for s in self.steps if s.action in WRITES]

    @property
    def refused(self) -> list[RecoverStep]:
        return [s for s in self.steps if s.action == REFUSED]

    @property
    def pending(self) -> list[RecoverStep]:
        return [s for s in self.steps if s.action == PENDING]

    @property
    def exit_code(self) -> int:
        """1 when something was refused (mixed evidence needs a human), else 0."""
        return EXIT_ISSUES if self.refused else EXIT_OK


def _step(m: Migration, action: str, reason: str, ev: Evidence | None = None, origin: str = "file") -> RecoverStep:
    return RecoverStep(m.version, m.version_text, m.name, action, reason, ev.status if ev else None,
                       ev.lines if ev else [], origin)


def _plan_legacy(rows: list[LegacyRow], candidates: dict[int, Migration], evidence: dict[int, Evidence],
                 recorded: set[int]) -> list[RecoverStep]:
    """Import the legacy rows whose SQL the catalog confirms; if any is contradicted, import none."""
    steps = []
    for row in rows:
        if row.version is None:
            steps.append(RecoverStep(-1, row.version_text, row.description or "", REFUSED,
                                     f"{LEGACY_TABLE} row {row.version_text!r}: not a numeric version",
                                     origin="legacy"))
            continue
        m = candidates[row.version]
        if row.version in recorded:
            steps.append(_step(m, ALREADY, "already in poststack's history", origin="legacy"))
            continue
        ev = evidence[m.version]
        if ev.error:
            raise MigrationFileError(f"{ev.error} (needed to verify {LEGACY_TABLE} version {row.version_text})")
        if ev.status in (ABSENT, PARTIAL):
            what = "none of its objects exist" if ev.status == ABSENT else "only some of its objects exist"
            steps.append(_step(m, REFUSED, f"{LEGACY_TABLE} says it was applied, but {what}: {ev.summary()}",
                               ev, "legacy"))
            continue
        notes = [f"applied {row.applied_at:%Y-%m-%d %H:%M:%S} by {row.applied_by or 'unknown'}"
                 if isinstance(row.applied_at, datetime) else "applied (time unknown)"]
        if ev.status == UNCHECKABLE:
            notes.append("no catalog object to verify it: imported on the legacy record alone")
        if row.file is None:
            notes.append("no migration file: imported from the stored record")
        elif not matches_file(row, row.file):
            notes.append("its file changed since it was applied: diagnose will report checksum_mismatch")
        steps.append(_step(m, IMPORT, "; ".join(notes) + f"; catalog: {ev.summary()}", ev, "legacy"))
    if any(s.action == REFUSED for s in steps):
        # Mixed evidence about the legacy history: importing the rest would be a guess.
        first = next(s for s in steps if s.action == REFUSED)
        steps = [s if s.action in (REFUSED, ALREADY) else
                 RecoverStep(s.version, s.version_text, s.name, BLOCKED,
                             f"not imported: legacy version {first.version_text} was refused", s.status,
                             s.evidence, "legacy") for s in steps]
    return steps


def _plan_files(untracked: list[Migration], evidence: dict[int, Evidence], force: bool) -> list[RecoverStep]:
    """Walk the untracked files in version order: record the present prefix, stop at what does not fit."""
    steps: list[RecoverStep] = []
    first_absent: Migration | None = None
    stopped: Migration | None = None
    for m in untracked:
        ev = evidence[m.version]
        if ev.error:
            raise MigrationFileError(f"{ev.error} (recover reads every untracked migration)")
        if stopped is not None:
            steps.append(_step(m, BLOCKED, f"not examined for recording: stopped at {stopped.version_text}", ev))
        elif first_absent is not None:
            if ev.status in (PRESENT, PARTIAL):
                steps.append(_step(m, REFUSED, f"its objects exist but those of the earlier migration "
                                               f"{first_absent.version_text} do not: out-of-order evidence, "
                                               f"not guessed around; {ev.summary()}", ev))
                stopped = m
            else:
                steps.append(_step(m, PENDING, f"pending, after pending {first_absent.version_text}; "
                                               f"{ev.summary()}", ev))
        elif ev.status == PRESENT:
            steps.append(_step(m, RECORD, f"catalog: {ev.summary()}", ev))
        elif ev.status == ABSENT:
            steps.append(_step(m, PENDING, f"pending: {ev.summary()}", ev))
            first_absent = m
        elif ev.status == PARTIAL:
            steps.append(_step(m, REFUSED, f"partially applied: {ev.summary()}", ev))
            stopped = m
        elif force:
            steps.append(_step(m, RECORD_FORCED, f"recorded on --force without catalog evidence: {ev.summary()}",
                               ev))
        else:
            steps.append(_step(m, REFUSED, f"{ev.summary()}; if it was applied, run recover with --force", ev))
            stopped = m
    return steps


@dataclass
class _Plan:
    result: RecoverResult
    migrations: dict[int, Migration]  # what each write records: the file, or the legacy row's applied SQL
    legacy: dict[int, LegacyRow]


def _make_plan(conn: psycopg.Connection[Any], history: History, migrations: list[Migration],
               directory: Path, force: bool) -> _Plan:
    result = RecoverResult(dry_run=True, force=force)
    history_rows = history.rows(conn)
    recorded = {r.version for r in history_rows}
    applied = {r.version for r in history_rows if r.status == "applied"}  # not a crashed 'running' one
    files = {m.version: m for m in migrations}
    rows = legacy_rows(conn, files)
    if rows is not None:
        result.legacy_table = LEGACY_TABLE
    legacy = {r.version: r for r in rows or () if r.version is not None}
    applied_as = {v: legacy_migration(r, directory) for v, r in legacy.items()}
    # The catalog is judged against what was applied: the legacy SQL when the file has changed since.
    judged = {**files, **{v: m for v, m in applied_as.items() if v not in recorded}}
    untracked = [m for v, m in sorted(files.items()) if v not in recorded and v not in legacy]
    targets = {m.version for m in untracked} | (set(legacy) - recorded)
    evidence = assess(conn, list(judged.values()), only=targets, applied=applied) if targets else {}
    result.steps = _plan_legacy(rows or [], applied_as, evidence, recorded)
    if any(s.action in (REFUSED, BLOCKED) for s in result.steps):
        result.steps += [_step(m, BLOCKED, "not examined: resolve the legacy history first", evidence.get(m.version))
                         for m in untracked]
    else:
        result.steps += _plan_files(untracked, evidence, force)
    return _Plan(result, judged, legacy)


def _write(conn: psycopg.Connection[Any], history: History, planned: _Plan) -> None:
    """Record the plan in one transaction: history rows first, then one audit entry per row."""
    writes = [s for s in planned.result.steps if s.action in WRITES]
    if not writes:
        return
    with conn.transaction():
        for s in writes:
            if s.action == IMPORT:
                row = planned.legacy[s.version]
                history.insert(conn, planned.migrations[s.version], source="import", execution_ms=row.execution_ms)
                history.update(conn, s.version, **row.history_overrides())
            else:
                history.insert(conn, planned.migrations[s.version], source="recover")
        after = {r.version: r for r in history.rows(conn)}
        for s in writes:
            action = {IMPORT: "import", RECORD: "recover", RECORD_FORCED: "recover_forced"}[s.action]
            history.audit(conn, command="recover", action=action, version=s.version, before=None,
                          after=after[s.version], reason=s.reason)


def recover(runner: MigrationRunner, *, dry_run: bool = False, force: bool = False) -> RecoverResult:
    """Plan from evidence, then (unless dry_run) record under the migration lock in one transaction."""
    migration_set = runner.load()
    migration_set.raise_for_problems()
    migrations = list(migration_set)
    if dry_run:
        with runner.connection() as conn:
            return _make_plan(conn, runner.history, migrations, migration_set.directory, force).result
    with runner.locked() as conn:  # the plan is computed after the lock is held, never before
        planned = _make_plan(conn, runner.history, migrations, migration_set.directory, force)
        _write(conn, runner.history, planned)
        if planned.result.recorded:
            # The history moved to a new version: without a reference taken at it, drift could not be
            # checked until the next migrate. The catalog is what recover just vouched for.
            record_snapshot(conn, runner.history.schema)
        planned.result.dry_run = False
        return planned.result
