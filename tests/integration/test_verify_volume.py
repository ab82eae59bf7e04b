"""What verify observes beyond locks: rewrites (relfilenode changes), per-statement durations and lock hold
times on tables filled with synthetic rows (``--rows``), and the CI reports (JUnit, Markdown)."""

import xml.etree.ElementTree as ET

import pytest

from poststack.engine.verify import verify_migrations
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration]

ACCOUNTS = {
    "001_accounts.sql": "CREATE TABLE accounts (id int PRIMARY KEY, code varchar(10), note text);",
    "001_accounts.rollback.sql": "DROP TABLE accounts;",
}
LOCK = "SET lock_timeout = '5s';\n"


def test_a_rewriting_type_change_is_reported_and_a_catalog_only_one_is_not(make_migrations, database_url):
    directory = make_migrations({
        **ACCOUNTS,
        "002_widen.sql": LOCK + "ALTER TABLE accounts ALTER COLUMN code TYPE varchar(20);",
        "002_widen.rollback.sql": "ALTER TABLE accounts ALTER COLUMN code TYPE varchar(10);",
        "003_bigint.sql": LOCK + "\nALTER TABLE accounts ALTER COLUMN id TYPE bigint;",
        "003_bigint.rollback.sql": "ALTER TABLE accounts ALTER COLUMN id TYPE int;",
    })
    report = verify_migrations(database_url, directory)
    widen, bigint = report.migrations[1], report.migrations[2]
    assert widen.status == bigint.status == "passed"
    assert widen.rewrites == []  # varchar(10) -> varchar(20) only changes the catalog
    tables = [r for r in bigint.rewrites if r.kind == "table"]
    assert [(r.relation, r.line, r.lock) for r in tables] == [("public.accounts", 3, "AccessExclusiveLock")]
    assert tables[0].describe() == "line 3: rewrote public.accounts (AccessExclusiveLock)"
    assert "public.accounts_pkey" in {r.relation for r in bigint.rewrites if r.kind.startswith("index")}

    cli = CLITestRunner(database_url, directory)
    text = cli.run_command("verify")
    assert text.exit_code == 0, text.stderr
    assert "line 3: rewrote public.accounts (AccessExclusiveLock)" in text.stdout
    as_json = cli.run_command("verify", ["--format", "json"]).json
    assert as_json["migrations"][1]["rewrites"] == []
    assert {"relation": "public.accounts", "kind": "table", "line": 3, "lock": "AccessExclusiveLock"} in (
        as_json["migrations"][2]["rewrites"])


def test_rows_fill_existing_tables_and_durations_and_lock_holds_grow_with_n(make_migrations, database_url):
    directory = make_migrations({
        **ACCOUNTS,
        "002_rewrite.sql": LOCK + "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;\nSELECT 1;",
        "002_rewrite.rollback.sql": "ALTER TABLE accounts ALTER COLUMN id TYPE int;",
    })

    def observed(rows: int) -> tuple[float, float]:
        result = verify_migrations(database_url, directory, from_version=2, rows=rows).migrations[0]
        assert result.status == "passed" and result.rows == rows, result.describe()
        alter = next(st for st in result.statements if st.line == 2)
        (held,) = [h for h in alter.locks if h.relation == "public.accounts"]
        assert held.mode == "AccessExclusiveLock" and held.held_ms >= alter.duration_ms
        return alter.duration_ms, held.held_ms

    small, large = observed(1_000), observed(60_000)
    assert large[0] > small[0], (small, large)  # 60x the rows: the rewrite takes longer
    assert large[1] > small[1], (small, large)  # and the ACCESS EXCLUSIVE lock is held longer


def test_rows_on_the_command_line_reports_statements_and_hold_times(make_migrations, database_url):
    directory = make_migrations({
        **ACCOUNTS,
        "002_index.sql": LOCK + "CREATE INDEX accounts_code_idx ON accounts (code);",
        "002_index.rollback.sql": "DROP INDEX accounts_code_idx;",
    })
    cli = CLITestRunner(database_url, directory)
    result = cli.run_command("verify", ["--rows", "500", "--from", "2", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    (migration,) = result.json["migrations"]
    assert migration["rows"] == 500
    (index,) = [st for st in migration["statements"] if st["line"] == 2]
    assert {"relation": "public.accounts", "mode": "ShareLock"}.items() <= index["locks"][0].items()
    table = cli.run_command("verify", ["--rows", "500", "--from", "2"])
    assert "tables filled to 500 rows" in table.stdout and "ShareLock on public.accounts held" in table.stdout
    assert cli.run_command("verify", ["--rows", "0"]).exit_code == 2


def test_junit_has_one_testcase_per_migration_with_failures_and_messages(make_migrations, database_url):
    directory = make_migrations({
        **ACCOUNTS,
        "002_comment.sql": "ALTER TABLE accounts ADD COLUMN nick text;\nCOMMENT ON TABLE accounts IS 'x';",
        "002_comment.rollback.sql": "ALTER TABLE accounts DROP COLUMN nick;",
        "003_forever.sql": "ALTER TABLE accounts ADD COLUMN z int;",
    })
    result = CLITestRunner(database_url, directory).run_command("verify", ["--format", "junit"])
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout)
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["001_accounts", "002_comment", "003_forever"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure.get("message") == "comment on table public.accounts: left behind by rollback"
    assert "no rollback file" in cases[2].find("failure").get("message")
    allowed = CLITestRunner(database_url, directory).run_command(
        "verify", ["--format", "junit", "--allow-unverifiable"])
    assert ET.fromstring(allowed.stdout).find("testsuite").findall("testcase")[2].find("skipped") is not None


def test_markdown_shows_verdicts_locks_rewrites_and_failed_round_trips(make_migrations, database_url):
    directory = make_migrations({
        **ACCOUNTS,
        "002_bigint.sql": LOCK + "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;",
        "002_bigint.rollback.sql": "ALTER TABLE accounts ALTER COLUMN id TYPE int;",
        "003_comment.sql": "COMMENT ON TABLE accounts IS 'x';",
        "003_comment.rollback.sql": "SELECT 1;",
    })
    result = CLITestRunner(database_url, directory).run_command("verify", ["--format", "markdown"])
    assert result.exit_code == 1
    out = result.stdout
    assert out.startswith("### poststack verify: failed")
    assert "line 2: rewrote public.accounts (AccessExclusiveLock)" in out
    assert "AccessExclusiveLock on public.accounts (line 2)" in out
    assert "#### Failed round trips" in out and "comment on table public.accounts: left behind by rollback" in out
