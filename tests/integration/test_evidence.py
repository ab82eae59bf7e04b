"""Catalog evidence against a real PostgreSQL: objects_exist, invalid indexes, and per-migration verdicts.

Since recover and diagnose judge unrecorded migrations by replayed states (``poststack.engine.judgement``), the
per-object verdicts of ``poststack.catalog.object_evidence`` serve one purpose: deciding what an unfinished (crashed or
failed) non-transactional migration did, from the SQL its history row stores. So ``assess`` is asked as
diagnose asks it: about the unfinished version only (``only``), with the versions the history records
as applied (``applied``), against every migration file.
"""

from __future__ import annotations

import psycopg
import pytest

from poststack.catalog.object_evidence import assess
from poststack.catalog.presence import count_queries, invalid_indexes, objects_exist
from poststack.source.files import load_migrations
from poststack.source.objects import DbObject, extract

EVERY_KIND = """
CREATE SCHEMA app;
CREATE TABLE app.users (id int CONSTRAINT users_pk PRIMARY KEY, email text);
CREATE INDEX users_email_idx ON app.users (email);
CREATE SEQUENCE app.seq;
CREATE VIEW app.v AS SELECT 1 AS one;
CREATE MATERIALIZED VIEW app.mv AS SELECT 1 AS one;
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE TYPE app.pair AS (a int, b text);
CREATE DOMAIN app.pos AS int CONSTRAINT pos_chk CHECK (VALUE > 0);
CREATE FUNCTION app.f(a int, b varchar(10)) RETURNS int LANGUAGE sql AS 'select 1';
CREATE PROCEDURE app.p() LANGUAGE sql AS 'select 1';
CREATE FUNCTION app.tf() RETURNS trigger LANGUAGE plpgsql AS 'begin return new; end';
CREATE TRIGGER users_tf BEFORE INSERT ON app.users FOR EACH ROW EXECUTE FUNCTION app.tf();
CREATE POLICY own ON app.users USING (true);
CREATE EXTENSION IF NOT EXISTS plpgsql;
COMMENT ON TABLE app.users IS 'people';
COMMENT ON COLUMN app.users.email IS 'mail';
COMMENT ON SCHEMA app IS 'the app';
"""


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_every_kind_is_found_after_its_sql_ran_and_not_before(conn):
    objects = list(extract(EVERY_KIND).created)
    assert {o.kind for o in objects} >= {
        "schema", "table", "column", "constraint", "index", "sequence", "view", "materialized_view", "type",
        "enum_label", "domain", "function", "procedure", "trigger", "policy", "extension", "comment"}
    before = objects_exist(conn, objects)
    assert [str(o) for o, found in before.items() if found] == ["extension plpgsql"]  # in every database
    conn.execute(EVERY_KIND)
    after = objects_exist(conn, objects)
    assert [str(o) for o, found in after.items() if not found] == []


@pytest.mark.parametrize("obj", [
    DbObject("table", "app", "v"),  # a view is not a table
    DbObject("column", "app", "users", "nosuch"),
    DbObject("constraint", "app", "pos_chk", "users"),  # a domain's constraint, asked on a table
    DbObject("function", "app", "f", None, "integer, text"),  # another signature
    DbObject("function", "app", "p", None, ""),  # a procedure is not a function
    DbObject("enum_label", "app", "happy", "mood"),
    DbObject("comment", "app", "users", None, "other text"),
    DbObject("trigger", "app", "users_tf", "v"),
    DbObject("index", "public", "users_email_idx", "users"),  # another schema
])
def test_near_misses_are_not_found(conn, obj):
    conn.execute(EVERY_KIND)
    assert objects_exist(conn, [obj]) == {obj: False}


def test_function_argument_types_match_exactly_and_any_overload_without_them(conn):
    conn.execute(EVERY_KIND)
    exact = DbObject("function", "app", "f", None, "integer, varchar")
    anyone = DbObject("function", "app", "f", None, None)
    assert objects_exist(conn, [exact, anyone]) == {exact: True, anyone: True}


def test_one_query_per_kind_whatever_the_number_of_objects(conn):
    conn.execute("CREATE TABLE t (a int)")
    tables = [DbObject("table", "public", f"t{i}") for i in range(2000)] + [DbObject("table", "public", "t")]
    columns = [DbObject("column", "public", f"c{i}", "t") for i in range(2000)]
    with count_queries() as counter:
        found = objects_exist(conn, tables + columns)
    assert counter.count == 2
    assert [o for o, ok in found.items() if ok] == [DbObject("table", "public", "t")]


def test_invalid_index_is_reported_and_not_counted_as_existing(conn):
    conn.execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1);"
                 "CREATE INDEX good ON t (a)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY bad ON t (a)")
    assert invalid_indexes(conn) == [("public", "bad", "t")]
    bad, good = DbObject("index", "public", "bad"), DbObject("index", "public", "good")
    assert objects_exist(conn, [bad, good]) == {bad: False, good: True}


def write(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return list(load_migrations(tmp_path))


def statuses(conn, migrations, **kwargs):
    return {v: e.status for v, e in assess(conn, migrations, **kwargs).items()}


LIFECYCLE = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY, email text, legacy int);",
    "002_drop_legacy.sql": "ALTER TABLE users DROP COLUMN legacy;",
    "003_orders.sql": "CREATE TABLE orders (id int, user_id int);\nCREATE INDEX orders_user ON orders (user_id);",
}


def apply(conn, migrations, *versions):
    for m in migrations:
        if m.version in versions:
            conn.execute(m.sql)


def test_half_applied_migration_is_partial_and_names_what_is_missing(conn, tmp_path):
    migrations = write(tmp_path, LIFECYCLE)
    apply(conn, migrations, 1, 2)
    conn.execute("CREATE TABLE orders (id int, user_id int)")  # 003 stopped after its first statement
    evidence = assess(conn, migrations, only=[3], applied=[1, 2])
    assert list(evidence) == [3]
    ev = evidence[3]
    assert ev.status == "partial"
    assert [str(o) for o in ev.missing] == ["index public.orders_user"]
    assert [str(o) for o in ev.present] == ["table public.orders", "column public.orders.id",
                                            "column public.orders.user_id"]
    assert "missing: index public.orders_user" in ev.lines and "index public.orders_user" in ev.summary()


def test_a_drop_is_evidence_when_the_creator_is_known_applied(conn, tmp_path):
    migrations = write(tmp_path, LIFECYCLE)
    apply(conn, migrations, 1, 2)
    assert statuses(conn, migrations, only=[2]) == {2: "uncheckable"}
    assert statuses(conn, migrations, only=[2], applied=[1]) == {2: "present"}


def test_if_not_exists_objects_found_are_not_evidence(conn, tmp_path):
    migrations = write(tmp_path, {"001_ext.sql": "CREATE EXTENSION IF NOT EXISTS plpgsql;\nINSERT INTO x VALUES (1);",
                                  "002_t.sql": "CREATE TABLE IF NOT EXISTS t (a int);"})
    assert statuses(conn, migrations, only=[1]) == {1: "uncheckable"}
    assert statuses(conn, migrations, only=[2], applied=[1]) == {2: "absent"}
    conn.execute("CREATE TABLE t (a int)")
    assert statuses(conn, migrations, only=[2], applied=[1]) == {2: "uncheckable"}


def test_recreated_function_is_not_evidence_for_either_migration(conn, tmp_path):
    body = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'select {}';"
    migrations = write(tmp_path, {"001_f.sql": body.format(1), "002_f.sql": body.format(2)})
    conn.execute(body.format(2))
    unfinished_1 = assess(conn, migrations, only=[1])[1]
    unfinished_2 = assess(conn, migrations, only=[2], applied=[1])[2]
    assert (unfinished_1.status, unfinished_2.status) == ("uncheckable", "uncheckable")
    assert "migration 2 has the same effect" in unfinished_1.lines[0]
    assert "already created by migration 1" in unfinished_2.lines[0]


def test_comment_text_tells_migrations_apart(conn, tmp_path):
    migrations = write(tmp_path, {"001_t.sql": "CREATE TABLE t (a int); COMMENT ON TABLE t IS 'one';",
                                  "002_c.sql": "COMMENT ON TABLE t IS 'two';"})
    apply(conn, migrations, 1)
    assert statuses(conn, migrations, only=[2], applied=[1]) == {2: "absent"}
    apply(conn, migrations, 2)
    assert statuses(conn, migrations, only=[2], applied=[1]) == {2: "present"}


def test_unparsable_file_is_uncheckable_with_its_error(conn, tmp_path):
    migrations = write(tmp_path, {"001_bad.sql": "CREATE TABLE (;"})
    ev = assess(conn, migrations)[1]
    assert ev.status == "uncheckable" and ev.error.startswith("001_bad.sql:1: ")
    assert ev.lines[0].startswith("does not parse: ")


def test_one_unfinished_migration_among_a_thousand_costs_a_bounded_number_of_queries(conn, tmp_path):
    files = {}
    for i in range(1, 1001):
        files[f"{i:04d}_m.sql"] = (
            f"CREATE TABLE t{i} (id int CONSTRAINT t{i}_pk PRIMARY KEY, v text);\n"
            f"CREATE INDEX t{i}_v ON t{i} (v);\n"
            f"CREATE FUNCTION f{i}(a int) RETURNS int LANGUAGE sql AS 'select 1';\n"
            f"COMMENT ON TABLE t{i} IS 'table {i}';\n")
    migrations = write(tmp_path, files)
    conn.execute("".join(m.sql for m in migrations[:600]))
    with count_queries() as counter:
        done = assess(conn, migrations, only=[600], applied=range(1, 600))
        not_done = assess(conn, migrations, only=[601], applied=range(1, 601))
    # relation, column, constraint, routine, comment: one query each, whatever the number of files
    assert counter.count == 10
    assert (done[600].status, not_done[601].status) == ("present", "absent")


CASCADE = {
    "001_t.sql": "CREATE TABLE t (a int);\nCREATE VIEW t_view AS SELECT a FROM t;",
    "002_u.sql": "CREATE TABLE u (b int);",
    "003_drop.sql": "ALTER TABLE t DROP COLUMN a CASCADE;\nCREATE TABLE w (c int);",
}


def test_a_cascade_that_did_not_run_excuses_nothing(conn, tmp_path):
    migrations = write(tmp_path, CASCADE)
    conn.execute("CREATE TABLE t (a int)")  # unfinished 001 half-applied: no view; 003's cascade never ran
    assert statuses(conn, migrations, only=[1]) == {1: "partial"}
