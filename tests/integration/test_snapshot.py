"""Schema snapshots on a real PostgreSQL: every object kind captured, rollbacks restore equality, differences
named in words, and drift against the stored snapshot detected (and not invented)."""

import pytest
from psycopg import sql
from snapshot_support import ALL_KINDS, CREATED_KINDS

from poststack.catalog.drift import check_drift, detect_drift, record_snapshot, stored_snapshot
from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.db.connection import connect
from poststack.db.history import History
from poststack.engine.executor import apply_transactional
from poststack.source.files import load_migrations


@pytest.fixture
def migrations_dir(make_migrations):
    return make_migrations(ALL_KINDS)


@pytest.fixture
def conn(database_url):
    with connect(database_url, autocommit=True) as connection:
        yield connection


def test_every_rollback_restores_the_snapshot_taken_before_its_migration(migration_runner, conn):
    before = {0: snapshot(conn)}
    for version in (1, 2, 3, 4):
        migration_runner.migrate(version)
        before[version] = snapshot(conn)
    head = before[4]
    assert set(head.objects) >= CREATED_KINDS, f"kinds not captured: {CREATED_KINDS - set(head.objects)}"

    for version in (3, 2, 1, 0):
        migration_runner.rollback(version)
        after = snapshot(conn)
        assert after == before[version], before[version].diff(after)
    assert before[0] != head


def test_the_snapshot_names_objects_and_attributes_as_users_wrote_them(migration_runner, conn):
    migration_runner.migrate()
    snap = snapshot(conn)
    assert snap.get("type", "app.mood")["labels"] == ["sad", "ok", "happy"]
    assert snap.get("column", "app.users.age")["default"] == "18"
    assert snap.get("column", "app.users.id")["identity"] == "always"
    assert snap.get("column", "app.users.handle")["generated"].startswith("stored")
    assert snap.get("column", "app.users.email")["collation"] == '"C"'
    assert "NOT VALID" in snap.get("constraint", "app.orders.orders_amount_positive")["definition"]
    assert snap.get("constraint", "app.positive.positive_check")["definition"] == "CHECK ((VALUE > 0))"
    assert snap.get("index", "app.orders_user_idx")["valid"] is True
    assert snap.get("sequence", "app.ticket_seq")["increment"] == 5
    assert snap.get("table", "app.events_2024")["partition_of"] == "app.events"
    assert snap.get("table", "app.cache")["persistence"] == "unlogged"
    assert snap.get("function", "app.add(integer,integer)")["volatility"] == "immutable"
    assert snap.get("policy", "app.orders.orders_owner")["command"] == "SELECT"
    assert snap.get("table", "app.orders")["row_security"] is True
    assert snap.get("privileges", "on function app.add(integer,integer)")["grants"] == []
    assert snap.get("comment", "on column app.users.email")["text"] == "login"
    # range constructors and array types come with their types; they are not separate objects
    assert not [n for n in snap.names("function") if "score_range" in n]
    assert not [n for n in snap.names("type") if n.endswith("[]")]


def test_history_and_system_schemas_are_never_in_the_snapshot(migration_runner, conn):
    migration_runner.migrate()
    snap = snapshot(conn)
    assert "poststack" not in snap.schemas and "pg_catalog" not in snap.schemas
    names = [name for kind in snap.objects.values() for name in kind]
    assert not [n for n in names if n.startswith(("poststack.", "pg_catalog.", "information_schema."))]
    only_public = snapshot(conn, schemas=["public"])
    assert only_public.schemas == ("public",) and "app.users" not in only_public.names("table")


def test_the_snapshot_does_not_depend_on_the_session_search_path(migration_runner, conn):
    migration_runner.migrate()
    default = snapshot(conn)
    conn.execute("SET search_path = app, public")
    assert snapshot(conn) == default
    assert conn.execute("SHOW search_path").fetchone()[0] == "app, public"


def test_json_round_trip_keeps_equality_and_rejects_foreign_documents(migration_runner, conn):
    migration_runner.migrate()
    snap = snapshot(conn)
    restored = Snapshot.from_json(snap.to_json())
    assert restored == snap and restored.diff(snap) == []
    with pytest.raises(ValueError, match="not a poststack schema snapshot"):
        Snapshot.from_json('{"format": 99, "objects": {}}')


def test_diff_names_each_forgotten_object_and_changed_attribute(migration_runner, conn):
    migration_runner.migrate()
    before = snapshot(conn)
    conn.execute("""
        ALTER TABLE app.users ALTER COLUMN age DROP DEFAULT;
        DROP INDEX app.orders_user_idx;
        ALTER TYPE app.mood ADD VALUE 'meh';
        DROP TRIGGER users_touch ON app.users;
        COMMENT ON COLUMN app.users.email IS NULL;
        CREATE TABLE app.leftover (a int, b text);
        COMMENT ON TABLE app.leftover IS 'noise';
    """)
    lines = before.diff(snapshot(conn), missing="missing after rollback", added="left behind by rollback")
    assert lines == [
        "type app.mood: labels changed from [sad, ok, happy] to [sad, ok, happy, meh]",
        "table app.leftover: left behind by rollback",  # its columns and comment are not listed again
        "column app.users.age: default changed from 18 to NULL",
        "index app.orders_user_idx: missing after rollback",
        "trigger app.users.users_touch: missing after rollback",
        "comment on column app.users.email: missing after rollback",
    ]


def test_a_column_put_back_at_the_end_is_a_change_of_order_reported_once(migration_runner, conn):
    migration_runner.migrate()
    before = snapshot(conn)
    conn.execute("ALTER TABLE app.cache DROP COLUMN k; ALTER TABLE app.cache ADD COLUMN k text")
    lines = before.diff(snapshot(conn))
    assert "table app.cache: column order changed from [k, v] to [v, k]" in lines
    assert not [line for line in lines if "app.cache.v" in line]


def test_equivalent_grants_compare_equal_whoever_wrote_them(migration_runner, conn):
    migration_runner.migrate(3)
    before = snapshot(conn)
    conn.execute("GRANT SELECT ON app.users TO PUBLIC; REVOKE SELECT ON app.users FROM PUBLIC;"
                 "REVOKE EXECUTE ON FUNCTION app.touch() FROM PUBLIC;"
                 "GRANT EXECUTE ON FUNCTION app.touch() TO PUBLIC")
    assert snapshot(conn) == before  # explicit ACLs equal to the defaults are no difference
    conn.execute("GRANT INSERT ON app.users TO PUBLIC")
    assert before.diff(snapshot(conn)) == ["privileges on table app.users: added"]


def test_extension_members_are_represented_by_the_extension(conn):
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'citext'").fetchone()
    if not available:
        pytest.skip("the server has no citext extension package")
    empty = snapshot(conn)
    conn.execute("CREATE EXTENSION citext")
    with_extension = snapshot(conn)
    assert empty.diff(with_extension) == ["extension citext: added"]  # its comment goes with it
    assert with_extension.names("function") == [] and with_extension.names("type") == []
    assert with_extension.get("comment", "on extension citext") is not None


# -- drift -------------------------------------------------------------------------------------------------
def test_a_clean_schema_has_no_drift_and_a_manual_change_is_named(migration_runner, conn):
    assert detect_drift(conn, "poststack") is None  # nothing recorded yet: nothing to compare with
    migration_runner.migrate(2)  # migrate records the schema it leaves
    assert stored_snapshot(conn, "poststack").after_version == "002"
    assert detect_drift(conn, "poststack") is None

    conn.execute("CREATE INDEX users_age_idx ON app.users (age); ALTER TABLE app.users ALTER age SET DEFAULT 21")
    drift = detect_drift(conn, "poststack")
    assert drift is not None and drift.after_version == "002"
    assert drift.lines() == ["column app.users.age: default changed from 18 to 21",
                             "index app.users_age_idx: created outside poststack"]

    migration_runner.rollback(1)  # poststack's own change of the schema records a new reference
    assert detect_drift(conn, "poststack") is None
    assert stored_snapshot(conn, "poststack").after_version == "001"


def test_a_snapshot_recorded_for_an_older_version_reports_no_drift(migration_runner, conn, migrations_dir):
    migration_runner.migrate(1)
    # a run that did not record (an older poststack): the stored picture is still of version 001
    apply_transactional(conn, History("poststack"), load_migrations(migrations_dir).get(2))
    assert detect_drift(conn, "poststack") is None
    assert stored_snapshot(conn, "poststack").after_version == "001"
    assert record_snapshot(conn, "poststack").after_version == "002"
    assert detect_drift(conn, "poststack") is None


def test_recording_keeps_one_current_row_in_the_history_schema(migration_runner, conn):
    migration_runner.migrate(1)
    migration_runner.migrate()
    migration_runner.rollback(0)
    record_snapshot(conn, "poststack")
    table = sql.SQL("{}.{}").format(sql.Identifier("poststack"), sql.Identifier("schema_snapshot"))
    assert conn.execute(sql.SQL("SELECT count(*), min(after_version) FROM {}").format(table)).fetchone() == (1, None)
    assert detect_drift(conn, "poststack") is None
    conn.execute("CREATE TABLE stray (a int)")
    assert detect_drift(conn, "poststack").lines() == ["table public.stray: created outside poststack"]


def test_recover_records_a_reference_so_drift_stays_checkable(migration_runner, conn, migrations_dir):
    migration_runner.migrate(1)
    # 002 and 003 were applied by hand (another tool, a console): the history is behind the catalog.
    for version in (2, 3):
        conn.execute(load_migrations(migrations_dir).get(version).sql)
    assert check_drift(conn, "poststack").checked  # still at 001: the reference describes it...
    result = migration_runner.recover()
    assert [s.version for s in result.recorded] == [2, 3]
    assert stored_snapshot(conn, "poststack").after_version == "003"  # ...and moves with the history
    check = check_drift(conn, "poststack")
    assert check.checked and check.drift is None
    conn.execute("DROP VIEW app.adults")
    assert detect_drift(conn, "poststack").lines() == ["view app.adults: dropped outside poststack"]
