"""A model of what poststack promises, for the state-machine test: what each command must do and report.

The model knows only the documented contract (DESIGN.md): which versions are recorded and how, which exist
in the catalog although nobody recorded them, with which text each was applied and which text its history
row stores, which files changed since they were recorded, and when the last schema snapshot was taken. From
that it predicts each command's outcome and the exact set of issues ``diagnose`` must report. The
migrations are independent of each other, so that any pending one may be applied by hand at any time.

recover and diagnose judge the catalog against replayed states (``poststack.engine.judgement``). The model replays
them too, abstractly: a migration's objects are one unit, known by the ``knob`` of the text that made it
(each text puts its knob in a column default, a view or a sequence start, so two texts never leave the same
objects). The sequence is the applied rows (their stored text) in version order, then the pending files;
state(i) holds the units of its first i steps. The states are replayed from the step before the recorded
position on; the units of the steps after it tell states apart (``touched``), and so does any object whose
table a replayed step names (the first replayed step's own unit, if the catalog has it otherwise). Tables
no migration names (made by hand) and the earlier applied units are compared apart (``outside``): drift,
never a reason to doubt which migrations ran. A catalog that equals no state is refused.
"""

from __future__ import annotations

import re
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
_KNOB = re.compile(r"DEFAULT (\d+)\)|START (\d+) |(\d+) AS knob")

Units = frozenset[tuple[int, int]]  # (version, knob of the text that made its objects)


def knob_of(text: str) -> int:
    """The knob of a migration's text (BODIES), e.g. of the SQL a history row stores."""
    found = _KNOB.search(text)
    assert found is not None, text
    return int(next(g for g in found.groups() if g is not None))


@dataclass(frozen=True)
class Snapshot:
    """The schema reference poststack stored: after which version, and the catalog it saw."""

    version: int | None
    units: Units
    hand_tables: int


@dataclass(frozen=True)
class Judged:
    """The model's judgement of the catalog against the replayed states (see the module docstring)."""

    recorded: int  # h, the number of applied rows
    sequence: list[tuple[int, int]]  # (version, knob) of each step
    proven: int | None
    outside: bool  # differences on objects no migration touches (hand tables, earlier applied units)

    def versions(self, first: int, last: int) -> list[int]:
        """Versions at positions first..last (1-based, inclusive)."""
        return [v for v, _ in self.sequence[first - 1:last]]


@dataclass
class Model:
    applied: set[int] = field(default_factory=set)  # history rows with status applied
    failed: set[int] = field(default_factory=set)  # history rows with status failed (objects exist)
    untracked: set[int] = field(default_factory=set)  # objects exist, no history row
    knob: dict[int, int] = field(default_factory=lambda: dict.fromkeys(VERSIONS, 0))
    notes: dict[int, int] = field(default_factory=lambda: dict.fromkeys(VERSIONS, 0))
    edits: dict[int, set[str]] = field(default_factory=dict)  # per recorded version: edit kinds since recorded
    made: dict[int, int] = field(default_factory=dict)  # present version -> knob of the text that made its objects
    stored: dict[int, int] = field(default_factory=dict)  # recorded version -> knob of the SQL its row stores
    hand_tables: int = 0  # tables made by hand that belong to no migration
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

    def apply_by_hand(self, version: int) -> None:
        self.untracked.add(version)
        self.made[version] = self.knob[version]

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

    @property
    def catalog(self) -> Units:
        return frozenset((v, self.made[v]) for v in self.present)

    def record(self, version: int, status: str = "applied") -> None:
        """A history row written with the file's text as it is now."""
        self.untracked.discard(version)
        (self.applied if status == "applied" else self.failed).add(version)
        self.stored[version] = self.knob[version]
        self.made.setdefault(version, self.knob[version])  # a migration run by poststack made its objects
        self.edits.pop(version, None)

    def take_snapshot(self) -> None:
        self.snapshot = Snapshot(self.current, self.catalog, self.hand_tables)

    def reference(self) -> bool:
        """A stored snapshot describes the recorded version, so drift can be measured against it."""
        return self.snapshot is not None and self.snapshot.version == self.current

    def drift(self) -> bool:
        """The catalog differs from the stored reference, apart from what unfinished runs left (failed
        rows' objects: failed_migration reports them)."""
        if not self.reference():
            return False
        assert self.snapshot is not None

        def without_failed(units: Units) -> Units:
            return frozenset(u for u in units if u[0] not in self.failed)
        return (without_failed(self.catalog) != without_failed(self.snapshot.units)
                or self.hand_tables != self.snapshot.hand_tables)

    def pending_visible(self) -> bool:
        """An object of a pending file exists (run by hand): the reference alone cannot be trusted then,
        since migrate snapshots the catalog as it is, hand-run objects included."""
        return any(v in self.pending for v, _ in self.catalog)

    def judge(self) -> Judged:
        """The catalog against the states of applied rows (stored text) then pending files (their text)."""
        sequence = [(v, self.stored[v]) for v in sorted(self.applied)] + [(v, self.knob[v]) for v in self.pending]
        h = len(self.applied)
        start = max(h - 1, 0)  # the first state replayed
        touched = {v for v, _ in sequence[start:]}
        earlier = sequence[:start]  # applied units every replayed state has alike
        differing = {v for v, k in earlier if self.made.get(v) != k}
        named = {sequence[start - 1][0]} & differing if start else set()  # the first replayed step names its table
        catalog = {v: k for v, k in self.catalog if v in touched | named}
        outside = self.hand_tables > 0 or bool(differing - named)

        def state(p: int) -> dict[int, int]:
            return dict(sequence[start:p]) | {v: k for v, k in earlier if v in named}

        # A catalog between two states would have half a unit: each unit is all or nothing here, so it never is.
        proven = next((p for p in range(h, len(sequence) + 1) if state(p) == catalog), None)
        return Judged(h, sequence, proven, outside)

    def expected_issues(self) -> set[tuple[str, int | None]]:
        issues: set[tuple[str, int | None]] = set()
        for version, kinds in self.edits.items():
            issues.add(("checksum_mismatch" if "real" in kinds else "cosmetic_change", version))
        issues |= {("failed_migration", v) for v in self.failed}
        if self.drift():
            issues.add(("schema_drift", None))  # from the reference; replaced below when the states explain it
        if self.failed or (self.reference() and not self.drift() and not self.pending_visible()) \
                or (self.reference() and not self.pending):
            return issues  # states not compared: an unfinished run, or the reference shows nothing to explain
        j = self.judge()
        if j.proven is not None:
            issues.discard(("schema_drift", None))  # what differs from the reference is explained by the states
            issues |= {("missing_tracking", v) for v in j.versions(j.recorded + 1, j.proven)}
        # The states alone decide with no reference, or with a clean one that a pending file's objects put in
        # doubt (pending_visible); with drift from the reference, the drift is reported instead.
        states_decide = not self.reference() or not self.drift()
        if j.proven is None and states_decide:
            issues.add(("schema_mismatch", j.sequence[j.recorded - 1][0] if j.recorded else None))
        if j.outside and (j.proven is not None or states_decide):
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
            self.made[version] = self.knob[version]
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
            self.made.pop(version, None)
            self.stored.pop(version, None)
        if undone:
            self.take_snapshot()
        return None

    def recover(self) -> tuple[list[int], bool]:
        """(versions recover records, whether it refuses something).

        Nothing while a row is unfinished. Else the versions up to the state the catalog equals (on the
        objects migrations touch): a contiguous run of the pending ones, each applied with the text now in
        its file. No match: refused, with the differences.
        """
        if self.failed or not self.pending:
            return [], False
        j = self.judge()
        if j.proven is None:
            return [], True
        recorded = j.versions(j.recorded + 1, j.proven)
        for version in recorded:
            self.record(version)
        if recorded and not j.outside:  # the catalog is exactly the new version's state: the reference
            self.take_snapshot()  # (with hand tables it is not, and they must stay visible as drift)
        return recorded, False

    def repair(self, force: bool) -> None:
        """repair [--force] of every issue diagnose reports."""
        issues = self.expected_issues()
        changed_schema = bool(self.failed)  # a failed row whose objects all exist is marked applied
        reference_clean = self.reference() and not self.drift()
        for version, kinds in list(self.edits.items()):
            if "real" not in kinds or force:
                self.edits.pop(version)  # the stored text stays in meaning: the database ran that one
        for version in sorted(self.failed):
            self.failed.discard(version)
            self.applied.add(version)
        if changed_schema and reference_clean:
            self.take_snapshot()
        if any(code == "missing_tracking" for code, _ in issues):
            self.recover()
