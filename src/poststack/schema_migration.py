"""MigrationRunner: the Python API for migrate, rollback, status and info. The CLI is a thin shell over it.

Every command that writes takes the advisory lock first and only then reads the history and plans, so two
deployers can never plan from the same stale state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from poststack.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_SCHEMA
from poststack.db.connection import mask_url
from poststack.db.history import HistoryRow, HistoryStatus
from poststack.db.lock import lock_holder
from poststack.db.lock_policy import LockPolicy, RetryContext
from poststack.db.session import application_name_of, reset_session
from poststack.engine import executor, stepwise
from poststack.engine import hints as migrate_hints
from poststack.engine.plan import (
    MigrationState,
    RollbackStep,
    compare,
    is_rollback_row,
    plan_migrate,
    plan_rollback,
)
from poststack.engine.target import Target
from poststack.errors import (
    ChecksumChanged,
    ConfirmationRequired,
    MigrationFailed,
    MigrationFileError,
    PlanChanged,
    StateError,
)
from poststack.source.files import Migration, transaction_control

if TYPE_CHECKING:  # imported where used: a no-op migrate needs none of them (start-up time, issue 15)
    from poststack.engine.info import MigrationInfo
    from poststack.engine.marking import MarkResult
    from poststack.engine.recovery import RecoverResult

from poststack.engine.results import (  # re-exported: the seed's import path for the results stays valid
    ConfirmRollback as ConfirmRollback,
)
from poststack.engine.results import MigrateResult as MigrateResult
from poststack.engine.results import MigrationStatus as MigrationStatus
from poststack.engine.results import RollbackResult as RollbackResult
from poststack.engine.results import StepResult as StepResult

Progress = Callable[[str, str, str], None]  # (event, version_text, name): "start"/"done" of each step




class MigrationRunner(Target):
    """Apply and roll back the migrations of one directory on one database.

    A Target (database, directory, history schema, lock timeout) with the commands on it, plus the statement
    lock-timeout policy that only running migrations needs.
    """

    def __init__(self, database_url: str | None = None, migrations_path: str | Path = "migrations", *,
                 history_schema: str = DEFAULT_SCHEMA, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 statement_lock_timeout: float | None = None, lock_retries: int = 0) -> None:
        super().__init__(database_url, migrations_path, history_schema=history_schema, lock_timeout=lock_timeout)
        self.lock_policy = LockPolicy(statement_lock_timeout, lock_retries)

    def _retry(self, progress: Progress | None, version_text: str) -> RetryContext | None:
        """The lock policy for one step, its retries told through progress ("retry", version, message)."""
        if not self.lock_policy.active:
            return None
        notify = (lambda message: progress("retry", version_text, message)) if progress else None
        return RetryContext(self.lock_policy, self.database_url, notify)

    # -- commands --------------------------------------------------------------------------------------
    def migrate(self, target: int | None = None, *, dry_run: bool = False, allow_changed: bool = False,
                allow_out_of_order: bool = False, progress: Progress | None = None) -> MigrateResult:
        """Apply pending migrations up to target (all when None), each with its history row."""
        migrations = self.load()
        migrations.raise_for_problems()
        plan_migrate(compare(migrations, []), target)  # an unknown --target fails before the history is created
        if dry_run:
            with self.connection() as conn:
                state = self.state(conn, migrations)
                return self._checked_plan(state, target, allow_changed, allow_out_of_order, dry_run=True, conn=conn)
        with self.locked(create_history=False) as conn, self._history_kept_only_if_used(conn), \
                migrate_hints.point_to_recover_on_duplicates():
            state = self.state(conn, migrations)
            result = self._checked_plan(state, target, allow_changed, allow_out_of_order, dry_run=False, conn=conn)
            baseline = application_name_of(conn)
            with self._snapshot_after(conn, result.steps, baseline), _checksums_ahead(result.planned):
                for migration in result.planned:
                    resumed = result.resuming.get(migration.version)
                    if progress:
                        progress("resume" if resumed else "start", migration.version_text, migration.name)
                    # Each migration starts from the same session state: a transactional one resets it at
                    # its end, in its own transaction (no extra round trip); a non-transactional one after it.
                    retry = self._retry(progress, migration.version_text)
                    try:
                        if resumed is not None or migration.no_transaction:
                            try:
                                ms = stepwise.apply_non_transactional(conn, self.history, migration, resumed,
                                                                      retry=retry)
                            finally:
                                _reset_if_usable(conn, baseline)
                        else:
                            ms = executor.apply_transactional(conn, self.history, migration, retry=retry,
                                                              reset_to=baseline)
                    except MigrationFailed as exc:  # a missing extension is re-worded to say what to do
                        # deferred: keeps start-up fast (only a failed migration needs the extension catalog)
                        from poststack.db.extensions import explain

                        raise explain(conn, self.database_url, exc) from None
                    result.steps.append(StepResult(migration.version, migration.version_text, migration.name,
                                                   ms, migration.no_transaction))
                    result.to_version = migration.version_text
                    if progress:
                        progress("done", migration.version_text, migration.name)
            result.to_version = _current_after(state, [s.version for s in result.steps])
            return result

    @contextmanager
    def _history_kept_only_if_used(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Create the history tables; when this run created them and fails before recording anything (a
        first migration whose SQL fails), remove them again, so the failure leaves no empty schema behind."""
        schema_existed = self.history.schema_exists(conn)
        created = not self.history.exists(conn)
        self.history.ensure(conn)
        try:
            yield
        except BaseException:
            if created and not conn.broken:
                with suppress(psycopg.Error):  # never hide the failure that stopped the run
                    self.history.remove_if_empty(conn, drop_schema=not schema_existed)
            raise

    @contextmanager
    def _snapshot_after(self, conn: psycopg.Connection[Any], steps: list[StepResult],
                        baseline: str) -> Iterator[None]:
        """Store the schema as poststack left it, once per run, so later drift is attributable.

        Also after a failure that followed successful steps: the snapshot must describe the version the
        history is at, or drift detection would compare against a stale state.
        """
        try:
            yield
        except BaseException:
            if steps and not conn.broken:
                with suppress(psycopg.Error):  # never hide the failure that stopped the run
                    reset_session(conn, baseline)
                    self._record_snapshot(conn)
            raise
        if steps:
            reset_session(conn, baseline)  # a migration's SET statement_timeout must not fail the snapshot
            self._record_snapshot(conn)

    def _record_snapshot(self, conn: psycopg.Connection[Any]) -> None:
        # deferred: keeps start-up fast (snapshots and fingerprints load only after something ran)
        from poststack.catalog.drift import record_snapshot

        record_snapshot(conn, self.history.schema)

    def _checked_plan(self, state: MigrationState, target: int | None, allow_changed: bool,
                      allow_out_of_order: bool, *, dry_run: bool,
                      conn: psycopg.Connection[Any] | None = None) -> MigrateResult:
        resuming = self._resumable(state, target)
        blocking = [c for c in state.blocking_changes if c.version not in resuming]
        if blocking and not allow_changed:
            names = ", ".join(c.filename for c in blocking)
            raise ChecksumChanged(f"applied migration file(s) changed since they were applied: {names}; "
                                  "restore them (the applied text is in the history: 'poststack db repair "
                                  "--dry-run' shows the diff), record the files with 'poststack db repair "
                                  "--issue-type checksum_mismatch --force', or pass --allow-changed")
        files = state.migrations.by_version()
        planned = sorted([files[v] for v in resuming] + plan_migrate(state, target), key=lambda m: m.version)
        for migration in planned:
            _refuse_transaction_control(migration.sql, str(migration.path), migration.no_transaction)
        highest = max((r.version for r in state.rows), default=None)
        late = [m for m in planned if highest is not None and m.version < highest and m.version not in resuming]
        if late and not allow_out_of_order:
            raise migrate_hints.out_of_order_refusal(conn, state, late)
        warnings = [f"{c.filename}: comments or whitespace changed since it was applied (cosmetic)"
                    for c in state.changed if c.kind == "cosmetic_change"]
        warnings += [f"{c.filename}: changed since it was applied (allowed by --allow-changed)"
                     for c in blocking]
        current = state.current_version_text
        after = _current_after(state, [m.version for m in planned]) if dry_run else current
        return MigrateResult(dry_run, current, after, planned=planned, warnings=warnings, resuming=resuming)

    @staticmethod
    def _resumable(state: MigrationState, target: int | None) -> dict[int, HistoryRow]:
        """The unfinished non-transactional migrations migrate resumes; refuse what it cannot resume."""
        resuming: dict[int, HistoryRow] = {}
        files = state.migrations.by_version()
        for row in state.unfinished:
            what = f"migration {row.version_text} ({row.name}) is '{row.status}' after an interrupted run"
            if is_rollback_row(row):
                raise StateError(f"the no-transaction rollback of {row.version_text} ({row.name}) was interrupted "
                                 "part-way; finish it with 'poststack db rollback' to a version below "
                                 f"{row.version_text} (it resumes), or see 'poststack db diagnose'")
            migration = files.get(row.version)
            if migration is None:
                raise StateError(f"{what} and its file is gone; restore the file to resume it, or see "
                                 "'poststack db diagnose'")
            if migration.checksum != row.checksum:
                raise StateError(f"{what} and {migration.filename} changed since: restore the text it ran to "
                                 "resume it, or see 'poststack db diagnose'")
            if not migration.no_transaction:
                raise StateError(f"{what} but {migration.filename} is no longer '-- poststack:no-transaction'; "
                                 "see 'poststack db diagnose'")
            if target is None or row.version <= target:
                resuming[row.version] = row
        return resuming

    def rollback(self, target_version: int, *, dry_run: bool = False, progress: Progress | None = None,
                 allow_changed: bool = False, use_recorded: bool = False,
                 confirm: ConfirmRollback | None = None, expected: Sequence[int] | None = None) -> RollbackResult:
        """Undo applied migrations newer than target_version (0 = all), newest first.

        The plan is made under the migration lock, and ``confirm`` (a prompt) sees that very plan while the
        lock is held, so what runs is what was confirmed: a deployer applying a migration meanwhile waits
        for the lock instead of slipping its version into the rollback. A caller that confirmed a plan
        earlier (a dry run shown to a person) passes its versions as ``expected``: a different plan under
        the lock is refused with both shown (PlanChanged). A False from ``confirm`` refuses
        (ConfirmationRequired); either way nothing was rolled back.
        """
        migrations = self.load()
        options = {"allow_changed": allow_changed, "use_recorded": use_recorded}
        if dry_run:
            with self.connection() as conn:
                state = self.state(conn, migrations)
                steps = _checked_rollback(state, target_version, **options)
                return RollbackResult(True, state.current_version_text, _target_text(state, target_version),
                                      planned=steps, warnings=_warnings(steps))
        with self.locked(create_history=False) as conn:
            state = self.state(conn, migrations)
            steps = _checked_rollback(state, target_version, **options)
            current = steps[0].row.version_text if steps else state.current_version_text  # may be unfinished
            result = RollbackResult(False, current, current, planned=steps, warnings=_warnings(steps))
            if expected is not None and list(expected) != result.planned_versions:
                raise PlanChanged(
                    "the rollback plan changed since it was confirmed (the history moved meanwhile); nothing was "
                    "rolled back: review the new plan and run the rollback again",
                    [f"confirmed: {_versions(list(expected), state)}",
                     f"now, under the lock: {_versions(result.planned_versions, state)}"])
            if confirm is not None and steps and not confirm(result):
                raise ConfirmationRequired(f"{result.describe()}: not confirmed")
            baseline = application_name_of(conn)
            with self._snapshot_after(conn, result.steps, baseline):
                for step in steps:
                    row = step.row
                    if progress:
                        progress("resume" if row.status != HistoryStatus.APPLIED else "start", row.version_text,
                                 row.name)
                    ms = executor.rollback_one(conn, self.history, step, retry=self._retry(progress, row.version_text),
                                               reset_to=baseline)  # each starts from the same session state
                    result.steps.append(StepResult(row.version, row.version_text, row.name, ms,
                                                   step.no_transaction))
                    if progress:
                        progress("done", row.version_text, row.name)
            result.to_version = _target_text(state, target_version)
            return result

    def step_up(self, *, progress: Progress | None = None) -> MigrateResult:
        """Apply exactly one migration: the lowest pending one (a data-migration test's N-1 -> N)."""
        migrations = self.load()
        with self.connection() as conn:
            pending = self.state(conn, migrations).pending
        if not pending:
            raise StateError(f"step_up: no pending migration in {self.migrations_path}; the database is at the head")
        return self.migrate(pending[0].version, progress=progress)

    def step_down(self, *, progress: Progress | None = None) -> RollbackResult:
        """Roll back exactly one migration: the newest applied one."""
        with self.connection() as conn:
            applied = sorted(r.version for r in self.history.rows(conn) if r.status == HistoryStatus.APPLIED)
        if not applied:
            raise StateError("step_down: no migration is applied")
        return self.rollback(applied[-2] if len(applied) > 1 else 0, progress=progress)

    def status(self) -> MigrationStatus:
        migrations = self.load()
        with self.connection() as conn:
            exists = self.history.exists(conn)
            state = self.state(conn, migrations)
            holder = lock_holder(conn, self.history.schema)
        return MigrationStatus(mask_url(self.database_url), exists, state.current_version_text, state.applied,
                               state.pending, state.changed, state.missing_files, state.unfinished,
                               state.out_of_order, holder, state.changed_rollbacks)

    def info(self, version: int | None = None) -> list[MigrationInfo]:
        migrations = self.load()
        with self.connection() as conn:
            state = self.state(conn, migrations)
        # deferred: keeps start-up fast (a no-op migrate never describes)
        from poststack.engine.info import describe

        return describe(state, version)

    def recover(self, *, dry_run: bool = False, force: bool = False, dev_url: str | None = None) -> RecoverResult:
        """Record untracked migrations the replayed states prove applied (see poststack.engine.recovery).

        ``dev_url``: a server to replay the migrations on (default: the target's server, else the embedded one).
        """
        # deferred: keeps start-up fast (replay, judgement and snapshots load only for recover)
        from poststack.engine.recovery import recover

        return recover(self, dry_run=dry_run, force=force, dev_url=dev_url)

    def mark(self, version: int, *, applied: bool = True, through: bool = False, reason: str | None = None,
             dry_run: bool = False, force: bool = False, dev_url: str | None = None) -> MarkResult:
        """Record (or with ``applied=False`` remove) history rows without running SQL (see poststack.engine.marking).

        ``through``: every version up to ``version`` (applied), or from it on (pending). Refused when the
        replayed states contradict the history it would leave, unless ``force``.
        """
        # deferred: keeps start-up fast (replay, judgement and snapshots load only for mark)
        from poststack.engine.marking import mark

        return mark(self, version, applied=applied, through=through, reason=reason, dry_run=dry_run,
                    force=force, dev_url=dev_url)


def _reset_if_usable(conn: psycopg.Connection[Any], baseline: str) -> None:
    """Reset the session after a non-transactional step, unless the connection cannot take it (a failure
    is being raised, and must not be hidden by this)."""
    if not conn.broken and not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        with suppress(psycopg.Error):
            reset_session(conn, baseline)


def _refuse_transaction_control(text: str, where: str, no_transaction: bool) -> None:
    """Refuse, before anything runs, a transactional file that would COMMIT or ROLLBACK poststack's transaction."""
    statement = None if no_transaction else transaction_control(text)
    if statement is not None:
        raise MigrationFileError(f"{where}:{statement.line}: '{' '.join(statement.text.split())}' would take "
                                 "transaction control from poststack, which commits this file and its history row "
                                 "in one transaction; remove it, or mark the file '-- poststack:no-transaction'",
                                 problem="transaction_control")


def _checked_rollback(state: MigrationState, target: int, *, allow_changed: bool,
                      use_recorded: bool) -> list[RollbackStep]:
    steps = plan_rollback(state, target, allow_changed=allow_changed, use_recorded=use_recorded)
    for step in steps:
        _refuse_transaction_control(step.sql, step.source, step.no_transaction)
    return steps


@contextmanager
def _checksums_ahead(planned: list[Migration]) -> Iterator[None]:
    """Parse the planned migrations for their semantic checksums on a second thread, ahead of the loop.

    The parse is client CPU every migration needs for its history row; done here it overlaps with the server
    running the previous migration, while the main thread waits on the socket with the GIL released.
    """
    if len(planned) < 2:
        yield
        return

    from concurrent.futures import ThreadPoolExecutor  # only when something will run: start-up time (issue 15)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poststack-checksums")
    for migration in planned:
        pool.submit(getattr, migration.up, "semantic_checksum")  # a cached property: computed once, kept
    try:
        yield
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _current_after(state: MigrationState, applied: list[int]) -> str | None:
    """The current version once ``applied`` are recorded too: the highest, so out-of-order runs keep it."""
    written = {r.version: r.version_text for r in state.applied}
    written.update({m.version: m.version_text for m in state.migrations if m.version in set(applied)})
    return written[max(written)] if written else None


def _warnings(steps: list[RollbackStep]) -> list[str]:
    return [s.warning for s in steps if s.warning]


def _versions(versions: list[int], state: MigrationState) -> str:
    """Versions as written ('003, 002'), or 'nothing'."""
    written = {r.version: r.version_text for r in state.rows}
    return ", ".join(written.get(v, str(v)) for v in versions) or "nothing"


def _target_text(state: MigrationState, target: int) -> str | None:
    if target == 0:
        return None
    return next((r.version_text for r in state.applied if r.version == target), str(target))
