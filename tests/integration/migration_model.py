"""A model of what poststack promises, for the state-machine test: what each command must do and report.

The model knows only the documented contract (DESIGN.md): which versions are recorded and how, which exist
in the catalog although nobody recorded them, which files changed since they were recorded, and when the
last schema snapshot was taken. From that it predicts each command's outcome and the exact set of issues
``diagnose`` must report. The migrations are independent of each other, so that any pending one may be
applied by hand at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from poststack.errors import ChecksumChanged, MigrationFailed, RollbackRefused, StateError, UsageError

VERSIONS = (1, 2, 3, 4, 5)
NO_TRANSACTION = frozenset({3})
BODIES = {
    1: "CREATE TABLE t1 (id int, knob int DEFAULT {knob});\n",
    2: "CREATE TABLE t2 (id int PRIMARY KEY, knob int DEFAULT {knob});\nCREATE INDEX t2_knob_idx ON t2 (knob);\n",
    3: "-- poststack:no-transaction\nCREATE TABLE t3 (id int, knob int DEFAULT {knob});\n"
       "CREATE INDEX CONCURRENTLY t3_id_idx ON t3 (id);\n",
    4: "CREATE VIEW v4 AS SELECT 1 AS one, {knob} AS knob;\n",
    5: "CREATE SEQUENCE s5 START {knob} MINVALUE 0;\nCREATE TABLE t5 (id int DEFAULT nextval('s5'));\n",
}
ROLLBACKS = {
    1: "DROP TABLE t1;\n",
    2: "DROP TABLE t2;\n",
    3: "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY t3_id_idx;\nDROP TABLE t3;\n",
    4: "DROP VIEW v4;\n",
    5: "DROP TABLE t5;\nDROP SEQUENCE s5;\n",
}
NAMES = {1: "t1", 2: "t2", 3: "t3", 4: "v4", 5: "s5"}


@dataclass(frozen=True)
class Snapshot:
    """The schema reference poststack stored: after which version, and which migrations' objects existed."""

    version: int | None
    present: frozenset[int]
    hand_tables: int


@dataclass
class Model:
    applied: set[int] = field(default_factory=set)  # history rows with status applied
    failed: set[int] = field(default_factory=set)  # history rows with status failed (objects exist)
    untracked: set[int] = field(default_factory=set)  # objects exist, no history row
    knob: dict[int, int] = field(default_factory=lambda: dict.fromkeys(VERSIONS, 0))
    notes: dict[int, int] = field(default_factory=lambda: dict.fromkeys(VERSIONS, 0))
    edits: dict[int, set[str]] = field(default_factory=dict)  # per recorded version: edit kinds since recorded
    hand_tables: int = 0  # tables made by hand that belong to no migration: drift, once a reference exists
    snapshot: Snapshot | None = None

    # -- files ---------------------------------------------------------------------------------------------
    def text(self, version: int) -> str:
        notes = "".join(f"-- note {n}\n" for n in range(1, self.notes[version] + 1))
        return BODIES[version].format(knob=self.knob[version]) + notes

    def write(self, directory: Path, version: int) -> None:
        stem = f"{version:03d}_{NAMES[version]}"
        (directory / f"{stem}.sql").write_text(self.text(version))
        (directory / f"{stem}.rollback.sql").write_text(ROLLBACKS[version])

    def edit(self, version: int, kind: str) -> None:
        if kind == "cosmetic":
            self.notes[version] += 1
        else:
            self.knob[version] += 1
        if version in self.recorded:
            self.edits.setdefault(version, set()).add(kind)

    # -- derived state -------------------------------------------------------------------------------------
    @property
    def recorded(self) -> set[int]:
        return self.applied | self.failed

    @property
    def pending(self) -> list[int]:
        return [v for v in VERSIONS if v not in self.recorded]

    @property
    def present(self) -> frozenset[int]:
        return frozenset(self.applied | self.failed | self.untracked)

    @property
    def current(self) -> int | None:
        return max(self.applied, default=None)

    def record(self, version: int, status: str = "applied") -> None:
        self.untracked.discard(version)
        (self.applied if status == "applied" else self.failed).add(version)
        self.edits.pop(version, None)

    def take_snapshot(self) -> None:
        self.snapshot = Snapshot(self.current, self.present, self.hand_tables)

    def drift(self) -> bool:
        """Schema changed since the stored reference, apart from what other issues already report (the
        objects of failed and of unrecorded migrations: one fact is reported once)."""
        if self.snapshot is None or self.snapshot.version != self.current:
            return False  # no reference for this version: drift cannot be known, so none is reported
        explained = self.failed | self.untracked
        return (self.present - explained != self.snapshot.present - explained
                or self.hand_tables != self.snapshot.hand_tables)

    def expected_issues(self) -> set[tuple[str, int | None]]:
        issues: set[tuple[str, int | None]] = set()
        for version, kinds in self.edits.items():
            issues.add(("checksum_mismatch" if "real" in kinds else "cosmetic_change", version))
        issues |= {("missing_tracking", v) for v in self.untracked}
        issues |= {("failed_migration", v) for v in self.failed}
        if self.drift():
            issues.add(("schema_drift", None))
        return issues

    # -- commands ------------------------------------------------------------------------------------------
    def migrate(self, target: int | None) -> type[Exception] | None:
        """Apply like poststack must; return the error class the command must raise (None: success)."""
        # A failed no-transaction migration within the target is resumed, from the same text only.
        resumed = min(self.failed) if self.failed and (target is None or min(self.failed) <= target) else None
        if resumed is not None and resumed in self.edits:
            return StateError
        if any("real" in kinds for v, kinds in self.edits.items() if v != resumed):
            return ChecksumChanged
        if target is not None and self.current is not None and target < self.current:
            return UsageError
        planned = [v for v in self.pending if target is None or v <= target]
        if planned and self.recorded and min(planned) < max(self.recorded):
            return StateError  # out of order
        if resumed is not None:  # its first statement meets the objects that exist again
            return MigrationFailed
        steps = 0
        outcome: type[Exception] | None = None
        for version in planned:
            if version in self.untracked:  # its CREATE meets the objects made by hand
                if version in NO_TRANSACTION:  # its 'running' row was committed first: now 'failed'
                    self.record(version, "failed")
                outcome = MigrationFailed
                break
            self.record(version)
            steps += 1
        if steps:
            self.take_snapshot()
        return outcome

    def rollback(self, target: int) -> type[Exception] | None:
        if (target != 0 and target not in self.applied) or self.failed:
            return RollbackRefused
        undone = sorted((v for v in self.applied if v > target), reverse=True)
        for version in undone:
            self.applied.discard(version)
            self.edits.pop(version, None)
        if undone:
            self.take_snapshot()
        return None

    def recover(self) -> tuple[list[int], bool]:
        """(versions recover records, whether it refuses something): the untracked prefix of the pending."""
        recorded: list[int] = []
        gap = False
        for version in self.pending:
            if version not in self.untracked:
                gap = True
            elif not gap:
                recorded.append(version)
        refused = any(v in self.untracked for v in self.pending if v not in recorded)
        for version in recorded:
            self.record(version)
        if recorded:  # the history moved to a new version; the catalog recover vouched for is the reference
            self.take_snapshot()
        return recorded, refused

    def repair(self, force: bool) -> None:
        """repair [--force] of every issue diagnose reports."""
        changed_schema = bool(self.failed)  # a failed row whose objects all exist is marked applied
        reference_clean = self.snapshot is not None and self.snapshot.version == self.current and not self.drift()
        for version, kinds in list(self.edits.items()):
            if "real" not in kinds or force:
                self.edits.pop(version)
        for version in sorted(self.failed):
            self.failed.discard(version)
            self.applied.add(version)
        if changed_schema and reference_clean:
            self.take_snapshot()
        if self.untracked:
            self.recover()
