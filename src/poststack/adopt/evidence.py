"""The one decision adopt does not make itself: is a version the other tool claims really applied?

``judge_claims`` asks the replayed states (``poststack.engine.replay``: the migrations applied on a scratch
database, a snapshot after each version; ``poststack.engine.judgement`` compares the target's catalog with them), as
``recover`` does. The claimed versions are placed right after poststack's own history in the sequence: a
claim is accepted when the catalog is the state after it or after a later version (proven), and when schema
cannot decide it (a data-only migration, a file whose last statements change no schema) the other tool's
record decides, and the verdict says so. It is refused when the catalog is not past its state: absent, half
applied (object by object), or mismatched (the closest state and every difference).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from poststack.catalog import judged as judged_catalog
from poststack.engine.judgement import Judgement, StateVerdict, judge
from poststack.engine.replay import EvidenceUnavailable, replay
from poststack.engine.target import Target
from poststack.source.files import Migration


@dataclass(frozen=True)
class Verdict:
    """Whether a claimed version may be recorded, and the evidence shown either way."""

    version: int
    accepted: bool
    status: StateVerdict  # accepted: proven | undecidable; refused: absent | partial | mismatch | unavailable
    summary: str
    evidence: list[str] = field(default_factory=list)


def _refusal(j: Judgement) -> tuple[StateVerdict, str, list[str]]:
    if j.partial is not None:
        version = j.versions(j.partial.position, j.partial.position)[0]
        return (StateVerdict.PARTIAL, f"the catalog lies between the states {j.label(j.partial.position - 1)} "
                f"and after {version}: half applied",
                [f"done: {d}" for d in j.partial.done] + [f"not done: {d}" for d in j.partial.not_done])
    where = j.label(j.closest) if j.closest is not None else "unknown"
    return (StateVerdict.MISMATCH, f"the catalog equals no replayed state; the closest is the state {where}",
            j.differences)


def judge_claims(target: Target, conn: psycopg.Connection[Any], migrations: Sequence[Migration],
                 claimed: Collection[int], *, recorded: Collection[int] = ()) -> dict[int, Verdict]:
    """A verdict for each claimed version, from the catalog judged against the replayed states of poststack's
    history, then the claims, then the rest of ``migrations``. ``recorded`` are versions already in
    poststack's history; ``target`` names the target (and so where the scratch database can live)."""
    if not claimed:
        return {}
    by_version = {m.version: m for m in migrations}
    done = sorted(v for v in recorded if v in by_version)
    claims = sorted(v for v in claimed if v not in recorded)
    rest = sorted(v for v in by_version if v not in recorded and v not in claimed)
    steps = [by_version[v] for v in (*done, *claims, *rest)]
    position = {m.version: i for i, m in enumerate(steps, start=1)}
    try:
        states = replay(target.database_url, steps, start=max(len(done) - 1, 0))
    except EvidenceUnavailable as exc:
        return {v: Verdict(v, False, StateVerdict.UNAVAILABLE, f"no replayed states: {exc}") for v in claimed}
    catalog = judged_catalog.read(conn, target.history.schema)
    j = judge(catalog, states, len(done))
    verdicts: dict[int, Verdict] = {}
    complete = j.complete_through
    for v in claimed:
        p = position.get(v)
        if p is None or p <= len(done):
            verdicts[v] = Verdict(v, True, StateVerdict.PROVEN, "already in poststack's history")
        elif complete is not None and p <= complete:
            verdicts[v] = Verdict(v, True, StateVerdict.PROVEN, j.match_evidence(), [j.match_evidence()])
        elif j.proven is not None and (p == j.proven or p in j.undecidable):
            verdicts[v] = Verdict(v, True, StateVerdict.UNDECIDABLE, "schema cannot show whether it ran (no schema "
                                  "change, or a last statement that makes none): adopted on the tool's record",
                                  [j.match_evidence()])
        elif j.proven is not None:
            verdicts[v] = Verdict(v, False, StateVerdict.ABSENT,
                                  f"its effects are not in the catalog: {j.match_evidence()}",
                                  j.against(p))
        else:
            status, summary, lines = _refusal(j)
            verdicts[v] = Verdict(v, False, status, summary, lines)
    return verdicts
