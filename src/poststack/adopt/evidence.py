"""The one decision adopt does not make itself: is a version the other tool claims really applied?

``judge_claims`` is the seam. Today it asks ``poststack.evidence.assess`` (the catalog checked object by
object against what each migration's SQL creates and drops, as ``recover`` does). It will move to replayed
states (``poststack.replay``: the migrations applied on a scratch database, a snapshot after each version,
the target's catalog compared with them); only this function's body changes then, its callers do not.

The verdict mirrors recover's treatment of a legacy history: a claim is accepted when the catalog shows the
migration's effects, or when nothing in the catalog can show them (data-only SQL: accepted on the tool's
record, and said so); it is refused when its effects are absent or only partly there, and when its SQL
cannot be read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from poststack.evidence import ABSENT, PARTIAL, PRESENT, UNCHECKABLE, assess
from poststack.files import Migration

if TYPE_CHECKING:
    from poststack.schema_migration import MigrationRunner

UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Verdict:
    """Whether a claimed version may be recorded, and the evidence shown either way."""

    version: int
    accepted: bool
    status: str  # present | uncheckable (accepted); absent | partial | unreadable (refused)
    summary: str
    evidence: list[str] = field(default_factory=list)


def judge_claims(runner: MigrationRunner, conn: psycopg.Connection[Any], migrations: Sequence[Migration],
                 claimed: Collection[int], *, recorded: Collection[int] = ()) -> dict[int, Verdict]:
    """A verdict for each claimed version, judged against all of ``migrations`` (later drops and renames
    must be seen). ``recorded`` are versions already in poststack's history. ``runner`` gives the target (and,
    once replay lands, its scratch database and cache)."""
    del runner  # not needed by the catalog-model implementation
    if not claimed:
        return {}
    evidence = assess(conn, migrations, only=set(claimed), applied=recorded)
    verdicts: dict[int, Verdict] = {}
    for version in claimed:
        ev = evidence[version]
        if ev.error:
            verdicts[version] = Verdict(version, False, UNREADABLE, f"its SQL cannot be read: {ev.error}", ev.lines)
        elif ev.status in (ABSENT, PARTIAL):
            what = "none of its objects exist" if ev.status == ABSENT else "only some of its objects exist"
            verdicts[version] = Verdict(version, False, ev.status, f"{what}: {ev.summary()}", ev.lines)
        elif ev.status == UNCHECKABLE:
            verdicts[version] = Verdict(version, True, UNCHECKABLE,
                                        f"no catalog object to verify it: adopted on the tool's record alone "
                                        f"({ev.summary()})", ev.lines)
        else:
            assert ev.status == PRESENT
            verdicts[version] = Verdict(version, True, PRESENT, ev.summary(), ev.lines)
    return verdicts
