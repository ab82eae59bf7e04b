"""diagnose's schema evidence: the catalog judged against replayed states, turned into issues.

Three codes come from here, all decided by comparing whole catalog states (``poststack.engine.judgement``), never by
guessing what a statement does:

- ``missing_tracking``: the catalog equals the state after a later version than the history records: those
  migrations ran outside poststack (proven; ``recover`` records them);
- ``partially_applied``: the catalog lies between the states before and after one migration;
- ``schema_mismatch``: the catalog is not the recorded version's state, nor any later one (objects dropped by
  hand, a history row written for a migration that never ran), with the closest state and every difference.

The cheap path comes first: when the catalog still matches the snapshot poststack stored at the recorded
version (``poststack.catalog.drift``), nothing is replayed. Otherwise the states are replayed (or read from the
replay cache); where no server can replay them, the checks are listed as skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from poststack.catalog import judged as judged_catalog
from poststack.catalog.snapshot import Snapshot
from poststack.db.history import HistoryRow
from poststack.engine.judgement import Judgement, judge
from poststack.engine.plan import MigrationState
from poststack.engine.replay import EvidenceUnavailable, replay, replay_sequence
from poststack.integrity.issues import Issue
from poststack.source.files import Migration

CHECKS = ("missing_tracking", "partially_applied", "schema_mismatch")


@dataclass
class SchemaEvidence:
    """What diagnose learnt from the states; ``judgement`` is None when no comparison was needed or possible."""
    judgement: Judgement | None = None
    skipped: str | None = None  # why the comparison could not be made
    steps: list[Migration] = field(default_factory=list)


def judge_catalog(conn: psycopg.Connection[Any] | None, state: MigrationState, directory: Path, history_schema: str,
                  target_url: str, *, dev_url: str | None = None,
                  catalog: Snapshot | None = None) -> SchemaEvidence:
    """Replay (or read cached) states from the recorded version on and judge the catalog against them."""
    applied = [r.as_applied(directory) for r in state.applied]
    steps = replay_sequence(applied, list(state.pending))
    try:
        states = replay(target_url, steps, start=max(len(applied) - 1, 0), dev_url=dev_url)
    except EvidenceUnavailable as exc:
        return SchemaEvidence(skipped=str(exc), steps=steps)
    if catalog is None:
        assert conn is not None, "judge_catalog needs a connection or the catalog already read"
        catalog = judged_catalog.read(conn, history_schema)
    return SchemaEvidence(judge(catalog, states, len(applied)), steps=steps)


def confirms_applied(conn: psycopg.Connection[Any], state: MigrationState, directory: Path, history_schema: str,
                     target_url: str, row: HistoryRow, *, dev_url: str | None = None) -> tuple[bool, list[str]]:
    """Whether the catalog is the replayed state after the applied migrations plus ``row``'s stored SQL (an
    unfinished non-transactional run repair would mark applied), with the evidence either way.

    The per-statement progress and object names say a crashed run may be complete; only the state says the
    objects are the ones *this* text makes (a hand-run older text leaves objects of the same names).
    """
    applied = [r.as_applied(directory) for r in state.applied]
    ran = row.as_applied(directory)
    rest = [m for m in state.pending if m.version != row.version]
    steps = replay_sequence([*applied, ran], rest)
    try:
        states = replay(target_url, steps, start=len(applied), dev_url=dev_url)
    except EvidenceUnavailable as exc:
        return False, [f"no replayed states to confirm it: {exc}"]
    position = len(applied) + 1
    j = judge(judged_catalog.read(conn, history_schema), states, position)
    through = j.complete_through
    if j.proven is not None and through is not None and through >= position:
        # The state after it, or after later pending migrations run by hand too (which then show as
        # missing_tracking): either way its whole text ran, as far as the states can tell.
        later = ([f"pending migration(s) {', '.join(j.versions(position + 1, j.proven))} ran too, without history "
                  "rows (diagnose reports what it can tell of them)"] if j.proven > position else [])
        return True, [j.match_evidence(), *later]
    where = j.label(j.closest) if j.closest is not None else "unknown"
    return False, [f"the catalog is not the state after {ran.version_text} as the history row's SQL leaves it "
                   f"(closest: the state {where})", *j.against(len(applied) + 1)]


def issues(evidence: SchemaEvidence) -> list[Issue]:
    """missing_tracking / partially_applied / schema_mismatch from one judgement, and schema_drift for what
    differs on objects no migration touches (outside the states' evidence, but still a change to report)."""
    j = evidence.judgement
    if j is None:
        return []
    drift = [Issue.of("schema_drift", None, f"{len(j.outside)} schema change(s) to objects no migration creates "
                      "or changes", ["not evidence of any migration: every replayed state agrees on these",
                                     *j.outside])] if j.outside else []
    return _state_issues(evidence, j) + drift


def _state_issues(evidence: SchemaEvidence, j: Judgement) -> list[Issue]:
    if j.consistent:
        return []
    steps = evidence.steps
    if j.proven is not None:
        found = []
        for position in range(j.recorded + 1, j.proven + 1):
            m = steps[position - 1]
            lines = [f"file: {m.filename} has no history row", j.match_evidence(), *j.effect(position)]
            if position == j.proven and j.hidden_tail:
                lines.append(f"its last {j.hidden_tail} statement(s) change no schema: the catalog cannot show "
                             "whether the file ran to its end")
                found.append(Issue.of("missing_tracking", m.version, f"{m.filename} is not recorded; its schema "
                                      "changes are present, but whether it ran to its end cannot be shown", lines,
                                      auto_fixable=False, fix=f"if it did: poststack db mark {m.version_text}"))
                continue
            found.append(Issue.of("missing_tracking", m.version,
                                  f"{m.filename} is not recorded, but the catalog shows it ran", lines))
        return found
    if j.partial is not None:
        m = steps[j.partial.position - 1]
        before = j.versions(j.recorded + 1, j.partial.position - 1)
        lines = [f"catalog lies between the states {j.label(j.partial.position - 1)} and after {m.version_text}",
                 *(f"done: {d}" for d in j.partial.done), *(f"not done: {d}" for d in j.partial.not_done)]
        found = []
        complete = j.complete_through or 0
        for position in range(j.recorded + 1, complete + 1):
            earlier = steps[position - 1]
            found.append(Issue.of("missing_tracking", earlier.version,
                                  f"{earlier.filename} is not recorded, but the catalog shows it ran",
                                  [f"file: {earlier.filename} has no history row",
                                   f"catalog equals the state after {earlier.version_text} on every object it "
                                   f"changes; {m.version_text} after it is half applied and touches none of them",
                                   *j.effect(position)]))
        if before and not complete:
            lines.append(f"unrecorded versions before it may have run too: {', '.join(before)} (they touch "
                         "objects this one changes, so the catalog cannot show them apart)")
        return [*found, Issue.of("partially_applied", m.version,
                                 f"{m.filename} is partly applied ({len(j.partial.done)} change(s) done, "
                                 f"{len(j.partial.not_done)} not)", lines)]
    where = j.label(j.closest) if j.closest is not None else "unknown"
    recorded = j.label(j.recorded)
    if j.closest is not None and j.closest < j.recorded and not j.differences:
        closest = f"catalog equals the state {where}: the recorded migration(s) after it did not run"
    else:
        closest = f"closest replayed state: {where} ({len(j.differences)} difference(s))"
    lines = [f"history: the recorded state is the one {recorded}", closest, *j.differences]
    if j.unknown_after is not None:
        lines.append(f"states past position {j.unknown_after} are unknown: {j.states.failure}")
    version = steps[j.recorded - 1].version if j.recorded > 0 else None
    return [Issue.of("schema_mismatch", version,
                     f"the catalog is not the state {recorded} the history records, nor any later one", lines)]
