"""Two applications, two history schemas, one database (issue 10, item 11).

Each application's poststack tables are its own business: the other's diagnose must not report them as
schema_drift, whether they live in a schema of their own or in ``public``, while real drift (a table made
by hand, another tool's ``migrations`` table) is still reported.
"""

import psycopg
import pytest

from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration]

APP_A = {"001_a.sql": "CREATE TABLE a_items (id int PRIMARY KEY);\n", "001_a.rollback.sql": "DROP TABLE a_items;\n"}
APP_B = {"001_b.sql": "CREATE TABLE b_items (id int PRIMARY KEY);\n",
         "002_b.sql": "ALTER TABLE b_items ADD COLUMN note text;\n"}


def drift(url: str, directory, schema: str) -> list[str]:
    result = MigrationDiagnostics(url, directory, history_schema=schema).diagnose()
    assert "schema_drift" not in result.summary.checks_skipped
    return [line for issue in result.of("schema_drift") for line in issue.evidence]


def run_by_hand(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("b_schema", ["app_b", "public"])
def test_another_applications_history_is_not_drift(make_migrations, database_url, b_schema):
    a_dir, b_dir = make_migrations(APP_A, "a"), make_migrations(APP_B, "b")
    a = MigrationRunner(database_url, a_dir, history_schema="app_a")
    b = MigrationRunner(database_url, b_dir, history_schema=b_schema)
    a.migrate()
    b.migrate(target=1)  # B's history appears after A's snapshot...
    run_by_hand(database_url, "CREATE TABLE by_hand (id int)")  # ...and so does real drift
    a_drift = drift(database_url, a_dir, "app_a")
    assert not [line for line in a_drift if any(t in line for t in ("migrations", "audit_log", "schema_snapshot",
                                                                    "schema app_b"))], a_drift
    assert any("public.by_hand" in line for line in a_drift) and any("public.b_items" in line for line in a_drift)
    # B's own view: A's history (recorded before B existed) and A's later runs are not drift either.
    run_by_hand(database_url, "DROP TABLE by_hand")
    b.migrate()
    a.rollback(0)
    a.migrate()
    b_drift = drift(database_url, b_dir, b_schema)
    assert not [line for line in b_drift if "app_a" in line and ("migrations" in line or "audit_log" in line
                                                                 or "schema_snapshot" in line)], b_drift


def test_a_reference_stored_before_the_sibling_was_recognised_still_compares_clean(make_migrations, database_url):
    a_dir, b_dir = make_migrations(APP_A, "a"), make_migrations({"001_b.sql": "SELECT 1;\n"}, "b")
    MigrationRunner(database_url, b_dir, history_schema="app_b").migrate()
    a = MigrationRunner(database_url, a_dir, history_schema="app_a")
    a.migrate()
    with psycopg.connect(database_url, autocommit=True) as conn:  # the reference of an older poststack kept app_b
        conn.execute("UPDATE app_a.schema_snapshot SET fingerprint = NULL")
        from poststack.catalog.snapshot import snapshot

        full = snapshot(conn, exclude_schemas=("app_a",))
        assert ("table", "app_b.migrations") in full
        conn.execute("UPDATE app_a.schema_snapshot SET snapshot = %s",
                     [psycopg.types.json.Jsonb(full.to_dict())])
    assert drift(database_url, a_dir, "app_a") == []
    run_by_hand(database_url, "DROP TABLE app_b.audit_log")  # no longer a poststack history: plain objects
    assert any("app_b" in line for line in drift(database_url, a_dir, "app_a"))


def test_another_tools_migrations_table_is_still_drift(make_migrations, database_url):
    a_dir = make_migrations(APP_A, "a")
    MigrationRunner(database_url, a_dir).migrate()
    run_by_hand(database_url, "CREATE SCHEMA flyway; CREATE TABLE flyway.migrations (version text); "
                              "CREATE TABLE flyway.audit_log (id int)")
    lines = drift(database_url, a_dir, "poststack")
    assert any("flyway.migrations" in line for line in lines) or any("schema flyway" in line for line in lines)


def test_a_table_added_to_a_siblings_history_schema_is_drift_but_its_history_is_not(make_migrations, database_url):
    a_dir, b_dir = make_migrations(APP_A, "a"), make_migrations({"001_b.sql": "SELECT 1;\n"}, "b")
    MigrationRunner(database_url, b_dir, history_schema="app_b").migrate()
    MigrationRunner(database_url, a_dir, history_schema="app_a").migrate()
    run_by_hand(database_url, "CREATE TABLE app_b.notes (id int)")  # app_b is no longer only a history
    assert drift(database_url, a_dir, "app_a")[1:] == ["table app_b.notes: created outside poststack"]
