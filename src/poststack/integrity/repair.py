"""Repair: fix what the evidence shows can be fixed, refuse what would need a guess, and say why.

Everything runs under the migration lock and starts by gathering the facts again, because the issues given
may be stale: an issue that no longer shows is skipped, never "fixed" twice. Each history write and its
audit record share one transaction. Dangerous steps (ending a backend, deleting a history row, dropping an
object) need ``force``; accepting a file whose meaning changed (checksum_mismatch) does too, because the
database ran the old text and re-recording claims otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack.catalog.drift import record_snapshot
from poststack.db.history import HistoryRow, HistoryStatus
from poststack.db.lock import migration_lock
from poststack.engine.recovery import recover
from poststack.errors import PoststackError
from poststack.integrity import catalog_facts, schema_evidence
from poststack.integrity.catalog_facts import UnfinishedVerdict
from poststack.integrity.cleaning import Cleaner
from poststack.integrity.diagnosis import derive_issues
from poststack.integrity.facts import Facts
from poststack.integrity.gathering import Inspected
from poststack.integrity.issues import Issue
from poststack.integrity.repair_results import FixKind as FixKind  # re-exported: repair's result types
from poststack.integrity.repair_results import RepairAction as RepairAction
from poststack.integrity.repair_results import RepairResult as RepairResult
from poststack.integrity.repair_results import SkipKind as SkipKind
from poststack.integrity.repair_results import SkippedIssue as SkippedIssue
from poststack.source.files import (
    checksum_of,
    load_migrations,
    migration_file_name,
    semantic_checksum_of,
    unified_diff,
    version_of,
)

LOCKED_CODES = ("cosmetic_change", "checksum_mismatch", "rollback_changed", "missing_file", "failed_migration",
                "invalid_index")


@dataclass
class _Fix:
    """One planned fix: what repair reports, and the function that does it (not called in a dry run)."""

    action: RepairAction
    apply: Callable[[psycopg.Connection[Any]], None]


class Repairer:
    def __init__(self, diagnostics: Inspected, *, force: bool, dry_run: bool) -> None:
        self.diag = diagnostics
        self.history = diagnostics.history
        self.force = force
        self.dry_run = dry_run
        self.result = RepairResult(dry_run)

    def skip(self, issue: Issue, reason: str, details: Iterable[str] = (), kind: SkipKind = SkipKind.REFUSED) -> None:
        self.result.skipped.append(SkippedIssue(issue.code, issue.version, reason, list(details), kind))

    def run(self, issues: list[Issue]) -> RepairResult:
        todo: list[Issue] = []
        for issue in issues:
            if issue.auto_fixable:
                todo.append(issue)
            else:
                self.skip(issue, f"not auto-fixable; fix: {issue.fix}", issue.evidence, SkipKind.MANUAL)
        for issue in [i for i in todo if i.code == "stuck_lock"]:
            self._end_lock_holder(issue)
        locked = [i for i in todo if i.code in LOCKED_CODES]
        if locked:
            self._locked_phase(locked)
        tracking = [i for i in todo if i.code == "missing_tracking"]
        if tracking:
            self._recover(tracking)
        return self.result

    # -- phases --------------------------------------------------------------------------------------------
    def _end_lock_holder(self, issue: Issue) -> None:
        if not self.force:
            self.skip(issue, "ending another backend needs --force (or use 'poststack db clean --locks --force')",
                      issue.evidence)
            return
        if issue.holder is None:  # an Issue built by hand, without the backend it was judged on
            self.skip(issue, "the issue does not name the backend judged stuck; run 'poststack db diagnose' again")
            return
        outcome = Cleaner(self.diag).end_lock_holder(dry_run=self.dry_run, command="repair", judged=issue.holder)
        if outcome is None:
            self.skip(issue, f"pid {issue.holder.pid}, judged stuck, no longer holds the lock; nothing was ended "
                             "(a backend that took the lock since is left alone)")
        else:
            self.result.fixed.append(RepairAction("stuck_lock", None, FixKind.END_LOCK_HOLDER, outcome))

    def _locked_phase(self, issues: list[Issue]) -> None:
        migrations = load_migrations(self.diag.migrations_path)
        with self.diag.connection() as conn:
            if self.dry_run:
                self._plan_and_apply(conn, migrations, issues)
                return
            with migration_lock(conn, self.history.schema, self.diag.lock_timeout):
                self._plan_and_apply(conn, migrations, issues)

    def _plan_and_apply(self, conn: psycopg.Connection[Any], migrations: Any, issues: list[Issue]) -> None:
        facts = self.diag.gather(conn, migrations)
        current = {(i.code, i.version): i for i in derive_issues(
            facts, lock_age=self.diag.lock_age, directory=str(self.diag.migrations_path))}
        done_versions: set[int] = set()
        for issue in issues:
            fresh = current.get((issue.code, issue.version))
            if fresh is None:
                self.skip(issue, "no longer found (fixed meanwhile?)")
                continue
            if issue.code in ("failed_migration", "invalid_index") and issue.version in done_versions:
                continue  # one decision per crashed migration covers its row and its invalid index
            plan = self._plan(conn, facts, fresh)
            if issue.code in ("failed_migration", "invalid_index") and issue.version is not None:
                done_versions.add(issue.version)
            if plan is None:
                continue
            if not self.dry_run:
                plan.apply(conn)
            self.result.fixed.append(plan.action)
        changed_schema = ({FixKind.RETRY, FixKind.MARK_APPLIED, FixKind.DROP_INVALID_INDEX}
                          & {a.action for a in self.result.fixed})
        if changed_schema and not self.dry_run and facts.drift_checked and facts.drift is None:
            # The schema matched poststack's snapshot (its own leftovers aside) before the repair, so the
            # state now is poststack's doing: make it the reference, or drift would blame the repair.
            record_snapshot(conn, self.history.schema)

    def _plan(self, conn: psycopg.Connection[Any], facts: Facts, issue: Issue) -> _Fix | None:
        handler = {"cosmetic_change": self._rechecksum, "checksum_mismatch": self._rechecksum,
                   "rollback_changed": self._rerecord_rollback, "missing_file": self._restore_file,
                   "failed_migration": self._unfinished,
                   "invalid_index": self._unfinished}[issue.code]
        return handler(conn, facts, issue)

    def _recover(self, issues: list[Issue]) -> None:
        try:
            outcome = recover(self.diag, dry_run=self.dry_run, force=False, dev_url=self.diag.dev_url)
        except PoststackError as exc:  # e.g. bad migration files: recover refuses to plan on them
            for issue in issues:
                self.skip(issue, f"recover refused: {exc}")
            return
        recorded = {step.version for step in outcome.recorded}
        for issue in issues:
            if issue.version in recorded:
                self.result.fixed.append(RepairAction(issue.code, issue.version, FixKind.RECOVER,
                                                      f"recorded migration {issue.version} (source recover)",
                                                      issue.evidence))
            else:
                why = next((s.reason for s in outcome.steps if s.version == issue.version), None)
                self.skip(issue, f"recover did not record it: {why}" if why else
                          "recover did not record it; run 'poststack db recover' for its reasons")

    # -- one handler per kind of fix -----------------------------------------------------------------------
    def _audited_write(self, command: str, action: FixKind, row: HistoryRow, after: HistoryRow | None,
                       reason: str, write: Callable[[psycopg.Connection[Any]], None]
                       ) -> Callable[[psycopg.Connection[Any]], None]:
        def apply(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                write(conn)
                self.history.audit(conn, command=command, action=action, version=row.version, before=row,
                                   after=after, reason=reason)
        return apply

    def _rechecksum(self, conn: psycopg.Connection[Any], facts: Facts, issue: Issue) -> _Fix | None:
        version = issue.version
        assert version is not None
        row = facts.rows[version]
        migration = facts.migrations.get(version)
        assert migration is not None
        diff = unified_diff(row.sql, migration.sql, f"history:{row.version_text}_{row.name}.sql",
                            str(migration.path))
        changes: dict[str, Any] = {"checksum": migration.checksum, "semantic_checksum": migration.semantic_checksum}
        if issue.code == "cosmetic_change":
            reason = "comments or whitespace changed; semantic checksum equal; re-recorded the file's checksum"
            if semantic_checksum_of(row.sql) == migration.semantic_checksum:
                changes["sql"] = migration.sql  # same statements: keeping the new text keeps a restore byte-exact
            else:  # the stored text is what ran (a change of meaning accepted earlier): it stays the record
                reason += "; kept the stored SQL, which is what ran and differs in meaning from the file"
        else:
            if not self.force:
                self.skip(issue, "the file changed in meaning and the database ran the stored text; review the "
                                 "diff, then pass --force to record the file as applied", diff)
                return None
            reason = "file changed in meaning; accepted with --force. Diff (stored -> file):\n" + "\n".join(diff)
        after = replace(row, **changes)
        write = self._audited_write("repair", FixKind.RECHECKSUM, row, after, reason,
                                    lambda c: self.history.update(c, version, **changes))
        action = RepairAction(issue.code, version, FixKind.RECHECKSUM,
                              f"re-record checksum of {migration.filename} ({row.checksum[:12]} -> "
                              f"{migration.checksum[:12]})", diff)
        return _Fix(action, write)

    def _rerecord_rollback(self, conn: psycopg.Connection[Any], facts: Facts, issue: Issue) -> _Fix | None:
        """Record the rollback file as the migration's rollback: its checksum and text replace the recorded ones.

        A cosmetic edit is recorded freely; a change of meaning needs --force, because from then on
        'rollback' runs the new text without asking.
        """
        version = issue.version
        change = next((c for c in facts.state.changed_rollbacks if c.version == version), None)
        migration = facts.migrations.get(version) if version is not None else None
        if change is None or migration is None or migration.rollback is None:
            self.skip(issue, "no longer found (fixed meanwhile?)")
            return None
        row = facts.rows[change.version]
        rollback = migration.rollback
        diff = change.diff()
        changes: dict[str, Any] = {"rollback_checksum": rollback.checksum, "rollback_sql": rollback.text}
        if change.cosmetic:
            reason = "rollback file changed in comments or whitespace only; re-recorded its checksum and text"
        else:
            if not self.force:
                self.skip(issue, "the rollback file changed in meaning; review the diff, then pass --force to "
                                 "record it as this migration's rollback", diff)
                return None
            reason = ("rollback file changed in meaning; recorded with --force. Diff (recorded -> file):\n"
                      + "\n".join(diff))
        after = replace(row, **changes)
        write = self._audited_write("repair", FixKind.RERECORD_ROLLBACK, row, after, reason,
                                    lambda c: self.history.update(c, change.version, **changes))
        action = RepairAction(issue.code, change.version, FixKind.RERECORD_ROLLBACK,
                              f"re-record rollback {change.filename} ({change.stored_checksum[:12]} -> "
                              f"{change.file_checksum[:12]})", diff)
        return _Fix(action, write)

    def _restore_file(self, conn: psycopg.Connection[Any], facts: Facts, issue: Issue) -> _Fix | None:
        version = issue.version
        assert version is not None
        row = facts.rows[version]
        paths = restore_paths(facts.migrations.directory, row)
        if isinstance(paths, str):
            self.skip(issue, paths)
            return None
        up, down = paths
        targets = [(up, row.sql)] + ([(down, row.rollback_sql)] if row.rollback_sql and not down.exists() else [])
        clash = [str(p) for p, _ in targets if p.exists()]
        if clash:
            self.skip(issue, f"will not overwrite existing {', '.join(clash)}")
            return None
        details = [f"write {p} ({len(text.encode())} bytes from the stored SQL)" for p, text in targets]
        if checksum_of(row.sql.encode()) != row.checksum:
            details.append("note: the stored SQL does not hash to the recorded checksum (recorded by an import?)")

        def apply(conn: psycopg.Connection[Any]) -> None:
            for path, text in targets:
                _write_atomically(path, text.encode())
            with conn.transaction():
                self.history.audit(conn, command="repair", action=FixKind.RESTORE_FILE, version=version, before=row,
                                   after=row, reason="; ".join(details))
        return _Fix(RepairAction(issue.code, version, FixKind.RESTORE_FILE, f"restore {up.name} from the history",
                                  details), apply)

    def _unfinished(self, conn: psycopg.Connection[Any], facts: Facts, issue: Issue) -> _Fix | None:
        """A crashed or failed non-transactional migration: decide from the catalog what actually happened."""
        version = issue.version
        row = facts.rows.get(version) if version is not None else None
        if row is None and issue.auto_fixable and version is not None:
            return self._drop_invalid(facts, issue, version)
        if row is None or row.status == HistoryStatus.APPLIED:
            self.skip(issue, f"not left by an unfinished migration; fix: {issue.fix}", issue.evidence)
            return None
        evidence = catalog_facts.evidence_lines(facts, row.version)
        invalid = catalog_facts.owned_invalid(facts, row.version)
        verdict = catalog_facts.unfinished_verdict(facts, row, invalid)
        label = f"migration {row.version_text} ({row.name})"
        if verdict == UnfinishedVerdict.DONE:
            confirmed, proof = schema_evidence.confirms_applied(
                conn, facts.state, facts.migrations.directory, self.history.schema, self.diag.database_url, row,
                dev_url=self.diag.dev_url)
            if not confirmed:
                self.skip(issue, f"{label}: its objects exist, but the replayed states do not confirm they are the "
                                 "ones its SQL makes; repair will not mark it applied", [*evidence, *proof])
                return None
            evidence = [*evidence, *proof]
            after = replace(row, status=HistoryStatus.APPLIED, error=None, source="repair")
            reason = f"{row.status} row, but the catalog shows its result: " + "; ".join(evidence or ["progress"])
            write = self._audited_write("repair", FixKind.MARK_APPLIED, row, after, reason,
                                        lambda c: self.history.update(c, row.version, status=HistoryStatus.APPLIED,
                                                                      error=None, source="repair"))
            return _Fix(RepairAction(issue.code, row.version, FixKind.MARK_APPLIED,
                                      f"mark {label} applied (source repair)", evidence), write)
        if verdict == UnfinishedVerdict.NOT_DONE:
            drops = [catalog_facts.qualified(ix) for ix in invalid]
            what = (f"drop invalid index(es) {', '.join(drops)} concurrently and " if drops else "") + \
                f"delete the {row.status} history row of {label} so that migrate retries it"
            if not self.force:
                self.skip(issue, f"needs --force: would {what}", evidence)
                return None
            reason = f"{row.status} row and none of its effects remain ({'; '.join(evidence)}); {what}"
            delete = self._audited_write("repair", FixKind.RETRY, row, None, reason,
                                         lambda c: self.history.delete(c, row.version))

            def apply(conn: psycopg.Connection[Any]) -> None:
                _drop_indexes(conn, invalid)
                delete(conn)
            return _Fix(RepairAction(issue.code, row.version, FixKind.RETRY, what, evidence), apply)
        self.skip(issue, f"{label}: the catalog shows a mixed result, so repair will not guess; finish it by hand "
                         "(then repair marks it applied) or undo it by hand (then repair --force lets migrate "
                         "retry it)", evidence)
        return None


    def _drop_invalid(self, facts: Facts, issue: Issue, version: int) -> _Fix | None:
        """An INVALID index of a pending migration (its failed row was cleaned away): migrate needs the name."""
        invalid = catalog_facts.owned_invalid(facts, version)
        names = ", ".join(catalog_facts.qualified(ix) for ix in invalid)
        what = f"drop invalid index(es) {names} concurrently so that pending migration {version} can build them"
        if not self.force:
            self.skip(issue, f"needs --force: would {what}", issue.evidence)
            return None

        def apply(conn: psycopg.Connection[Any]) -> None:
            _drop_indexes(conn, invalid)
            with conn.transaction():
                self.history.audit(conn, command="repair", action=FixKind.DROP_INVALID_INDEX, version=version,
                                   before=None, after=None, reason=what)
        return _Fix(RepairAction(issue.code, version, FixKind.DROP_INVALID_INDEX, what, issue.evidence), apply)


def _drop_indexes(conn: psycopg.Connection[Any], indexes: list[Any]) -> None:
    """DROP INDEX CONCURRENTLY: no lock that blocks the table's readers and writers, outside a transaction."""
    for ix in indexes:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
            sql.Identifier(ix.schema), sql.Identifier(ix.index)))


def restore_paths(directory: Path, row: HistoryRow) -> tuple[Path, Path] | str:
    """Where a missing file of this history row is restored, or why it is not.

    version_text and name come from the history table, which anyone with write access to it controls: a
    row with version_text '/elsewhere/OUTSIDE' or a name with '../' must not choose where repair writes. So
    both must form a valid migration file name (no '/', no '..' component, ASCII digits for the version) of
    the row's own version, and the path must resolve inside the migrations directory (no symlink out).
    """
    label = f"history row version {row.version} (version_text {row.version_text!r}, name {row.name!r})"
    up_name = migration_file_name(row.version_text, row.name)
    down_name = migration_file_name(row.version_text, row.name, rollback=True)
    if up_name is None or down_name is None or version_of(row.version_text) != row.version:
        return (f"{label} does not form a valid migration file name (NNN_name.sql); will not write a file "
                "named after it: restore the file by hand")
    root = directory.resolve()
    for name in (up_name, down_name):
        resolved = (root / name).resolve()
        if resolved.parent != root:
            return (f"{label}: {directory / name} resolves outside the migrations directory ({resolved}); "
                    "will not write it")
    return directory / up_name, directory / down_name


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename: a crash never leaves a truncated migration file behind."""
    partial = path.with_name(f".{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # a leftover, or a planted symlink: removing it never touches what it points at
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
