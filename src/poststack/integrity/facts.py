"""Facts: everything diagnose, repair and clean judge from, gathered once in one snapshot of the database.

A plain record (the gathering is ``poststack.integrity.gathering``, the catalog side
``poststack.integrity.catalog_facts``, the decisions ``poststack.integrity.issues``), so every integrity module
can name the type without importing the code that fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from poststack.catalog.drift import Drift
from poststack.catalog.object_evidence import Evidence
from poststack.catalog.presence import InvalidIndex
from poststack.catalog.snapshot import Snapshot
from poststack.db.history import HistoryRow
from poststack.db.lock import LockHolder
from poststack.engine.plan import MigrationState
from poststack.integrity.schema_evidence import SchemaEvidence
from poststack.source.files import MigrationSet


@dataclass
class Facts:
    """Everything diagnose looked at, gathered once; repair re-gathers under the lock before acting."""

    migrations: MigrationSet
    state: MigrationState
    history_exists: bool
    holder: LockHolder | None
    now: datetime
    blockers: dict[int, str] = field(default_factory=dict)
    evidence: dict[int, Evidence] = field(default_factory=dict)  # version -> the crashed run's object evidence
    invalid_indexes: list[InvalidIndex] = field(default_factory=list)
    index_owner: dict[str, int] = field(default_factory=dict)  # qualified index name -> version
    drift: Drift | None = None  # when the schema differs from the recorded snapshot
    drift_checked: bool = False  # a comparable snapshot existed, so "no drift" is known rather than assumed
    schema: SchemaEvidence | None = None  # when the catalog was judged against replayed states
    catalog_to_judge: Snapshot | None = None  # the catalog read with the history, until it is judged
    legacy_duplicates: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skip_reasons: dict[str, str] = field(default_factory=dict)

    @cached_property
    def rows(self) -> dict[int, HistoryRow]:
        return {r.version: r for r in self.state.rows}
