"""Planning migrate and rollback from files and history rows: pure logic, no server."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from poststack.db.history import HistoryRow
from poststack.engine.plan import compare, plan_migrate, plan_rollback
from poststack.errors import RollbackRefused, UsageError
from poststack.source.files import load_migrations


def row(migration, **changes) -> HistoryRow:
    values = dict(version=migration.version, version_text=migration.version_text, name=migration.name,
                  description=None, checksum=migration.checksum, semantic_checksum=migration.semantic_checksum,
                  rollback_checksum=None, sql=migration.sql,
                  rollback_sql=migration.rollback.text if migration.rollback else None, no_transaction=False,
                  status="applied", statements_done=None, source="migrate", applied_at=datetime.now(UTC),
                  applied_by="test", client=None, execution_ms=1, poststack_version="x", error=None)
    values.update(changes)
    return HistoryRow(**values)


@pytest.fixture
def migrations(tmp_path: Path):
    for version in (1, 2, 3):
        (tmp_path / f"00{version}_m{version}.sql").write_text(f"CREATE TABLE t{version} ();")
        if version != 2:
            (tmp_path / f"00{version}_m{version}.rollback.sql").write_text(f"DROP TABLE t{version};")
    return load_migrations(tmp_path)


def test_pending_are_the_unrecorded_versions_in_order(migrations):
    state = compare(migrations, [row(migrations.migrations[0])])
    assert [m.version for m in state.pending] == [2, 3]
    assert state.current_version == 1
    assert [m.version for m in plan_migrate(state, 2)] == [2]


def test_target_must_exist_and_not_be_below_current(migrations):
    state = compare(migrations, [row(m) for m in migrations.migrations[:2]])
    with pytest.raises(UsageError, match="no migration file has version 7"):
        plan_migrate(state, 7)
    with pytest.raises(UsageError, match="below the current version 002"):
        plan_migrate(state, 1)


def test_changed_files_are_split_into_cosmetic_and_real(migrations):
    first, second, _ = migrations.migrations
    cosmetic = row(first, checksum="0" * 64)  # same semantic checksum: only bytes differ
    real = row(second, checksum="0" * 64, semantic_checksum="1" * 64)
    state = compare(migrations, [cosmetic, real])
    assert {(c.version, c.kind) for c in state.changed} == {(1, "cosmetic_change"), (2, "checksum_mismatch")}
    assert [c.version for c in state.blocking_changes] == [2]


def test_out_of_order_pending_versions_are_flagged(migrations):
    first, _, third = migrations.migrations
    state = compare(migrations, [row(first), row(third)])
    assert [m.version for m in state.out_of_order] == [2]


def test_rollback_plan_is_newest_first_and_refuses_before_touching_anything(migrations):
    first, second, third = migrations.migrations
    state = compare(migrations, [row(first), row(second, rollback_sql=None), row(third)])
    assert [s.row.version for s in plan_rollback(state, 2)] == [3]
    with pytest.raises(RollbackRefused, match=r"002_m2.sql: no rollback file"):
        plan_rollback(state, 0)
    with pytest.raises(RollbackRefused, match="not an applied version"):
        plan_rollback(state, 5)


def test_rollback_uses_stored_sql_when_the_file_is_gone(migrations, tmp_path):
    first = migrations.migrations[0]
    (tmp_path / "001_m1.sql").unlink()
    (tmp_path / "001_m1.rollback.sql").unlink()
    state = compare(load_migrations(tmp_path), [row(first)])
    [step] = plan_rollback(state, 0)
    assert step.source == "history" and step.sql == "DROP TABLE t1;"
