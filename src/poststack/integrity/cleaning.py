"""clean: the blunt tools, each shown before it is used and audited after.

* ``locks``: report who holds the migration lock (pg_locks + pg_stat_activity, and what it waits on via
  pg_blocking_pids); end it with pg_terminate_backend only when forced.
* ``failed``: delete the history rows of failed or crashed non-transactional migrations, so that migrate can
  run them again. A row whose objects the catalog shows complete is refused: deleting it would make the
  history lie (``repair`` marks it applied instead).
* ``duplicates``: poststack's own history keys on version, so it cannot hold duplicates; the legacy
  ``public.schema_migrations`` table of the seed's layout can, and its extra rows are deleted, keeping the
  earliest applied row of each version (that is the one that ran).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg

from poststack.catalog.object_evidence import EvidenceStatus
from poststack.db.history import HistoryStatus
from poststack.db.legacy import LEGACY_TABLE, legacy_duplicates
from poststack.db.lock import LockHolder, describe_pids, lock_holder, migration_lock, terminate_holder
from poststack.integrity import catalog_facts
from poststack.integrity.gathering import Inspected
from poststack.source.files import load_migrations, version_of


class CleanKind(StrEnum):
    """What one clean action does; also the audit entry's action when it is done."""

    END_LOCK_HOLDER = "end_lock_holder"
    DELETE_FAILED_ROW = "delete_failed_row"
    DELETE_DUPLICATE_ROW = "delete_duplicate_row"


@dataclass(frozen=True)
class CleanAction:
    kind: CleanKind
    description: str
    version: int | None = None
    needs_force: bool = False
    details: list[str] = field(default_factory=list)
    target: str | None = None  # the pid, the ctid of a legacy row, or the identity of a failed history row


@dataclass
class CleanPlan:
    actions: list[CleanAction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock: LockHolder | None = None


@dataclass
class CleanResult:
    done: list[CleanAction] = field(default_factory=list)
    skipped: list[tuple[CleanAction, str]] = field(default_factory=list)


class Cleaner:
    def __init__(self, diagnostics: Inspected) -> None:
        self.diag = diagnostics
        self.history = diagnostics.history

    def plan(self, *, locks: bool, failed: bool, duplicates: bool) -> CleanPlan:
        plan = CleanPlan()
        with self.diag.connection() as conn:
            if locks:
                self._plan_locks(conn, plan)
            if failed:
                self._plan_failed(conn, plan)
            if duplicates:
                self._plan_duplicates(conn, plan)
        return plan

    def _plan_locks(self, conn: psycopg.Connection[Any], plan: CleanPlan) -> None:
        holder = plan.lock = lock_holder(conn, self.history.schema)
        if holder is None:
            plan.notes.append("lock: free")
            return
        details = [f"holder: {holder.describe()}"]
        if holder.query:
            details.append(f"last query: {' '.join(holder.query.split())[:200]}")
        for pid, what in describe_pids(conn, holder.blocked_by).items():
            details.append(f"waits on pid {pid}: {what}")
        plan.actions.append(CleanAction(CleanKind.END_LOCK_HOLDER,
                                        f"end backend pid {holder.pid} holding the migration lock",
                                        None, True, details, str(holder.pid)))

    def _plan_failed(self, conn: psycopg.Connection[Any], plan: CleanPlan) -> None:
        migrations = load_migrations(self.diag.migrations_path)
        facts = self.diag.gather(conn, migrations)
        holder = facts.holder
        for row in facts.state.unfinished:
            evidence = catalog_facts.evidence_lines(facts, row.version)
            label = f"migration {row.version_text} ({row.name})"
            if row.status == HistoryStatus.RUNNING and holder is not None:
                plan.notes.append(f"{label} is 'running' while pid {holder.pid} holds the lock: left alone")
                continue
            ev = facts.evidence.get(row.version)
            complete = ev is not None and ev.status == EvidenceStatus.PRESENT
            if complete and not catalog_facts.owned_invalid(facts, row.version):
                plan.notes.append(f"{label}: the catalog shows all its objects; 'poststack db repair' marks it "
                                  "applied instead of deleting it")
                continue
            plan.actions.append(CleanAction(CleanKind.DELETE_FAILED_ROW,
                                            f"delete the {row.status} history row of {label}",
                                            row.version, False, evidence, _row_identity(row)))

    def _plan_duplicates(self, conn: psycopg.Connection[Any], plan: CleanPlan) -> None:
        plan.notes.append(f"{self.history.schema}.migrations keys on version: it cannot hold duplicates")
        for ctid, version, data in legacy_duplicates(conn):
            plan.actions.append(CleanAction(CleanKind.DELETE_DUPLICATE_ROW,
                                            f"delete duplicate row of version {version} from {LEGACY_TABLE}",
                                            version_of(version), False, [data], ctid))
        if not any(a.kind == CleanKind.DELETE_DUPLICATE_ROW for a in plan.actions):
            plan.notes.append(f"{LEGACY_TABLE}: no duplicate rows (or no such table)")

    # -- applying ----------------------------------------------------------------------------------------
    def apply(self, plan: CleanPlan, *, force: bool) -> CleanResult:
        result = CleanResult()
        for action in plan.actions:
            if action.needs_force and not force:
                result.skipped.append((action, "needs --force"))
        if force:
            for action in (a for a in plan.actions if a.kind == CleanKind.END_LOCK_HOLDER):
                if plan.lock is not None and self.end_lock_holder(dry_run=False, command="clean",
                                                                  judged=plan.lock):
                    result.done.append(action)
                else:
                    result.skipped.append((action, "the lock was released or taken by another backend meanwhile"))
        rows = [a for a in plan.actions if a.kind in (CleanKind.DELETE_FAILED_ROW, CleanKind.DELETE_DUPLICATE_ROW)]
        if rows:
            self._delete_rows(rows, result)
        return result

    def end_lock_holder(self, *, dry_run: bool, command: str, judged: LockHolder) -> str | None:
        """Terminate ``judged`` (the holder shown to the user), wait for it to go, audit; None when it is gone.

        The backend is identified by pid *and* session start, and terminated only while it still holds the
        lock, in one statement: a holder that released the lock, or a new healthy holder that took it since
        (even one reusing the pid), is never ended.
        """
        with self.diag.connection() as conn:
            holder = lock_holder(conn, self.history.schema)
            if holder is None or (holder.pid, holder.backend_start) != (judged.pid, judged.backend_start):
                return None
            text = f"pid {judged.pid} holding the migration lock: {judged.describe()}"
            if dry_run:
                return f"would end {text}"
            if not terminate_holder(conn, self.history.schema, judged):
                return None
            deadline = time.monotonic() + 10
            while _same_holder(lock_holder(conn, self.history.schema), judged) and time.monotonic() < deadline:
                time.sleep(0.05)
            with migration_lock(conn, self.history.schema, self.diag.lock_timeout):
                self.history.ensure(conn)
                with conn.transaction():
                    self.history.audit(conn, command=command, action=CleanKind.END_LOCK_HOLDER, version=None,
                                       before=None, after=None, reason=f"ended {text}")
            return f"ended {text}"

    def _delete_rows(self, actions: list[CleanAction], result: CleanResult) -> None:
        migrations = load_migrations(self.diag.migrations_path)
        with self.diag.connection() as conn, migration_lock(conn, self.history.schema, self.diag.lock_timeout):
            self.history.ensure(conn)
            facts = self.diag.gather(conn, migrations)
            unfinished = {r.version: r for r in facts.state.unfinished}
            current_dupes = {ctid for ctid, _, _ in legacy_duplicates(conn)}
            for action in actions:
                if action.kind == CleanKind.DELETE_FAILED_ROW:
                    row = unfinished.get(action.version or -1)
                    if row is None:
                        result.skipped.append((action, "the row is no longer failed or running"))
                        continue
                    if action.target is not None and _row_identity(row) != action.target:
                        # what was shown (and confirmed) is not what is there now: a later run wrote this row
                        result.skipped.append((action, "the row changed since it was shown (another run wrote it "
                                                       "meanwhile); run clean again to see it"))
                        continue
                    with conn.transaction():
                        self.history.delete(conn, row.version)
                        self.history.audit(conn, command="clean", action=CleanKind.DELETE_FAILED_ROW,
                                           version=row.version, before=row, after=None,
                                           reason="; ".join(action.details) or "no catalog evidence either way")
                elif action.target in current_dupes:
                    with conn.transaction():
                        conn.execute("DELETE FROM public.schema_migrations WHERE ctid = %s::tid", [action.target])
                        self.history.audit(conn, command="clean", action=CleanKind.DELETE_DUPLICATE_ROW,
                                           version=action.version, before=None, after=None,
                                           reason=f"{LEGACY_TABLE} duplicate removed: {action.details[0]}")
                else:
                    result.skipped.append((action, "the row changed since it was shown"))
                    continue
                result.done.append(action)


def _row_identity(row: Any) -> str:
    """Which history row an action was planned on: a rerun of the same version writes another one."""
    return f"{row.status} {row.applied_at.isoformat()} {row.statements_done}"


def _same_holder(holder: LockHolder | None, judged: LockHolder) -> bool:
    return holder is not None and (holder.pid, holder.backend_start) == (judged.pid, judged.backend_start)
