"""Object extraction from SQL (poststack.source.objects): what a migration leaves behind, by statement kind.

Pure: no database. Each test states the catalog effect a user would expect of a statement.
"""

from __future__ import annotations

import pytest

from poststack.source.objects import DbObject, SqlSyntaxError, covers, extract


def created(sql: str, schema: str = "public") -> list[str]:
    return [str(o) for o in extract(sql, schema).created]


def dropped(sql: str) -> list[str]:
    return [str(o) for o in extract(sql).dropped]


def test_create_table_lists_table_columns_and_named_constraints_only():
    sql = """CREATE TABLE users (
        id int CONSTRAINT users_pk PRIMARY KEY,
        email text NOT NULL UNIQUE,
        org int CONSTRAINT users_org_fk REFERENCES orgs (id),
        CONSTRAINT users_email_chk CHECK (email <> ''),
        CHECK (id > 0)
    );"""
    assert created(sql) == [
        "table public.users", "column public.users.id", "constraint users_pk on public.users",
        "column public.users.email", "column public.users.org", "constraint users_org_fk on public.users",
        "constraint users_email_chk on public.users"]


def test_named_not_null_is_not_a_constraint_object():
    # pg_constraint holds NOT NULL only from PostgreSQL 18: it cannot be evidence on older servers.
    assert created("CREATE TABLE t (a int CONSTRAINT a_nn NOT NULL);") == ["table public.t", "column public.t.a"]


@pytest.mark.parametrize(("sql", "expected"), [
    ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);", ["table public.p1"]),
    ("CREATE FOREIGN TABLE ft (a int) SERVER s;", ["table public.ft", "column public.ft.a"]),
    ("CREATE UNLOGGED TABLE IF NOT EXISTS app.t (a int);", ["table app.t", "column app.t.a"]),
    ("CREATE TABLE c (x, y) AS SELECT 1, 2;", ["table public.c", "column public.c.x", "column public.c.y"]),
    ("CREATE VIEW v AS SELECT 1;", ["view public.v"]),
    ("CREATE OR REPLACE VIEW s.v AS SELECT 1;", ["view s.v"]),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1 WITH NO DATA;", ["materialized view public.mv"]),
    ("CREATE SEQUENCE s.seq START 10;", ["sequence s.seq"]),
    ("CREATE UNIQUE INDEX CONCURRENTLY ux ON app.t (lower(a));", ["index app.ux"]),
    ("CREATE SCHEMA IF NOT EXISTS audit;", ["schema audit"]),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto;", ["extension pgcrypto"]),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok');",
     ["type public.mood", "enum label 'sad' of public.mood", "enum label 'ok' of public.mood"]),
    ("ALTER TYPE s.mood ADD VALUE IF NOT EXISTS 'happy' AFTER 'ok';", ["enum label 'happy' of s.mood"]),
    ("CREATE TYPE pair AS (a int, b text);", ["type public.pair", "column public.pair.a", "column public.pair.b"]),
    ("CREATE TYPE span AS RANGE (subtype = int4);", ["type public.span"]),
    ("CREATE DOMAIN pos AS int CONSTRAINT pos_chk CHECK (VALUE > 0);",
     ["domain public.pos", "constraint pos_chk on public.pos"]),
    ("ALTER DOMAIN pos ADD CONSTRAINT pos_max CHECK (VALUE < 10);", ["constraint pos_max on public.pos"]),
    ("CREATE TRIGGER trg BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION f();", ["trigger trg on app.t"]),
    ("CREATE POLICY own ON t USING (true);", ["policy own on public.t"]),
    ("COMMENT ON TABLE t IS 'people';", ["comment on public.t = 'people'"]),
    ("COMMENT ON COLUMN s.t.c IS 'x';", ["comment on column s.t.c = 'x'"]),
    ("COMMENT ON SCHEMA audit IS 'logs';", ["comment on schema audit = 'logs'"]),
])
def test_created_objects_by_statement_kind(sql, expected):
    assert created(sql) == expected


def test_routines_carry_input_argument_types_without_modifiers():
    sql = """
    CREATE FUNCTION app.f(a int, b varchar(20), OUT c text, VARIADIC d text[]) RETURNS record
        LANGUAGE sql AS 'select 1';
    CREATE OR REPLACE PROCEDURE p(x double precision) LANGUAGE sql AS 'select 1';
    CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'select 1';
    """
    objects = extract(sql).created
    assert [(o.kind, o.schema, o.name, o.detail) for o in objects] == [
        ("function", "app", "f", "integer, varchar, text[]"),
        ("procedure", "public", "p", "double precision"),
        ("function", "public", "g", "")]


def test_percent_type_argument_matches_any_overload():
    (obj,) = extract("CREATE FUNCTION f(a t.c%TYPE) RETURNS int LANGUAGE sql AS 'select 1';").created
    assert obj.detail is None and str(obj) == "function public.f(...)"


def test_alter_table_add_and_drop():
    sql = """ALTER TABLE app.t ADD COLUMN email text, ADD CONSTRAINT t_email_uq UNIQUE (email),
             DROP COLUMN legacy, DROP CONSTRAINT t_old_chk;"""
    result = extract(sql)
    assert [str(o) for o in result.created] == ["column app.t.email", "constraint t_email_uq on app.t"]
    assert [str(o) for o in result.dropped] == ["column app.t.legacy", "constraint t_old_chk on app.t"]
    assert result.uncheckable == ()


def test_uncheckable_alter_subcommands_are_reported_not_ignored():
    result = extract("ALTER TABLE t ALTER COLUMN a SET NOT NULL, ADD COLUMN b int;")
    assert [str(o) for o in result.created] == ["column public.t.b"]
    assert len(result.uncheckable) == 1 and "SET NOT NULL" in result.uncheckable[0]


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1);", "UPDATE t SET a = 1;", "DELETE FROM t;",
    "DO $$ BEGIN PERFORM 1; END $$;", "GRANT SELECT ON t TO public;", "SELECT set_config('x.y', '1', false);",
    "CREATE INDEX ON t (a);", "CREATE AGGREGATE agg (int) (sfunc = int4pl, stype = int);",
    "COMMENT ON FUNCTION f() IS 'x';", "DROP CAST (text AS int);",
])
def test_statements_without_catalog_evidence_are_uncheckable(sql):
    result = extract(sql)
    assert result.expectations == ()
    assert len(result.uncheckable) == 1 and result.uncheckable[0].startswith("line 1: ")


def test_neutral_statements_are_neither_objects_nor_uncheckable():
    result = extract("SET lock_timeout = '1s'; BEGIN; ANALYZE; COMMIT;")
    assert result.expectations == () and result.uncheckable == ()


def test_uncheckable_reports_the_line_of_the_statement():
    result = extract("-- header\nCREATE TABLE a (x int);\n\nINSERT INTO a VALUES (1);\n")
    assert result.uncheckable[0].startswith("line 4: INSERT INTO a VALUES (1)")


@pytest.mark.parametrize(("sql", "expected"), [
    ("DROP TABLE IF EXISTS a, s.b CASCADE;", ["table public.a", "table s.b"]),
    ("DROP INDEX CONCURRENTLY s.i;", ["index s.i"]),
    ("DROP VIEW v; DROP MATERIALIZED VIEW mv; DROP SEQUENCE q;",
     ["view public.v", "materialized view public.mv", "sequence public.q"]),
    ("DROP TYPE s.mood; DROP DOMAIN pos;", ["type s.mood", "domain public.pos"]),
    ("DROP FUNCTION f(int, text); DROP PROCEDURE p;", ["function public.f(integer, text)", "procedure public.p(...)"]),
    ("DROP TRIGGER trg ON s.t; DROP POLICY own ON t;", ["trigger trg on s.t", "policy own on public.t"]),
    ("DROP SCHEMA audit CASCADE; DROP EXTENSION pgcrypto;", ["schema audit", "extension pgcrypto"]),
    ("COMMENT ON TABLE t IS NULL;", ["comment on public.t"]),
])
def test_drops_are_expected_absent(sql, expected):
    assert dropped(sql) == expected


def test_created_then_dropped_in_one_migration_is_expected_absent():
    result = extract("CREATE TABLE tmp (a int); CREATE INDEX tmp_a ON tmp (a); DROP TABLE tmp;")
    assert result.created == [] and [str(o) for o in result.dropped] == ["table public.tmp"]


def test_drop_then_create_is_expected_present():
    result = extract("DROP VIEW IF EXISTS v; CREATE VIEW v AS SELECT 1;")
    assert [str(o) for o in result.created] == ["view public.v"] and result.dropped == []


def test_rename_moves_what_the_migration_attached_to_the_old_name():
    sql = "CREATE TABLE tmp (a int); CREATE INDEX tmp_a ON tmp (a); ALTER TABLE tmp RENAME TO real;"
    result = extract(sql)
    assert sorted(str(o) for o in result.created) == ["column public.real.a", "index public.tmp_a",
                                                      "table public.real"]
    assert [str(o) for o in result.dropped] == ["table public.tmp"]


@pytest.mark.parametrize(("sql", "gone", "new"), [
    ("ALTER TABLE t RENAME COLUMN a TO b;", "column public.t.a", "column public.t.b"),
    ("ALTER TABLE t RENAME CONSTRAINT c1 TO c2;", "constraint c1 on public.t", "constraint c2 on public.t"),
    ("ALTER INDEX s.i RENAME TO j;", "index s.i", "index s.j"),
    ("ALTER TYPE mood RENAME VALUE 'a' TO 'b';", "enum label 'a' of public.mood", "enum label 'b' of public.mood"),
    ("ALTER SCHEMA old RENAME TO new;", "schema old", "schema new"),
    ("ALTER TABLE t SET SCHEMA archive;", "table public.t", "table archive.t"),
])
def test_renames(sql, gone, new):
    result = extract(sql)
    assert [str(o) for o in result.dropped] == [gone] and [str(o) for o in result.created] == [new]


def test_search_path_decides_unqualified_names():
    sql = """CREATE TABLE a (x int);
             SET search_path TO "$user", app, public;
             CREATE TABLE b (x int);
             CREATE TABLE other.c (x int);
             RESET search_path;
             CREATE TABLE d (x int);"""
    tables = [o for o in extract(sql).created if o.kind == "table"]
    assert [o.qualified for o in tables] == ["public.a", "app.b", "other.c", "public.d"]


def test_default_schema_is_configurable():
    assert created("CREATE TABLE a (x int);", schema="app") == ["table app.a", "column app.a.x"]


def test_create_schema_elements_belong_to_that_schema():
    sql = "CREATE SCHEMA shop CREATE TABLE items (id int) CREATE VIEW v AS SELECT 1;"
    assert created(sql) == ["schema shop", "table shop.items", "column shop.items.id", "view shop.v"]


def test_if_not_exists_marks_weak_expectations():
    result = extract("CREATE TABLE IF NOT EXISTS t (a int); CREATE INDEX i ON t (a);")
    assert {str(e.obj): e.weak for e in result.expectations} == {
        "table public.t": True, "column public.t.a": True, "index public.i": False}


def test_dollar_quoted_bodies_do_not_confuse_extraction():
    sql = """CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN CREATE TABLE not_me (a int); DROP TABLE t; RETURN NEW; END; $$;"""
    assert created(sql) == ["function public.f()"]


def test_syntax_error_raises_with_line():
    with pytest.raises(SqlSyntaxError) as info:
        extract("CREATE TABLE a (x int);\nCREATE TABLE (;\n")
    assert info.value.line == 2


def test_relation_kinds_share_one_identity_and_cover_their_children():
    table = DbObject("table", "public", "t")
    assert table.key == DbObject("view", "public", "t").key
    assert DbObject("index", "public", "i", "t").key == DbObject("index", "public", "i").key
    assert covers(table, DbObject("column", "public", "a", "t"))
    assert covers(table, DbObject("index", "public", "i", "t"))
    assert not covers(table, DbObject("column", "other", "a", "t"))
    assert covers(DbObject("schema", None, "app"), DbObject("function", "app", "f", None, ""))
    assert covers(DbObject("function", "public", "f"), DbObject("function", "public", "f", None, "integer"))
    assert not covers(DbObject("function", "public", "f", None, "text"),
                      DbObject("function", "public", "f", None, "integer"))


def test_lines_and_snippets_are_right_after_multibyte_text():
    sql = "-- héllo wörld, ünïcode\nCREATE TABLE a (x text DEFAULT 'é');\nINSERT INTO a VALUES ('ü');"
    assert extract(sql).uncheckable == ("line 3: INSERT INTO a VALUES ('ü') (its effect is not visible in the "
                                        "catalog)",)


@pytest.mark.parametrize(("sql", "cascade"), [
    ("DROP TABLE t;", False), ("DROP TABLE t CASCADE;", True), ("ALTER TABLE t DROP COLUMN a CASCADE;", True),
    ("DROP SCHEMA s RESTRICT;", False),
])
def test_cascade_is_flagged_because_its_victims_cannot_be_listed(sql, cascade):
    assert extract(sql).cascade is cascade
