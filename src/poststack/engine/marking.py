"""``mark``: record or remove history rows without running any SQL, checked against replayed states.

The escape hatch every migration tool needs (alembic's ``stamp``, yoyo's ``mark``, Flyway's ``baseline``):
a migration was applied by hand with a different SQL, a data migration left no schema trace, a row was
written for a migration that never ran. ``mark`` changes the history only; before it does, the catalog is
compared with the replayed state the history would then claim (``poststack.engine.judgement``), and when the two
disagree the mark is refused with the differences, unless ``force``. Every row written or removed is
audited with its before/after image, the evidence and the user's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg

from poststack.catalog import judged as judged_catalog
from poststack.catalog.drift import record_snapshot
from poststack.db.history import History, HistoryRow, HistoryStatus
from poststack.engine.judgement import judge
from poststack.engine.replay import EvidenceUnavailable, replay
from poststack.engine.target import Target
from poststack.errors import EXIT_ISSUES, EXIT_OK, UsageError
from poststack.source.files import Migration


class MarkAction(StrEnum):
    """What mark does with one version; also the audit entry's action for the two that write."""

    MARK_APPLIED = "mark_applied"
    MARK_PENDING = "mark_pending"
    ALREADY = "already"  # the history already says so: nothing to write


@dataclass(frozen=True)
class MarkStep:
    version: int
    version_text: str
    name: str
    action: MarkAction


@dataclass
class MarkResult:
    """What mark did (or would do), and whether the replayed states agree with the history it leaves."""

    dry_run: bool
    force: bool
    applied: bool  # marking as applied (True) or as pending (False)
    steps: list[MarkStep] = field(default_factory=list)
    consistent: bool | None = None  # None: no evidence could be had
    evidence: list[str] = field(default_factory=list)
    refused: bool = False
    written: bool = False
    outside: list[str] = field(default_factory=list)  # differences on objects no migration touches

    @property
    def exit_code(self) -> int:
        return EXIT_ISSUES if self.refused else EXIT_OK

    @property
    def changes(self) -> list[MarkStep]:
        return [s for s in self.steps if s.action != MarkAction.ALREADY]


def _targets(migrations: dict[int, Migration], rows: dict[int, HistoryRow], version: int, *, applied: bool,
             through: bool) -> list[int]:
    if applied:
        if version not in migrations:
            raise UsageError(f"mark: no migration file has version {version}")
        return sorted(v for v in migrations if (v <= version if through else v == version))
    if version not in rows:
        raise UsageError(f"mark --pending: version {version} has no history row")
    return sorted(v for v in rows if (v >= version if through else v == version))


def _plan(conn: psycopg.Connection[Any], target: Target, result: MarkResult, version: int,
          through: bool, dev_url: str | None) -> tuple[dict[int, Migration], dict[int, HistoryRow]]:
    migration_set = target.load()
    migration_set.raise_for_problems()
    files = migration_set.by_version()
    history: History = target.history
    rows = {r.version: r for r in history.rows(conn)} if history.exists(conn) else {}
    targets = _targets(files, rows, version, applied=result.applied, through=through)
    for v in targets:
        m = files.get(v)
        row = rows.get(v)
        done = (row is not None and row.status == HistoryStatus.APPLIED) if result.applied else row is None
        text, name = (m.version_text, m.name) if m else (row.version_text, row.name) if row else (str(v), "")
        result.steps.append(MarkStep(v, text, name, MarkAction.ALREADY if done else
                                     (MarkAction.MARK_APPLIED if result.applied else MarkAction.MARK_PENDING)))
    changing = {s.version for s in result.changes}
    applied = {v: r.as_applied(migration_set.directory) for v, r in rows.items()
               if r.status == HistoryStatus.APPLIED and not (not result.applied and v in changing)}
    if result.applied:
        applied |= {v: files[v] for v in changing}
    steps = [applied[v] for v in sorted(applied)] + [m for v, m in sorted(files.items()) if v not in applied]
    try:
        # From the start: the states on both sides of every marked version take part in the judgement.
        states = replay(target.database_url, steps, dev_url=dev_url)
    except EvidenceUnavailable as exc:
        result.evidence = [f"no replayed states: {exc}"]
        return files, rows
    catalog = judged_catalog.read(conn, history.schema)
    j = judge(catalog, states, len(applied))
    result.consistent = j.consistent
    result.outside = j.outside
    if j.consistent:
        result.evidence = [j.match_evidence(), *(f"outside the migrations: {d}" for d in j.outside)]
    else:
        where = j.label(j.closest) if j.closest is not None else "unknown"
        result.evidence = [f"the catalog is not the state {j.label(len(applied))} this history would claim "
                           f"(closest: the state {where}); it differs from it in:", *j.against(len(applied))]
        if j.partial is not None:
            result.evidence += [f"done: {d}" for d in j.partial.done] + [f"not done: {d}" for d in j.partial.not_done]
    return files, rows


def _write(conn: psycopg.Connection[Any], history: History, result: MarkResult, files: dict[int, Migration],
           rows: dict[int, HistoryRow], reason: str | None) -> None:
    note = "; ".join(filter(None, [reason, "forced against the evidence" if result.force and not result.consistent
                                   else None, *result.evidence[:20]]))
    history.ensure(conn)
    with conn.transaction():
        for step in result.changes:
            before = rows.get(step.version)
            if before is not None:
                history.delete(conn, step.version)
            if step.action == MarkAction.MARK_APPLIED:
                history.insert(conn, files[step.version], source="mark")
        after = {r.version: r for r in history.rows(conn)}
        for step in result.changes:
            history.audit(conn, command="mark", action=step.action, version=step.version,
                          before=rows.get(step.version), after=after.get(step.version), reason=note)


def mark(target: Target, version: int, *, applied: bool = True, through: bool = False,
         reason: str | None = None, dry_run: bool = False, force: bool = False,
         dev_url: str | None = None) -> MarkResult:
    """Record (``applied``) or remove version(s) from the history, refused when the states contradict it."""
    result = MarkResult(dry_run=dry_run, force=force, applied=applied)
    if dry_run:
        with target.connection() as conn:
            _plan(conn, target, result, version, through, dev_url)
        result.refused = not result.consistent and not force and bool(result.changes)
        return result
    with target.locked(create_history=False) as conn:  # a refused mark leaves the database as it was
        files, rows = _plan(conn, target, result, version, through, dev_url)
        if not result.changes:
            return result
        if not result.consistent and not force:
            result.refused = True
            return result
        _write(conn, target.history, result, files, rows, reason)
        result.written = True
        if result.consistent and not result.outside:
            record_snapshot(conn, target.history.schema)  # the catalog is the new version's state: a reference
    return result
