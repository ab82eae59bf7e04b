"""``recover``: record migrations that already ran outside poststack, from replayed states only.

The unified-project scenario: files were applied by hand or by another tool, so they have no history row.
recover compares the catalog with the states PostgreSQL itself produced when the migrations were replayed on
a scratch database (``poststack.engine.replay``, judged by ``poststack.engine.judgement``) and records exactly what that
proves:

- the catalog equals the state after version m: every unrecorded version up to m is recorded (source
  ``recover``, audited with the evidence). Versions after m whose states equal m's (no schema change: data
  migrations) cannot be told apart by schema: they stay pending, unless ``force``, which records them and
  names each one recorded without proof.
- the catalog lies between two states: that migration is half applied. Refused, object by object; nothing
  is recorded.
- the catalog equals no state: the closest one and every difference are shown; nothing is recorded.

It also adopts the seed's legacy history ``public.schema_migrations``: the versions it lists are judged the
same way, with the SQL it says ran; if the catalog does not prove all of them, none is imported. Everything
is planned under the migration lock and written in one transaction: recover records its whole plan or
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from poststack.catalog import judged as judged_catalog
from poststack.catalog.drift import record_snapshot
from poststack.db.history import History, HistoryStatus
from poststack.db.legacy import LEGACY_TABLE, LegacyRow, legacy_migration, legacy_rows
from poststack.engine.judgement import Judgement, StateVerdict, judge
from poststack.engine.replay import replay, replay_sequence
from poststack.engine.target import Target
from poststack.errors import EXIT_ISSUES, EXIT_OK, MigrationFileError
from poststack.source.files import Migration
from poststack.source.sqltext import SqlSyntaxError, split_statements


class RecoverAction(StrEnum):
    """What recover does (or, in a dry run, would do) with one version."""

    RECORD = "record"  # proven: a history row with source recover
    RECORD_FORCED = "record_forced"  # undecidable, recorded on --force and named so
    IMPORT = "import"  # a legacy public.schema_migrations row, recorded as the legacy table has it (all or none)
    PENDING = "pending"  # not applied, or undecidable without --force: left for migrate or mark
    REFUSED = "refused"  # the evidence contradicts it (half applied, or no state matches)
    BLOCKED = "blocked"  # not examined or not written because of another version's refusal
    ALREADY = "already_recorded"  # a legacy row whose version poststack's history already has


class StepOrigin(StrEnum):
    """Where an unrecorded version comes from."""

    FILE = "file"  # an untracked migration file
    LEGACY = "legacy"  # a row of the legacy public.schema_migrations


WRITES = (RecoverAction.RECORD, RecoverAction.RECORD_FORCED, RecoverAction.IMPORT)


@dataclass(frozen=True)
class RecoverStep:
    """What recover did (or, in a dry run, would do) with one version, and the evidence it decided on."""

    version: int
    version_text: str
    name: str
    action: RecoverAction
    reason: str
    status: StateVerdict | None = None  # the evidence: proven | undecidable | pending | partial | mismatch
    evidence: list[str] = field(default_factory=list)
    origin: StepOrigin = StepOrigin.FILE


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
        return [s for s in self.steps if s.action == RecoverAction.REFUSED]

    @property
    def pending(self) -> list[RecoverStep]:
        return [s for s in self.steps if s.action == RecoverAction.PENDING]

    @property
    def exit_code(self) -> int:
        """1 when something was refused (mixed evidence needs a human), else 0."""
        return EXIT_ISSUES if self.refused else EXIT_OK


def _step(m: Migration, action: RecoverAction, reason: str, status: StateVerdict | None = None,
          evidence: list[str] | None = None, origin: StepOrigin = StepOrigin.FILE) -> RecoverStep:
    return RecoverStep(m.version, m.version_text, m.name, action, reason, status, evidence or [], origin)


@dataclass
class _RecoveryPlan:
    result: RecoverResult
    migrations: dict[int, Migration]  # what each write records: the file, or the legacy row's applied SQL
    legacy: dict[int, LegacyRow]
    exact: bool = False  # the catalog is exactly the state of the version the writes leave the history at


def _refusal_evidence(j: Judgement) -> tuple[str, list[str]]:
    """Why nothing can be proven, and the object-by-object evidence."""
    if j.partial is not None:
        version = j.versions(j.partial.position, j.partial.position)[0]
        lines = [f"done: {d}" for d in j.partial.done] + [f"not done: {d}" for d in j.partial.not_done]
        return (f"partially applied: the catalog lies between the states {j.label(j.partial.position - 1)} and "
                f"after {version}", lines)
    lines = [f"{d}" for d in j.differences]
    where = j.label(j.closest) if j.closest is not None else "unknown"
    reason = f"the catalog equals no replayed state; the closest is the state {where} ({len(lines)} difference(s))"
    if j.unknown_after is not None:
        reason += f"; states after position {j.unknown_after} are unknown: {j.states.failure}"
    return reason, lines


def plan_from_states(j: Judgement, steps: list[Migration], origins: dict[int, StepOrigin], *,
                     force: bool) -> list[RecoverStep]:
    """One step per unrecorded position of the sequence, decided by the judgement alone."""
    out: list[RecoverStep] = []
    proven = j.proven
    unproven = set(j.undecidable)
    if proven is None:
        reason, lines = _refusal_evidence(j)
        refused_at = j.partial.position if j.partial is not None else j.recorded + 1
        complete = j.complete_through or 0
        for position in range(j.recorded + 1, len(steps) + 1):
            m = steps[position - 1]
            if position <= complete:
                out.append(_step(m, RecoverAction.RECORD, f"the catalog equals the state after {m.version_text} on "
                                 f"every object it and its predecessors change; {steps[refused_at - 1].version_text} "
                                 "after it is half applied and touches none of them", StateVerdict.PROVEN,
                                 j.effect(position), origins[m.version]))
            elif position == refused_at:
                verdict = StateVerdict.PARTIAL if j.partial else StateVerdict.MISMATCH
                out.append(_step(m, RecoverAction.REFUSED, reason, verdict, lines, origins[m.version]))
            elif position < refused_at:
                out.append(_step(m, RecoverAction.BLOCKED, f"not recorded: the catalog is past its state, but "
                                 f"{steps[refused_at - 1].version_text} is half applied and nothing is recorded "
                                 "past an exact match", None, [], origins[m.version]))
            else:
                out.append(_step(m, RecoverAction.BLOCKED,
                                 f"not examined: refused at {steps[refused_at - 1].version_text}", None, [],
                                 origins[m.version]))
        return out
    evidence = [j.match_evidence()]
    if j.outside:
        evidence.append(f"{len(j.outside)} difference(s) on objects no migration touches (not evidence either "
                        "way; see diagnose): " + "; ".join(j.outside[:5]))
    complete = j.complete_through if j.complete_through is not None else proven
    for position in range(j.recorded + 1, len(steps) + 1):
        m = steps[position - 1]
        if position <= complete:
            out.append(_step(m, RecoverAction.RECORD, j.match_evidence(), StateVerdict.PROVEN,
                             evidence + j.effect(position), origins[m.version]))
        elif position == proven:  # its schema changes are there; its last statements cannot be seen
            tail = (f"its last {j.hidden_tail} statement(s) change no schema, so the catalog cannot show whether "
                    "the file ran to its end")
            if force:
                out.append(_step(m, RecoverAction.RECORD_FORCED, f"recorded on --force without proof: {tail}",
                                 StateVerdict.UNDECIDABLE, evidence, origins[m.version]))
            else:
                out.append(_step(m, RecoverAction.PENDING, f"undecidable: {tail}; if it did, use 'poststack db "
                                 f"mark {m.version_text}' or recover --force", StateVerdict.UNDECIDABLE, evidence,
                                 origins[m.version]))
        elif position in unproven and force:
            out.append(_step(m, RecoverAction.RECORD_FORCED, "recorded on --force without proof: its state equals "
                             f"the state {j.label(position - 1)}, so schema cannot show whether it ran",
                             StateVerdict.UNDECIDABLE, evidence, origins[m.version]))
        elif position in unproven:
            out.append(_step(m, RecoverAction.PENDING, "undecidable: no schema change, so the catalog cannot show "
                             "whether it ran; if it did, use 'poststack db mark' or recover --force",
                             StateVerdict.UNDECIDABLE, evidence, origins[m.version]))
        else:
            out.append(_step(m, RecoverAction.PENDING, f"pending: {j.match_evidence()}", StateVerdict.PENDING, [],
                             origins[m.version]))
    return out


def _legacy_consistent(steps: list[RecoverStep]) -> list[RecoverStep]:
    """All the legacy rows are imported or none: if the states do not prove one, importing the rest is a guess."""
    steps = [RecoverStep(s.version, s.version_text, s.name, RecoverAction.IMPORT, s.reason, s.status, s.evidence,
                         StepOrigin.LEGACY) if s.origin == StepOrigin.LEGACY and s.action in WRITES else s
             for s in steps]
    bad = next((s for s in steps if s.origin == StepOrigin.LEGACY and s.action not in WRITES), None)
    if bad is None:
        return steps
    out = []
    for s in steps:
        if s.origin == StepOrigin.LEGACY and s.action in WRITES:
            s = RecoverStep(s.version, s.version_text, s.name, RecoverAction.BLOCKED,
                            f"not imported: legacy version {bad.version_text} is not proven", s.status, s.evidence,
                            StepOrigin.LEGACY)
        elif s is bad:
            s = RecoverStep(s.version, s.version_text, s.name, RecoverAction.REFUSED,
                            f"{LEGACY_TABLE} says it was applied, but {s.reason}", s.status, s.evidence,
                            StepOrigin.LEGACY)
        out.append(s)
    return out


def _make_plan(conn: psycopg.Connection[Any], history: History, migrations: list[Migration],
               directory: Path, force: bool, dev_url: str | None, target_url: str) -> _RecoveryPlan:
    result = RecoverResult(dry_run=True, force=force)
    history_rows = history.rows(conn)
    recorded = {r.version for r in history_rows}
    unfinished = [r for r in history_rows if r.status != HistoryStatus.APPLIED]
    files = {m.version: m for m in migrations}
    rows = legacy_rows(conn, files)
    if rows is not None:
        result.legacy_table = LEGACY_TABLE
    bad_rows = [r for r in rows or () if r.version is None]
    result.steps = [RecoverStep(-1, r.version_text, r.description or "", RecoverAction.REFUSED,
                                f"{LEGACY_TABLE} row {r.version_text!r}: not a numeric version",
                                origin=StepOrigin.LEGACY)
                    for r in bad_rows]
    legacy = {r.version: r for r in rows or () if r.version is not None}
    result.steps += [_step(files.get(v) or legacy_migration(r, directory), RecoverAction.ALREADY,
                           "already in poststack's history", origin=StepOrigin.LEGACY)
                     for v, r in sorted(legacy.items()) if v in recorded]
    if unfinished:
        first = unfinished[0]
        result.steps += [_step(m, RecoverAction.BLOCKED, f"not examined: migration {first.version_text} is "
                               f"{first.status}; finish it first ('poststack db migrate' resumes it, or see diagnose)")
                         for v, m in sorted(files.items()) if v not in recorded]
        return _RecoveryPlan(result, {}, {})
    applied = [r.as_applied(directory) for r in history_rows]
    claimed = [legacy_migration(r, directory) for v, r in sorted(legacy.items()) if v not in recorded]
    pending = [m for v, m in sorted(files.items()) if v not in recorded and v not in legacy]
    for m in pending:  # an unparsable file is a file error, named with its line, before anything replays
        try:
            split_statements(m.sql)
        except SqlSyntaxError as exc:
            where = f"{m.path}:{exc.line}" if exc.line else str(m.path)
            raise MigrationFileError(f"{where}: {exc.message} (recover reads every untracked migration)") from None
    steps = replay_sequence(applied, claimed) + sorted(pending, key=lambda m: m.version)
    if not claimed and not pending:
        return _RecoveryPlan(result, {}, legacy)
    origins = {m.version: StepOrigin.FILE for m in steps} | {m.version: StepOrigin.LEGACY for m in claimed}
    catalog = judged_catalog.read(conn, history.schema)
    states = replay(target_url, steps, start=max(len(applied) - 1, 0), dev_url=dev_url)
    judgement = judge(catalog, states, len(applied))
    result.steps += _legacy_consistent(plan_from_states(judgement, steps, origins, force=force))
    if bad_rows:  # an unreadable legacy row: the legacy history as a whole cannot be trusted
        result.steps = [s if s.origin != StepOrigin.LEGACY or s.action not in WRITES else
                        RecoverStep(s.version, s.version_text, s.name, RecoverAction.BLOCKED, "not imported: the "
                                    "legacy table has a row with no numeric version", s.status, s.evidence,
                                    StepOrigin.LEGACY)
                        for s in result.steps]
    last = max((i for i, m in enumerate(steps, start=1) if any(s.version == m.version and s.action in WRITES
                                                               for s in result.steps)), default=None)
    exact = last is not None and last == judgement.proven and not judgement.outside
    return _RecoveryPlan(result, {m.version: m for m in steps}, legacy, exact)


def _write(conn: psycopg.Connection[Any], history: History, planned: _RecoveryPlan) -> None:
    """Record the plan in one transaction: history rows first, then one audit entry per row."""
    writes = [s for s in planned.result.steps if s.action in WRITES]
    if not writes:
        return
    history.ensure(conn)
    with conn.transaction():
        for s in writes:
            if s.origin == StepOrigin.LEGACY:
                row = planned.legacy[s.version]
                history.insert(conn, planned.migrations[s.version], source="import", execution_ms=row.execution_ms)
                history.update(conn, s.version, **row.history_overrides())
            else:
                history.insert(conn, planned.migrations[s.version], source="recover")
        after = {r.version: r for r in history.rows(conn)}
        for s in writes:
            action = ("import" if s.origin == StepOrigin.LEGACY else
                      {RecoverAction.RECORD: "recover", RecoverAction.RECORD_FORCED: "recover_forced"}[s.action])
            history.audit(conn, command="recover", action=action, version=s.version, before=None,
                          after=after[s.version], reason="; ".join([s.reason, *s.evidence]))


def recover(target: Target, *, dry_run: bool = False, force: bool = False,
            dev_url: str | None = None) -> RecoverResult:
    """Plan from replayed states, then (unless dry_run) record under the migration lock in one transaction."""
    migration_set = target.load()
    migration_set.raise_for_problems()
    migrations = list(migration_set)
    if dry_run:
        with target.connection() as conn:
            return _make_plan(conn, target.history, migrations, migration_set.directory, force, dev_url,
                              target.database_url).result
    # The plan is computed after the lock is held, never before; the history tables are created only when
    # there is something to record, so a recover that records nothing leaves the database as it was.
    with target.locked(create_history=False) as conn:
        planned = _make_plan(conn, target.history, migrations, migration_set.directory, force, dev_url,
                              target.database_url)
        _write(conn, target.history, planned)
        if planned.result.recorded and planned.exact:
            # The history moved to a new version: without a reference taken at it, drift could not be
            # checked until the next migrate. Only a catalog that *is* that version's state may become the
            # reference: otherwise what differs (a hidden tail, a hand-made table) would vanish from diagnose.
            record_snapshot(conn, target.history.schema)
        planned.result.dry_run = False
        return planned.result
