"""Comparing schemas in tests: assert_same_schema, golden schemas that hold on PostgreSQL 15 and 18, and
differences worded so that they help (whitespace, renamed NOT NULL constraints, column order)."""

from pathlib import Path

import psycopg
import pytest

from poststack.schema_migration import MigrationRunner
from poststack.testing import CLITestRunner, DbHelper, assert_rollbacks_restore_schema, assert_same_schema, save_schema

GOLDEN = Path(__file__).parent / "data" / "golden_schema.json"
GOLDEN_MIGRATIONS = {
    "001_extension.sql": "CREATE EXTENSION citext;",
    "002_accounts.sql": "CREATE SCHEMA app;\n"
                        "CREATE TABLE app.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                        "  email citext NOT NULL UNIQUE, name text CONSTRAINT name_required NOT NULL,\n"
                        "  created_at timestamptz NOT NULL DEFAULT now());\n"
                        "CREATE INDEX accounts_created_idx ON app.accounts (created_at);",
    "003_touch.sql": "CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                     "BEGIN\n  NEW.created_at := now();\n  RETURN NEW;\nEND $$;\n"
                     "CREATE TRIGGER accounts_touch BEFORE UPDATE ON app.accounts\n"
                     "  FOR EACH ROW EXECUTE FUNCTION app.touch();\n"
                     "CREATE VIEW app.account_emails AS SELECT id, email FROM app.accounts;",
}


def test_a_golden_schema_written_on_one_major_version_holds_on_the_other(make_migrations, database_url):
    """The golden file was written on PostgreSQL 18 (``save_schema``); CI runs this on 15 and on 18."""
    MigrationRunner(database_url, make_migrations(GOLDEN_MIGRATIONS)).migrate()
    assert_same_schema(database_url, GOLDEN, portable=True)
    with pytest.raises(AssertionError, match=r"extension citext: version changed from NULL to 1\.\d"):
        assert_same_schema(GOLDEN, database_url)  # without the normalisation, versions differ by release


def test_save_schema_writes_what_assert_same_schema_reads(make_migrations, database_url, tmp_path):
    MigrationRunner(database_url, make_migrations(GOLDEN_MIGRATIONS)).migrate()
    written = save_schema(database_url, tmp_path / "schema.json")
    assert_same_schema(written, GOLDEN)
    assert '"version"' not in written.read_text()


def test_assert_same_schema_ignores_what_it_is_told_and_column_order_on_request(poststack_databases):
    with poststack_databases.scratch() as a, poststack_databases.scratch() as b:
        with psycopg.connect(a, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int, y text)")
        with psycopg.connect(b, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (y text, x int); CREATE TABLE tmp_load (id int);"
                         "COMMENT ON TABLE t IS 'moved'")
        with pytest.raises(AssertionError) as failure:
            assert_same_schema(a, b)
        message = str(failure.value)
        assert "schemas differ (3 difference(s))" in message
        assert "table public.tmp_load: only in" in message and "column order changed from [x, y] to [y, x]" in message
        assert_same_schema(a, b, ignore=["table public.tmp_*", "comment"], column_order=False)
        with pytest.raises(AssertionError, match="column order"):
            assert_same_schema(a, b, ignore=["table public.tmp_*", "comment"])
        with pytest.raises(ValueError, match="ignore='tabel'"):
            assert_same_schema(a, b, ignore=["tabel"])


# -- differences in words ------------------------------------------------------------------------------------
def test_a_whitespace_only_change_of_a_function_body_says_so(database_url, db_helper):
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $${}$$"
    db_helper.execute(body.format("\nbegin\n  return 1;\nend\n"))
    before = db_helper.snapshot()
    db_helper.execute("DROP FUNCTION f();" + body.format("\nbegin\n    return 1;\nend\n"))
    assert before.diff(db_helper.snapshot()) == [
        "function public.f(): body changed in whitespace only (from line 3)"]
    db_helper.execute("DROP FUNCTION f();" + body.format("\nbegin\n    return 2;\nend\n"))
    assert before.diff(db_helper.snapshot()) == [
        "function public.f(): body changed at line 3: 'return 1;' became 'return 2;'"]


def test_a_not_null_constraint_is_told_once(database_url, db_helper, postgres_server):
    db_helper.execute("CREATE TABLE t (id int, x int CONSTRAINT x_required NOT NULL)")
    before = db_helper.snapshot()
    db_helper.execute("ALTER TABLE t ALTER x DROP NOT NULL; ALTER TABLE t ALTER x SET NOT NULL")
    renamed = before.diff(db_helper.snapshot())
    # PostgreSQL 18 names the re-added constraint itself; before 18 a NOT NULL has no name to change.
    assert renamed == (["constraint public.t.x_required: renamed to t_x_not_null"]
                       if postgres_server.version >= 180000 else [])
    db_helper.execute("ALTER TABLE t ALTER x DROP NOT NULL")
    assert before.diff(db_helper.snapshot()) == ["column public.t.x: not null changed from true to false"]


COLUMN_ORDER = {
    "001_t.sql": "CREATE TABLE t (id int, note text, amount int);",
    "001_t.rollback.sql": "DROP TABLE t;",
    "002_drop_note.sql": "ALTER TABLE t DROP COLUMN note;",
    "002_drop_note.rollback.sql": "ALTER TABLE t ADD COLUMN note text;",  # back, but last
}


def test_column_order_counts_by_default_and_can_be_ignored(make_migrations, database_url, db_helper,
                                                           poststack_databases):
    directory = make_migrations(COLUMN_ORDER)
    with pytest.raises(AssertionError, match=r"column order changed from \[id, note, amount\] to "
                                             r"\[id, amount, note\]"):
        assert_rollbacks_restore_schema(MigrationRunner(database_url, directory), db_helper)
    with poststack_databases.scratch() as fresh, DbHelper(fresh, directory) as helper:
        assert_rollbacks_restore_schema(MigrationRunner(fresh, directory), helper, column_order=False)
    cli = CLITestRunner(database_url, directory)
    strict = cli.run_command("verify", ["--format", "json"])
    assert strict.exit_code == 1 and strict.json["migrations"][1]["differences"] == [
        "table public.t: column order changed from [id, note, amount] to [id, amount, note]"]
    assert cli.run_command("verify", ["--ignore-column-order"]).exit_code == 0
