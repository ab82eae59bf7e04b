"""Property-based: any sequence of migrate, rollback, file edits, hand-applied SQL (a pending migration's, or
a table of no migration), a held lock, repair and recover leaves a database whose diagnosis is exactly what
the contract predicts.

Hypothesis drives a RuleBasedStateMachine against a fresh database per example; ``migration_model.Model``
says what each command must do (or refuse) and which issues ``diagnose`` must then report — no more (no
false alarms), no fewer (nothing hidden). After every step, independently of the model: every transactional
migration is recorded exactly when its objects exist; and whenever ``recover`` writes a row, the SQL it
stores is the text that made the catalog's objects (the knob each text sets is read back from pg_catalog).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from migration_model import VERSIONS, Model, knob_of
from reliability_support import (
    HANG_GUARD_SECONDS,
    apply_untracked,
    history,
    observe,
    poststack_backends,
    transactional_disagreements,
)

from poststack.db.lock import lock_key
from poststack.errors import LockTimeout, PoststackError
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing.server import TestServer, create_database, drop_database

pytestmark = [pytest.mark.integration, pytest.mark.database]

_DEFAULT = ("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
            "ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = to_regclass(%s) AND a.attname = 'knob'")
KNOB_QUERIES = {  # the knob of the text that made each migration's objects, as pg_catalog shows it
    1: (_DEFAULT, ["public.t1"]),
    2: (_DEFAULT, ["public.t2"]),
    3: (_DEFAULT, ["public.t3"]),
    4: ("SELECT substring(pg_get_viewdef(to_regclass(%s)) from '(\\d+) AS knob')", ["public.v4"]),
    5: ("SELECT seqstart FROM pg_sequence WHERE seqrelid = to_regclass(%s)", ["public.s5"]),
}


def catalog_knobs(url: str) -> dict[int, int]:
    """version -> knob, for each migration whose objects exist."""
    found = {}
    with observe(url) as conn:
        for version, (query, params) in KNOB_QUERIES.items():
            row = conn.execute(query, params).fetchone()
            if row is not None and row[0] is not None:
                found[version] = int(row[0])
    return found


def outcome_of(call: Callable[[], object]) -> type[Exception] | None:
    """The poststack error class a command raised, or None; anything else propagates (a crash is a bug)."""
    try:
        call()
    except PoststackError as exc:
        return type(exc)
    return None


def machine_for(server: TestServer, workdir: Callable[[], Path]) -> type[RuleBasedStateMachine]:
    class PoststackMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.database = create_database(server, "psm")
            self.url = server.database_url(self.database)
            self.directory = workdir()
            self.model = Model()
            for version in VERSIONS:
                self.model.write(self.directory, version)
            self.runner = MigrationRunner(self.url, self.directory)
            self.diag = MigrationDiagnostics(self.url, self.directory)

        def teardown(self) -> None:
            drop_database(server, self.database)

        def expect(self, what: str, expected: type[Exception] | None, call: Callable[[], object]) -> None:
            event(f"{what}: {expected.__name__ if expected else 'done'}")  # --hypothesis-show-statistics
            actual = outcome_of(call)
            assert actual is expected, f"{what}: expected {expected}, got {actual}; model: {self.model}"

        # -- rules -------------------------------------------------------------------------------------
        @initialize(to=st.sampled_from(VERSIONS))
        def start_migrated(self, to: int) -> None:
            """Most examples are short: starting from applied migrations gives edits and repairs work to do."""
            self.migrate(to)

        @rule(to=st.sampled_from([None, *VERSIONS]))
        def migrate(self, to: int | None) -> None:
            expected = self.model.migrate(to)
            self.expect("migrate", expected, lambda: self.runner.migrate(to))

        @rule(to=st.sampled_from([0, *VERSIONS]))
        def rollback(self, to: int) -> None:
            expected = self.model.rollback(to)
            self.expect("rollback", expected, lambda: self.runner.rollback(to))

        @rule(version=st.sampled_from(VERSIONS), kind=st.sampled_from(["cosmetic", "real"]))
        def edit_file(self, version: int, kind: str) -> None:
            self.model.edit(version, kind)
            self.model.write(self.directory, version)

        @precondition(lambda self: any(v not in self.model.untracked for v in self.model.pending))
        @rule(data=st.data(), then=st.sampled_from(["nothing", "migrate", "recover"]))
        def apply_by_hand(self, data: st.DataObject, then: str) -> None:
            """A DBA runs a pending file's SQL in psql: objects, no history row. A migrate right after it meets
            those objects; a recover right after it judges them (rules are drawn in random subsets, so the
            pairs would otherwise be rare)."""
            version = data.draw(st.sampled_from([v for v in self.model.pending if v not in self.model.untracked]))
            apply_untracked(self.url, load_migrations(self.directory).by_version()[version])
            self.model.apply_by_hand(version)
            if then == "migrate":
                self.migrate(None)
            elif then == "recover":
                self.recover()

        @rule()
        def create_table_by_hand(self) -> None:
            """DDL that belongs to no migration: drift, and no evidence for or against any migration."""
            self.model.hand_tables += 1
            with observe(self.url) as conn:
                conn.execute(f"CREATE TABLE by_hand_{self.model.hand_tables} (id int)")

        @rule(then_migrate=st.booleans())
        def hold_lock(self, then_migrate: bool) -> None:
            """Another session holds the migration lock: migrate times out and changes nothing; diagnose names
            the holder; a migrate that waits for the lock proceeds once it is released."""
            waiting: threading.Thread | None = None
            outcome: list[type[Exception] | None] = []
            with observe(self.url) as holder:
                holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
                before = history(self.url)
                impatient = MigrationRunner(self.url, self.directory, lock_timeout=0)
                assert outcome_of(impatient.migrate) is LockTimeout
                assert history(self.url) == before
                stuck = MigrationDiagnostics(self.url, self.directory, lock_age=0).diagnose().of("stuck_lock")
                assert len(stuck) == 1 and f"pid {holder.info.backend_pid}" in stuck[0].message, stuck
                if then_migrate:
                    waiting = threading.Thread(target=lambda: outcome.append(outcome_of(self.runner.migrate)))
                    waiting.start()
                    deadline = time.monotonic() + HANG_GUARD_SECONDS
                    while not poststack_backends(holder, self.database) and waiting.is_alive():
                        assert time.monotonic() < deadline, "hang: the waiting migrate never connected"
                        time.sleep(0.002)
            # leaving the block closed the holder's session, and with it the lock
            if waiting is not None:
                expected = self.model.migrate(None)
                waiting.join()
                assert outcome == [expected], f"model: {self.model}"

        @rule(force=st.booleans())
        def repair(self, force: bool) -> None:
            found = self.diag.diagnose()
            self.diag.repair(found.issues, force=force)
            self.model.repair(force)

        @rule()
        def recover(self) -> None:
            before = self.model.judge()
            expected, refused = self.model.recover()
            event(f"recover: {'refused' if refused else 'records' if expected else 'records nothing'}")
            result = self.runner.recover()
            assert [s.version for s in result.recorded] == expected, (before, result.steps)
            assert bool(result.refused) is refused, (before, result.steps)
            rows = {r.version: r for r in history(self.url)}
            knobs = catalog_knobs(self.url)
            # The promise, read from the database alone: each row recover wrote stores the text that ran.
            assert {v: knob_of(rows[v].sql) for v in expected} == {v: knobs.get(v) for v in expected}

        # -- what must hold after every step -----------------------------------------------------------
        @invariant()
        def diagnosis_is_what_the_model_predicts(self) -> None:
            found = self.diag.diagnose()
            issues = {(i.code, i.version) for i in found.issues}
            for code in sorted({code for code, _ in issues}):
                event(f"diagnosed: {code}")
            assert issues == self.model.expected_issues(), (
                f"model: {self.model}\n" + "\n".join(f"{i.code} {i.version}: {i.message} {i.evidence}"
                                                     for i in found.issues))

        @invariant()
        def history_and_catalog_agree(self) -> None:
            rows = history(self.url)
            statuses = {v: "applied" for v in self.model.applied} | {v: "failed" for v in self.model.failed}
            assert {r.version: r.status for r in rows} == statuses
            assert transactional_disagreements(self.url, self.directory, untracked=self.model.untracked) == []
            # The texts the model tracks are the database's: what made each object, what each row stores.
            assert catalog_knobs(self.url) == self.model.made, f"model: {self.model}"
            assert {r.version: knob_of(r.sql) for r in rows} == self.model.stored, f"model: {self.model}"

    return PoststackMachine


def run_machine(server: TestServer, tmp_path_factory: pytest.TempPathFactory, examples: int, steps: int) -> None:
    machine = machine_for(server, lambda: tmp_path_factory.mktemp("psm"))
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))


def test_any_sequence_of_commands_leaves_the_predicted_diagnosis(postgres_server, tmp_path_factory):
    run_machine(postgres_server, tmp_path_factory, examples=15, steps=12)


@pytest.mark.slow
def test_long_sequences_of_commands(postgres_server, tmp_path_factory):
    run_machine(postgres_server, tmp_path_factory, examples=60, steps=25)
