"""verify's cheap comparison: content digests decide where they can, full snapshots (and the shadow) where not."""

from __future__ import annotations

import psycopg
import pytest

from poststack.catalog.snapshot import snapshot
from poststack.engine.verify import verify_migration
from poststack.engine.verify_states import content_digest
from poststack.source.files import load_migrations
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

BASE = """
CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, note text);
CREATE VIEW v AS SELECT id, name FROM t;
CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';
CREATE TYPE mood AS ENUM ('sad', 'ok');
COMMENT ON TABLE t IS 'things';
"""

# (do, undo) pairs that put every catalog row back as it was: the digest must say "equal" without a snapshot.
# (A view replaced and replaced back is not among them: PostgreSQL 15 stores a rule that differs in its query
# tree, so the digest differs and verify compares in full, which is only slower.)
EXACT_UNDO = {
    "rename_column": ("ALTER TABLE t RENAME COLUMN name TO title", "ALTER TABLE t RENAME COLUMN title TO name"),
    "rename_table": ("ALTER TABLE t RENAME TO t2", "ALTER TABLE t2 RENAME TO t"),
    "add_drop_column": ("ALTER TABLE t ADD COLUMN n int NOT NULL DEFAULT 0 CHECK (n >= 0)",
                        "ALTER TABLE t DROP COLUMN n"),
    "index": ("CREATE INDEX t_name ON t (name)", "DROP INDEX t_name"),
    "replace_function": ("CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 2'",
                         "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'"),
    "comment": ("COMMENT ON TABLE t IS 'other'", "COMMENT ON TABLE t IS 'things'"),
    "table_with_identity": ("CREATE TABLE u (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t int "
                            "REFERENCES t)", "DROP TABLE u"),
    "data_only": ("INSERT INTO t VALUES (1, 'a'); ANALYZE t", "DELETE FROM t; VACUUM FULL t"),
}
# (do, undo) pairs whose undo leaves the schema different: the digest must differ.
WRONG_UNDO = {
    "index_left": ("CREATE INDEX t_name ON t (name)", ""),
    "column_type": ("ALTER TABLE t ALTER COLUMN note TYPE varchar(20)", ""),
    "default": ("ALTER TABLE t ALTER COLUMN name SET DEFAULT 'x'", ""),
    "function_body": ("CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 2'", ""),
    "view_definition": ("CREATE OR REPLACE VIEW v AS SELECT id, name, 1 AS one FROM t", ""),
    "comment": ("COMMENT ON TABLE t IS 'other'", ""),
    "enum_value": ("ALTER TYPE mood ADD VALUE 'happy'", ""),
    "not_null": ("ALTER TABLE t ALTER COLUMN name DROP NOT NULL", ""),
    "grant": ("GRANT SELECT ON t TO PUBLIC", ""),
    "column_renamed_elsewhere": ("ALTER TABLE t RENAME COLUMN name TO title",
                                 "ALTER TABLE t RENAME COLUMN title TO label"),
}


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BASE)
        yield conn


def _states(conn, do: str, undo: str):
    before = (content_digest(conn, ["poststack"]), snapshot(conn))
    for statement in [*do.split("; "), *undo.split("; ")]:
        if statement:
            conn.execute(statement)
    return before, (content_digest(conn, ["poststack"]), snapshot(conn))


@pytest.mark.parametrize("case", sorted(EXACT_UNDO))
def test_exact_undo_gives_the_same_digest(conn, case):
    (d1, s1), (d2, s2) = _states(conn, *EXACT_UNDO[case])
    assert s1 == s2  # the premise: the snapshot agrees the schema is back
    assert d1 == d2


@pytest.mark.parametrize("case", sorted(WRONG_UNDO))
def test_a_different_schema_gives_a_different_digest(conn, case):
    (d1, s1), (d2, s2) = _states(conn, *WRONG_UNDO[case])
    assert s1 != s2  # the premise: the snapshot sees a difference
    assert d1 != d2  # so must the digest, or verify would pass a rollback that leaves it


FILES = {
    "001_base.sql": BASE,
    "001_base.rollback.sql": "DROP FUNCTION f(int); DROP VIEW v; DROP TABLE t; DROP TYPE mood;",
    # The rollback re-creates the function it replaced: new OID, same definition. The digest differs, the full
    # comparison (against the shadow database) finds the schema equal: passed.
    "002_f2.sql": "DROP FUNCTION f(int);\nCREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 2';",
    "002_f2.rollback.sql": "DROP FUNCTION f(int);\n"
                           "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';",
    # This one re-creates it differently: failed, with the difference named.
    "003_f3.sql": "DROP FUNCTION f(int);\nCREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 3';",
    "003_f3.rollback.sql": "DROP FUNCTION f(int);\nCREATE FUNCTION f(x int) RETURNS bigint LANGUAGE sql "
                           "AS 'SELECT x + 2';",
    "004_rename.sql": "ALTER TABLE t RENAME COLUMN name TO title;",
    "004_rename.rollback.sql": "ALTER TABLE t RENAME COLUMN title TO name;",
}


def test_verify_compares_in_full_where_digests_differ(database_url, make_migrations):
    result = CLITestRunner(database_url, make_migrations(FILES)).run_command("verify", ["--format", "json"])
    assert result.exit_code == 1, result
    verdicts = {m["version"]: m for m in result.json["migrations"]}
    assert {v: m["status"] for v, m in verdicts.items()} == {1: "passed", 2: "passed", 3: "failed", 4: "passed"}
    assert verdicts[3]["differences"] and all("f(integer)" in d for d in verdicts[3]["differences"])
    assert any("bigint" in d for d in verdicts[3]["differences"])


def test_one_migration_alone_without_a_shadow_still_finds_the_difference(database_url, make_migrations):
    migrations = load_migrations(make_migrations(FILES))
    assert verify_migration(database_url, migrations, 2).status == "passed"
    failed = verify_migration(database_url, migrations, 3)
    assert failed.status == "failed" and any("bigint" in d for d in failed.differences)


def test_a_shadow_that_cannot_follow_falls_back_to_snapshots_taken_up_front(database_url, make_migrations):
    """002's rollback keeps its row, so the verified database ends up with two rows and the shadow with one;
    003 then applies on the first but not on the shadow, which gives up: 004's wrong rollback is still caught,
    against a snapshot of the verified database taken before 004 ran."""
    files = {
        "001_t.sql": "CREATE TABLE t (id int);", "001_t.rollback.sql": "DROP TABLE t;",
        "002_row.sql": "INSERT INTO t VALUES (1);", "002_row.rollback.sql": "-- the row stays",
        "003_u.sql": "DO $$ BEGIN IF (SELECT count(*) FROM t) < 2 THEN RAISE EXCEPTION 'needs two rows'; END IF; "
                     "END $$;\nCREATE TABLE u (id int);",
        "003_u.rollback.sql": "DROP TABLE u;",
        "004_w.sql": "CREATE TABLE w (id int);", "004_w.rollback.sql": "DROP TABLE w;\nCREATE TABLE w2 (id int);",
    }
    result = CLITestRunner(database_url, make_migrations(files)).run_command("verify", ["--format", "json"])
    verdicts = {m["version"]: m for m in result.json["migrations"]}
    assert {v: m["status"] for v, m in verdicts.items()} == {1: "passed", 2: "passed", 3: "passed", 4: "failed"}
    assert verdicts[4]["differences"] == ["table public.w2: left behind by rollback"]
