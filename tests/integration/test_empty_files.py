"""Empty and comment-only migration and rollback files are no-ops: applied, recorded, rolled back, warned about."""

from __future__ import annotations

import psycopg
import pytest

from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_placeholder.sql": "",
    "002_placeholder.rollback.sql": "",
    "003_seed.sql": "INSERT INTO users VALUES (1) ON CONFLICT DO NOTHING;\n",
    "003_seed.rollback.sql": "-- nothing to undo: the rows stay\n",
    "004_blank.sql": " \n\t\r\n",
    "005_comment.sql": "/* kept for numbering */\n",
    "005_comment.rollback.sql": "",
    "006_posts.sql": "CREATE TABLE posts (id int);\n",
    "006_posts.rollback.sql": "DROP TABLE posts;\n",
}


def history(url: str) -> list[tuple[int, str, str | None]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT version, sql, rollback_sql FROM poststack.migrations WHERE status = 'applied' ORDER BY 1")]


@pytest.fixture
def cli(database_url, make_migrations):
    return CLITestRunner(database_url, make_migrations(FILES))


def test_migrate_applies_and_records_empty_files(cli, database_url):
    result = cli.run_command("migrate")
    assert result.exit_code == 0, result
    assert "Applied 6 migration(s)" in result.stdout
    rows = history(database_url)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1] == (2, "", "") and rows[3][1:] == (" \n\t\n", None)  # as applied (CRLF -> LF), no rollback
    info = cli.run_command("migration-info", ["--format", "json"]).json["migrations"]
    assert all(i["status"] == "applied" for i in info)
    assert cli.run_command("diagnose").exit_code == 0


def test_rollback_runs_empty_rollbacks_as_nothing_to_undo(cli, database_url):
    assert cli.run_command("migrate", ["--target", "3"]).exit_code == 0
    result = cli.run_command("rollback", ["1", "--confirm"])
    assert result.exit_code == 0, result
    assert [r[0] for r in history(database_url)] == [1]
    with psycopg.connect(database_url) as conn:  # the empty rollback of 003 left its row, as it says
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
    again = cli.run_command("migrate", ["--target", "3"])  # and the no-ops re-apply
    assert again.exit_code == 0, again
    assert [r[0] for r in history(database_url)] == [1, 2, 3]


def test_empty_rollback_from_history_when_the_file_is_gone(database_url, make_migrations):
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate", ["--target", "2"]).exit_code == 0
    for name in ("002_placeholder.sql", "002_placeholder.rollback.sql"):
        (directory / name).unlink()
    result = cli.run_command("rollback", ["1", "--confirm"])
    assert result.exit_code == 0, result  # the stored '' is "nothing to undo", not "no rollback"
    assert [r[0] for r in history(database_url)] == [1]


def test_validate_warns_about_each_no_op_file_and_passes(cli):
    result = cli.run_command("validate", ["--check-files", "--check-rollbacks", "--format", "json"])
    data = result.json
    warned = sorted((w["check"], w["path"].rsplit("/", 1)[-1]) for w in data["warnings"])
    assert warned == [("files", "002_placeholder.sql"), ("files", "004_blank.sql"), ("files", "005_comment.sql"),
                      ("rollbacks", "002_placeholder.rollback.sql"), ("rollbacks", "003_seed.rollback.sql"),
                      ("rollbacks", "005_comment.rollback.sql")]
    # 004 has no rollback file at all: that is a problem of --check-rollbacks (exit 1); the warnings are not
    assert (result.exit_code, data["ok"]) == (1, False) and [p["version"] for p in data["problems"]] == [4]
    table = cli.run_command("validate", ["--check-files"])
    assert table.exit_code == 0, table
    assert "warning: files: " in table.stdout and "002_placeholder.sql: no statements" in table.stdout
    assert "ok, 3 warning(s)" in table.stdout


def test_verify_passes_no_ops_and_fails_an_empty_rollback_that_leaves_a_change(database_url, make_migrations):
    files = {k: v for k, v in FILES.items() if not k.startswith("004")}
    files["007_orders.sql"] = "CREATE TABLE orders (id int);\n"
    files["007_orders.rollback.sql"] = "-- irreversible\n"
    result = CLITestRunner(database_url, make_migrations(files)).run_command("verify", ["--format", "json"])
    assert result.exit_code == 1, result
    verdicts = {m["version"]: m for m in result.json["migrations"]}
    assert {v: m["status"] for v, m in verdicts.items()} == {1: "passed", 2: "passed", 3: "passed", 5: "passed",
                                                          6: "passed", 7: "failed"}
    assert verdicts[7]["differences"] == ['table public.orders: left behind by rollback']
    assert "no statements (nothing to undo)" in verdicts[7]["reason"]
