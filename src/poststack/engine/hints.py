"""What migrate tells a user to do next when it refuses or a migration fails: only advice that is true.

A hint is part of the promise: "pass --allow-out-of-order" for a migration whose objects already exist
leads straight to ``relation already exists``, and "use rollback" for a version that was never applied
leads to another refusal. So the out-of-order refusal asks the catalog first (the same evidence diagnose
uses), and a failure that says an object already exists points at ``diagnose`` / ``recover``, which can
prove and record a migration applied outside poststack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from poststack.engine.plan import MigrationState
from poststack.errors import MigrationFailed, StateError
from poststack.source.files import Migration

if TYPE_CHECKING:
    from poststack.catalog.object_evidence import EvidenceStatus

# SQLSTATEs of "already exists": relation/index, object (type, constraint, trigger...), column, schema, function.
DUPLICATE_OBJECT_STATES = frozenset({"42P07", "42710", "42701", "42P06", "42723"})
APPLIED_ELSEWHERE = ("if this migration was applied outside poststack, 'poststack db diagnose' shows it and "
                     "'poststack db recover' records it")


@contextmanager
def point_to_recover_on_duplicates() -> Iterator[None]:
    """Re-raise a migration's "already exists" failure with the way out: diagnose, then recover."""
    try:
        yield
    except MigrationFailed as exc:
        if exc.sqlstate not in DUPLICATE_OBJECT_STATES or APPLIED_ELSEWHERE in str(exc):
            raise
        raise MigrationFailed(f"{exc}; {APPLIED_ELSEWHERE}", version=exc.version, path=exc.path, line=exc.line,
                              sqlstate=exc.sqlstate) from None


def out_of_order_refusal(conn: psycopg.Connection[Any] | None, state: MigrationState,
                         late: list[Migration]) -> StateError:
    """The refusal for pending versions below the newest recorded one, advising by what the catalog shows.

    All objects present: recover (applying again would fail). Some: diagnose (partially applied; a person
    decides). None: --allow-out-of-order. Nothing checkable (or no connection): both paths, each with its
    condition, never one presented as the answer.
    """
    first = late[0]
    newest = max(state.rows, key=lambda r: r.version)
    more = f" (and {len(late) - 1} more)" if len(late) > 1 else ""
    head = (f"migration {first.filename}{more} is older than the newest applied version {newest.version_text} "
            "and has no history row")
    # deferred: keeps start-up fast (only a refused out-of-order migration needs the object evidence)
    from poststack.catalog.object_evidence import EvidenceStatus

    status = _evidence_status(conn, state, first)
    if status == EvidenceStatus.PRESENT:
        return StateError(f"{head}, but every object it creates already exists (applied outside poststack?): "
                          "run 'poststack db diagnose', then 'poststack db recover' to record it; applying it "
                          "again would fail")
    if status == EvidenceStatus.PARTIAL:
        return StateError(f"{head}, and only some of its objects exist: run 'poststack db diagnose' "
                          "(partially_applied), then finish or undo it by hand")
    if status == EvidenceStatus.ABSENT:
        return StateError(f"{head}; none of its objects exist: pass --allow-out-of-order to apply it now")
    return StateError(f"{head}: {APPLIED_ELSEWHERE}; if it never ran, pass --allow-out-of-order to apply it now")


def _evidence_status(conn: psycopg.Connection[Any] | None, state: MigrationState,
                     migration: Migration) -> EvidenceStatus:
    """present | partial | absent | uncheckable, for one pending migration, read on ``conn``."""
    # deferred: keeps start-up fast (a no-op migrate imports this module; only a refused out-of-order
    # migration needs the object evidence)
    from poststack.catalog import object_evidence as evidence

    if conn is None:
        return evidence.EvidenceStatus.UNCHECKABLE
    try:
        found = evidence.assess(conn, list(state.migrations), only={migration.version},
                                applied=[r.version for r in state.applied])
    except psycopg.Error:
        return evidence.EvidenceStatus.UNCHECKABLE  # the refusal stands either way; only its advice gets vaguer
    ev = found.get(migration.version)
    return ev.status if ev is not None else evidence.EvidenceStatus.UNCHECKABLE
