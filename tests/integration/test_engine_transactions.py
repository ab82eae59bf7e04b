"""Transactional migrations never do other than the history says: transaction control at any size, the
own-transaction check, session state between migrations, and errors that name their statement's line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from poststack.schema_migration import MigrationRunner
from poststack.testing.cli_runner import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

USERS = {"001_users.sql": "CREATE TABLE users (id int);"}


def recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is None:
            return []
        return conn.execute("SELECT version, status FROM poststack.migrations ORDER BY version").fetchall()


def exists(url: str, relation: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [relation]).fetchone()[0]


def big_load(control: str, tail: str = "", rows: int = 20_000) -> str:
    """A data load of well over 1 MiB ending in transaction control (the size once skipped the check)."""
    inserts = "".join(f"INSERT INTO big_load VALUES ({i}, 'row {i}: {'x' * 60}');\n" for i in range(rows))
    return f"CREATE TABLE big_load (id int, v text);\n{inserts}{control}\n{tail}"


@pytest.mark.parametrize(("control", "tail"), [("ROLLBACK;", ""), ("COMMIT;", "SELECT 1/0;")],
                         ids=["rollback", "commit_then_failure"])
def test_transaction_control_in_a_file_over_1_mib_is_refused_before_anything_runs(
        database_url, make_migrations, control, tail) -> None:
    directory = make_migrations(USERS)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    text = big_load(control, tail)
    assert len(text.encode()) > 1 << 20
    (directory / "002_big.sql").write_text(text)
    result = cli.run_command("migrate")
    assert result.exit_code == 2, result
    assert f"002_big.sql:20002: '{control.rstrip(';')}' would take transaction control" in result.stderr
    assert recorded(database_url) == [(1, "applied")]
    assert not exists(database_url, "big_load")


@contextmanager
def lexing_without_standard_strings(url: str) -> Iterator[None]:
    """New sessions on the database lex '\\'' as a quote: a COMMIT hidden from poststack's scan runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(
            sql.Identifier(dbname)))
        try:
            yield
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET standard_conforming_strings").format(
                sql.Identifier(dbname)))


@pytest.mark.parametrize(("control", "tail", "kept"), [
    ("COMMIT", "INSERT INTO esc VALUES ('after');", ["a'"]),
    ("COMMIT", "SELECT 1/0;", ["a'"]),
    ("ROLLBACK", "CREATE TABLE after_rollback (id int);", None),
], ids=["commit", "commit_then_failure", "rollback"])
def test_a_file_that_ends_poststacks_transaction_is_not_recorded_and_says_what_it_left(
        database_url, make_migrations, control, tail, kept) -> None:
    """The safety net behind the scan: the transaction id is checked before the history row is written."""
    directory = make_migrations({**USERS, "002_hidden.sql": (
        "CREATE TABLE esc (v text);\n"
        f"INSERT INTO esc VALUES ('a\\''); {control}; {tail} --');\n")})
    cli = CLITestRunner(database_url, directory)
    with lexing_without_standard_strings(database_url):
        result = cli.run_command("migrate")
    assert result.exit_code == 5, result
    verb = "committed" if control == "COMMIT" else "rolled back"
    assert f"{verb} poststack's transaction" in result.stderr and "nothing was recorded" in result.stderr
    assert "Traceback" not in result.stderr
    assert recorded(database_url) == [(1, "applied")]  # 001 ran before, in its own transaction
    if kept is None:
        assert not exists(database_url, "esc") and not exists(database_url, "after_rollback")
    else:  # exactly what the file committed itself; the statements after its COMMIT were rolled back
        with psycopg.connect(database_url) as conn:
            assert [r[0] for r in conn.execute("SELECT v FROM esc ORDER BY v")] == kept


def test_an_error_without_a_position_names_the_line_of_its_statement(database_url, make_migrations) -> None:
    directory = make_migrations({"001_x.sql": "CREATE TABLE x (id int);\n\nCREATE EXTENSION no_such_ext;\n"})
    result = CLITestRunner(database_url, directory).run_command("migrate")
    assert result.exit_code == 5
    assert "001_x.sql:3: migration 001 failed: extension \"no_such_ext\" is not available" in result.stderr
    assert recorded(database_url) == []
    assert not exists(database_url, "x")


# -- session state ----------------------------------------------------------------------------------------------

def catalog(url: str) -> list[tuple[str, ...]]:
    """Every relation and schema outside the system and poststack's, with its owner: what migrations made."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT n.nspname, coalesce(c.relname, ''), coalesce(c.relkind::text, ''), "
            "coalesce(pg_get_userbyid(c.relowner), pg_get_userbyid(n.nspowner)) "
            "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'v', 'S') "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'poststack') "
            "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' "
            "ORDER BY 1, 2").fetchall()


def one_run_and_many_runs(factory, files: dict[str, str], directory: Path) -> tuple[list, list]:
    """The catalogs after applying the files in one run, and one migrate per file."""
    with factory.scratch() as one, factory.scratch() as many:
        MigrationRunner(one, directory).migrate()
        versions = sorted(int(name.split("_")[0]) for name in files if not name.endswith(".rollback.sql"))
        for version in versions:
            MigrationRunner(many, directory).migrate(target=version)
        return catalog(one), catalog(many)


def test_a_search_path_set_by_one_migration_does_not_reach_the_next(database_url, make_migrations) -> None:
    """The issue's case: in one run 'audit' landed in 'reporting' (and 'rollback 1' then failed)."""
    files = {"001_reporting.sql": "CREATE SCHEMA reporting; SET search_path TO reporting, public;\n"
                                  "CREATE TABLE daily (d date);",
             "001_reporting.rollback.sql": "DROP SCHEMA reporting CASCADE;",
             "002_audit.sql": "CREATE TABLE audit (id int);",
             "002_audit.rollback.sql": "DROP TABLE audit;"}
    directory = make_migrations(files)
    MigrationRunner(database_url, directory).migrate()
    assert exists(database_url, "public.audit") and exists(database_url, "reporting.daily")
    result = CLITestRunner(database_url, directory).run_command("rollback", ["1", "--confirm"])
    assert result.exit_code == 0, result
    assert not exists(database_url, "public.audit")


def test_session_settings_of_one_migration_do_not_reach_the_next(database_url, make_migrations, make_role) -> None:
    role = make_role()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    files = {"001_timeout.sql": "SET statement_timeout = 20;",
             "002_slow.sql": "CREATE TABLE slow AS SELECT pg_sleep(0.3)::text AS s;",
             "003_read_only.sql": "SET default_transaction_read_only = on;",
             "004_writes.sql": "CREATE TABLE writes (id int);",
             "005_role.sql": f"SET ROLE {role};",
             "006_owned.sql": "CREATE TABLE owned (id int);",
             "007_config.sql": "CREATE SCHEMA elsewhere; SELECT set_config('search_path', 'elsewhere', false);",
             "008_where.sql": "CREATE TABLE where_am_i (id int);",
             "009_nontx.sql": "-- poststack:no-transaction\nSET search_path TO elsewhere;\n"
                              "CREATE TABLE nontx (id int);\nSET ROLE " + role + ";",
             "010_after.sql": "CREATE TABLE after_nontx (id int);"}
    directory = make_migrations(files)
    result = CLITestRunner(database_url, directory).run_command("migrate")
    assert result.exit_code == 0, result
    with psycopg.connect(database_url) as conn:
        owners = dict(conn.execute(
            "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relname IN ('slow', 'writes', 'owned', 'where_am_i', 'nontx', 'after_nontx')").fetchall())
    me = conninfo_user(database_url)
    assert owners == {"slow": me, "writes": me, "owned": me, "where_am_i": me, "elsewhere.nontx": me,
                      "after_nontx": me}
    assert all(status == "applied" for _, status in recorded(database_url))


def conninfo_user(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.info.user


SESSION_CHANGES = [
    "CREATE SCHEMA IF NOT EXISTS side; SET search_path TO side, public;",
    "SELECT set_config('search_path', 'side2, public', false); CREATE SCHEMA IF NOT EXISTS side2;",
    "SET statement_timeout = 20;",
    "SET default_transaction_read_only = on;",
    "-- poststack:no-transaction\nCREATE SCHEMA IF NOT EXISTS side3;\nSET search_path TO side3, public;",
    "SET lock_timeout = 1; SET work_mem = '64kB';",
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(SESSION_CHANGES), st.booleans()), min_size=2, max_size=6))
def test_one_run_and_many_runs_give_identical_catalogs(poststack_databases, tmp_path_factory, steps) -> None:
    """Whatever session state the earlier migrations of a run leave, the later ones behave as if run alone."""
    from poststack.testing import scenario_data

    files: dict[str, str] = {}
    for i, (change, then_create) in enumerate(steps, start=1):
        files[f"{2 * i - 1:03}_state.sql"] = change
        files[f"{2 * i:03}_object.sql"] = (f"CREATE TABLE obj_{i} (id int); CREATE SEQUENCE seq_{i};"
                                           if then_create else f"CREATE VIEW view_{i} AS SELECT {i} AS n;")
    directory = scenario_data.write_migrations(tmp_path_factory.mktemp("session"), files)
    one, many = one_run_and_many_runs(poststack_databases, files, directory)
    assert one == many
    first = "obj_1" if steps[0][1] else "view_1"
    assert any(row[:2] == ("public", first) for row in one)
