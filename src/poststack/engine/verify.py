"""Proving rollbacks: apply, roll back and re-apply every migration on a scratch database.

For each migration in version order: snapshot the schema, apply the migration, roll it back, snapshot
again and require the two snapshots to be equal, then apply it again (a rollback that leaves something
behind usually also makes the re-apply fail). Everything runs through the engine's executor and history,
so what is verified is what ``migrate`` and ``rollback`` do. A transactional migration is run statement by
statement inside its transaction so that the locks each statement takes can be read (``verify_locks``);
its atomicity is unchanged.

The work happens on a database poststack creates on the target's server and drops afterwards; the target
database is never changed. ``Verifier`` is the step-by-step API (one migration at a time, as a pytest
plugin wants it); ``verify_migrations`` is the whole command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from poststack.catalog.lock_recorder import LockTaken, Rewrite
from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.config import DEFAULT_SCHEMA
from poststack.db.connection import connect, mask_url
from poststack.db.history import History, HistoryStatus
from poststack.db.scratch_databases import SCRATCH_PREFIX as SCRATCH_PREFIX
from poststack.db.scratch_databases import maintenance_connection as maintenance_connection
from poststack.db.scratch_databases import may_create_databases as may_create_databases
from poststack.db.scratch_databases import scratch_database
from poststack.engine import executor
from poststack.engine.filler import FillError, fill_tables
from poststack.engine.plan import RollbackStep
from poststack.engine.verify_observed import StatementTiming, apply_observed
from poststack.engine.verify_states import Shadow, content_digest
from poststack.errors import MigrationFailed, UsageError
from poststack.errors import (
    ScratchDatabaseError as ScratchDatabaseError,  # re-exported: verify's name since the first version
)
from poststack.source.files import Migration, MigrationSet, header_directives, load_migrations


class VerifyStatus(StrEnum):
    """The verdict on one migration (see MigrationVerification); the order is the reports' order."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    UNVERIFIABLE = "unverifiable"
    SKIPPED = "skipped"


STATUSES = tuple(VerifyStatus)


@dataclass
class MigrationVerification:
    """The verdict on one migration.

    ``status``: passed; failed (its rollback left ``differences``; a re-apply that then failed is in
    ``error``); error (``phase`` fill, apply, rollback or reapply raised ``error``); unverifiable (no rollback
    file: applied, never rolled back; see ``reason``); skipped (an earlier migration's error left no state
    to verify it from).
    """

    version: int
    version_text: str
    name: str
    file: str
    status: VerifyStatus = VerifyStatus.PASSED
    differences: list[str] = field(default_factory=list)
    error: str | None = None
    phase: str | None = None
    reason: str | None = None  # why a migration is unverifiable or skipped
    locks: list[LockTaken] = field(default_factory=list)
    locks_observed: bool = True  # false for no-transaction migrations: locks end with each statement
    rewrites: list[Rewrite] = field(default_factory=list)  # existing relations given new storage
    statements: list[StatementTiming] = field(default_factory=list)  # per statement: duration, lock holds
    rows: int | None = None  # with --rows: each table that existed before the migration had this many
    elapsed_ms: int = 0

    @property
    def passed(self) -> bool:
        return self.status == VerifyStatus.PASSED

    def describe(self) -> str:
        """The verdict in words, one line per fact: what a failing generated test prints."""
        head = f"migration {self.version_text} ({self.file}): {self.status}"
        lines = [head, *(f"  {d}" for d in self.differences)]
        lines += [f"  {text}" for text in (self.error, self.reason) if text]
        return "\n".join(lines)


@dataclass
class VerifyReport:
    """All verdicts of one run; ``ok`` is what the exit code reflects."""

    server: str  # masked URL of the server the scratch database lived on
    migrations: list[MigrationVerification] = field(default_factory=list)
    allow_unverifiable: bool = False

    def count(self, status: VerifyStatus) -> int:
        return sum(1 for m in self.migrations if m.status == status)

    @property
    def ok(self) -> bool:
        accepted = {VerifyStatus.PASSED}
        if self.allow_unverifiable:
            accepted.add(VerifyStatus.UNVERIFIABLE)
        return all(m.status in accepted for m in self.migrations)


Progress = Callable[[MigrationVerification], None]


# -- one migration at a time ------------------------------------------------------------------------------
class Verifier:
    """Verifies migrations in order on an empty database it may change freely (a scratch database).

    ``verify(m)`` first applies any earlier migration not yet applied, so a caller may verify a chosen
    subset; ``apply(m)`` only applies. Each result says what happened; nothing raises for a migration's
    own failure. Use as a context manager (it holds one connection).
    """

    def __init__(self, database_url: str, migrations: MigrationSet, *,
                 history_schema: str = DEFAULT_SCHEMA, rows: int | None = None,
                 shadow: Shadow | None = None, column_order: bool = True) -> None:
        self.migrations = migrations
        self.rows = rows  # fill every existing table to this many rows before each verified migration
        self.column_order = column_order  # False: a rollback that only reorders columns passes
        self.history = History(history_schema)
        self.conn = connect(database_url, autocommit=True)
        self.history.ensure(self.conn)
        self.broken: MigrationVerification | None = None  # the failure that stops further verification
        self.shadow = shadow  # the state before each migration, when given (see verify_states)
        self._applied: set[int] | None = None  # what this verifier applied; None: read the history again

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def snapshot(self) -> Snapshot:
        return snapshot(self.conn, exclude_schemas=(self.history.schema,))

    def applied_versions(self) -> set[int]:
        # Kept in memory while every change came from this verifier: reading the whole history before each
        # migration made a long verify quadratic. Any failure drops it, and the history is read again.
        if self._applied is None:
            self._applied = {r.version for r in self.history.rows(self.conn) if r.status == HistoryStatus.APPLIED}
        return set(self._applied)

    def digest(self) -> str:
        return content_digest(self.conn, (self.history.schema,))

    def _before(self, migration: Migration) -> tuple[str, Snapshot | None]:
        """What the rollback check compares with: the digest now, and a full snapshot unless a shadow
        database can give one later, should the digests differ."""
        digest = self.digest()
        if self.shadow is not None and self.shadow.catch_up(self.applied_versions()):
            return digest, None
        return digest, self.snapshot()

    def verify(self, migration: Migration) -> MigrationVerification:
        """Apply, roll back, compare, re-apply ``migration`` (after bringing earlier ones up)."""
        result = _result_for(migration)
        start = time.perf_counter()
        try:
            if self._skip_if_broken(result) or self._bring_up_to(migration, result):
                return result
            if migration.version in self.applied_versions():
                raise UsageError(f"migration {migration.version_text} is already applied on the scratch database")
            if self.rows and not self._fill(result):
                return result
            before = self._before(migration) if migration.has_rollback else ("", None)
            if not self._apply(migration, result, "apply") or not self._rollback_checked(migration, result, before):
                return result
            if not migration.has_rollback:
                return result
            self._apply(migration, result, "reapply", record_locks=False)
            return result
        finally:
            result.elapsed_ms = int((time.perf_counter() - start) * 1000)

    def apply(self, migration: Migration) -> MigrationVerification:
        """Apply only (with the lock report); the result is ``passed`` or ``error``."""
        result = _result_for(migration)
        if not self._skip_if_broken(result) and not self._bring_up_to(migration, result):
            self._apply(migration, result, "apply")
        return result

    def replay_through(self, version: int) -> None:
        """Apply (without verifying) every unapplied migration up to and including ``version``."""
        applied = self.applied_versions()
        for migration in self.migrations:
            if migration.version > version or self.broken is not None:
                break
            if migration.version not in applied:
                self._apply(migration, _result_for(migration), "apply", record_locks=False)

    # -- steps ---------------------------------------------------------------------------------------------
    def _skip_if_broken(self, result: MigrationVerification) -> bool:
        if self.broken is None:
            return False
        result.status = VerifyStatus.SKIPPED
        result.reason = (f"not verified: migration {self.broken.version_text} failed to "
                        f"{self.broken.phase or 'apply'}, so the schema it needs does not exist")
        return True

    def _bring_up_to(self, migration: Migration, result: MigrationVerification) -> bool:
        """Apply earlier unapplied migrations; True (and result skipped) if one of them failed."""
        applied = self.applied_versions()
        for earlier in self.migrations:
            if earlier.version >= migration.version or earlier.version in applied:
                continue
            step = _result_for(earlier)
            if not self._apply(earlier, step, "apply", record_locks=False):
                self.broken = step
                return self._skip_if_broken(result)
        return False

    def _fill(self, result: MigrationVerification) -> bool:
        """Top every table that exists now up to ``rows`` rows (``verify --rows``)."""
        try:
            fill_tables(self.conn, self.rows or 0, exclude_schemas=(self.history.schema,))
        except FillError as exc:
            _fail(result, "fill", str(exc))
            return False
        result.rows = self.rows
        return True

    def _apply(self, migration: Migration, result: MigrationVerification, phase: str, *,
               record_locks: bool = True) -> bool:
        try:
            if migration.no_transaction:
                executor.apply_non_transactional(self.conn, self.history, migration)
                if record_locks:
                    result.locks_observed = False
            else:
                seen = apply_observed(self.conn, self.history, migration)
                if record_locks:
                    result.locks, result.rewrites, result.statements = seen.locks, seen.rewrites, seen.statements
        except MigrationFailed as exc:
            self._applied = None
            _fail(result, phase, str(exc))
            self.broken = result  # whether apply or re-apply failed, the migration is not in the schema
            return False
        if self._applied is not None:
            self._applied.add(migration.version)
        if not migration.has_rollback and phase == "apply":
            result.status = VerifyStatus.UNVERIFIABLE
            result.reason = f"no rollback file ({migration.version_text}_{migration.name}.rollback.sql)"
        return True

    def _rollback_checked(self, migration: Migration, result: MigrationVerification,
                          before: tuple[str, Snapshot | None]) -> bool:
        if not migration.has_rollback:
            return True
        row = self.history.row(self.conn, migration.version)
        assert row is not None and migration.rollback is not None
        no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(migration.rollback.text)
        step = RollbackStep(row, migration.rollback.text, str(migration.rollback.path), no_tx)
        try:
            executor.rollback_one(self.conn, self.history, step)
        except MigrationFailed as exc:
            # A transactional rollback left the migration applied, so later ones can still be verified.
            self._applied = None
            _fail(result, "rollback", str(exc))
            if no_tx:
                self.broken = result
            return False
        if self._applied is not None:
            self._applied.discard(migration.version)
        digest, snap = before
        if self.digest() != digest:  # equal digests: the catalog is as it was, no snapshot needed
            if snap is None:
                assert self.shadow is not None  # _before left the snapshot to the shadow
                snap = self.shadow.snapshot()
            result.differences = snap.diff(self.snapshot(), missing="missing after rollback",
                                           added="left behind by rollback", column_order=self.column_order)
        if result.differences:
            result.status = VerifyStatus.FAILED
            if migration.rollback.is_no_op:
                result.reason = ("the rollback file has no statements (nothing to undo), but the migration "
                                 "changed the schema")
        return True


def _result_for(migration: Migration) -> MigrationVerification:
    return MigrationVerification(migration.version, migration.version_text, migration.name, str(migration.path))


def _fail(result: MigrationVerification, phase: str, error: str) -> None:
    if result.status != VerifyStatus.FAILED:  # differences left by the rollback stay the headline; the error explains
        result.status = VerifyStatus.ERROR
    result.phase = phase
    result.error = error if phase == "apply" else f"{phase}: {error}"


# -- the whole command ------------------------------------------------------------------------------------
def select(migrations: MigrationSet, from_version: int | None, to_version: int | None) -> list[Migration]:
    """The migrations to verify: versions within [from, to], both optional and inclusive."""
    if from_version is not None and to_version is not None and from_version > to_version:
        raise UsageError(f"--from {from_version} is after --to {to_version}")
    known = migrations.by_version()
    for option, version in (("--from", from_version), ("--to", to_version)):
        if version is not None and version not in known:
            raise UsageError(f"{option} {version}: no migration file has version {version}")
    return [m for m in migrations
            if (from_version is None or m.version >= from_version)
            and (to_version is None or m.version <= to_version)]


def verify_migrations(database_url: str, migrations_path: str | Path, *, from_version: int | None = None,
                      to_version: int | None = None, history_schema: str = DEFAULT_SCHEMA,
                      allow_unverifiable: bool = False, progress: Progress | None = None,
                      rows: int | None = None, column_order: bool = True) -> VerifyReport:
    """Verify the selected migrations on a scratch database on ``database_url``'s server.

    Migrations before ``from_version`` are applied (not verified) first, so each one is verified on the
    schema it will meet in production. When a rollback leaves differences or breaks the re-apply, the run
    continues on a fresh scratch database brought up to the same version, so one bad rollback neither
    hides nor distorts the verdicts on later migrations. Scratch databases are dropped afterwards.
    ``column_order=False`` accepts a rollback that restores every column but not their order.
    """
    migrations = load_migrations(migrations_path)
    migrations.raise_for_problems()
    chosen = select(migrations, from_version, to_version)
    report = VerifyReport(mask_url(database_url), allow_unverifiable=allow_unverifiable)
    with ExitStack() as outer, ExitStack() as scratch:
        # One shadow for the whole run: it only ever moves forward, also across the rebuilds below.
        shadow = outer.enter_context(Shadow(outer.enter_context(scratch_database(database_url)), migrations,
                                            history_schema))
        verifier = _fresh_verifier(scratch, database_url, migrations, history_schema, rows, shadow, column_order)
        last: MigrationVerification | None = None
        for migration in chosen:
            broken = verifier.broken
            if ((last is not None and last.status == VerifyStatus.FAILED)
                    or (broken is not None and broken.phase != "apply")):
                # The scratch schema is not what production has after ``last``, but ``last`` applies
                # cleanly: rebuild that state on a new scratch database and go on from there.
                scratch.close()
                verifier = _fresh_verifier(scratch, database_url, migrations, history_schema, rows, shadow,
                                           column_order)
                replayed = broken or last
                assert replayed is not None  # the condition above holds only when one of them is set
                verifier.replay_through(replayed.version)
            result = last = verifier.verify(migration)
            report.migrations.append(result)
            if progress:
                progress(result)
    return report


def verify_migration(database_url: str, migrations: MigrationSet, version: int, *,
                     history_schema: str = DEFAULT_SCHEMA) -> MigrationVerification:
    """Verify one migration on its own scratch database (earlier ones applied first, not verified).

    Independent of any other call, so one generated test per version can run in any order or on any
    pytest-xdist worker; ``Verifier`` is cheaper when the whole directory is verified in one process.
    """
    migration = migrations.get(version)
    if migration is None:
        raise UsageError(f"no migration file has version {version}")
    with scratch_database(database_url) as scratch, Verifier(scratch, migrations,
                                                            history_schema=history_schema) as verifier:
        return verifier.verify(migration)


def _fresh_verifier(stack: ExitStack, database_url: str, migrations: MigrationSet,
                    history_schema: str, rows: int | None = None, shadow: Shadow | None = None,
                    column_order: bool = True) -> Verifier:
    url = stack.enter_context(scratch_database(database_url))
    return stack.enter_context(Verifier(url, migrations, history_schema=history_schema, rows=rows, shadow=shadow,
                                        column_order=column_order))
