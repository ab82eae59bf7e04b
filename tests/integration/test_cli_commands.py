"""The CLI contract: output, JSON, exit codes and one-line errors, through the plugin's CLI runner."""

import psycopg
import pytest

from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);",
    "001_users.rollback.sql": "DROP TABLE users;",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY,\n  user_id int REFERENCES users);",
    "002_posts.rollback.sql": "DROP TABLE posts;",
    "003_tags.sql": "CREATE TABLE tags (id int);",
}


def history_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT version FROM poststack.migrations ORDER BY 1")]


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], result.stderr  # one error line, the last (progress lines may precede it)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0]


@pytest.fixture
def cli(database_url, make_migrations):
    return CLITestRunner(database_url, make_migrations(FILES))


def test_version_option():
    from poststack import __version__

    result = CLITestRunner("unused", ".").run_raw(["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_migrate_then_status_as_json(cli, database_url):
    assert cli.run_command("migrate", ["--target", "2"]).exit_code == 0
    status = cli.run_command("migration-status", ["--format", "json"])
    assert status.exit_code == 0
    data = status.json
    assert data["current_version"] == "002"
    assert [m["version_text"] for m in data["applied"]] == ["001", "002"]
    assert [m["version"] for m in data["pending"]] == [3]
    assert data["lock"] is None and data["changed"] == []


def test_migrate_twice_applies_nothing_the_second_time(cli, database_url):
    assert "Applied 3 migration(s)" in cli.run_command("migrate").stdout
    again = cli.run_command("migrate")
    assert again.exit_code == 0 and "Nothing to apply; at version 003" in again.stdout
    assert history_versions(database_url) == [1, 2, 3]


def test_migrate_json_output_is_pure_json(cli):
    result = cli.run_command("migrate", ["--format", "json"])
    assert result.exit_code == 0
    assert [s["version"] for s in result.json["applied"]] == [1, 2, 3]


def test_dry_run_prints_plan_and_sql_without_changes(cli, database_url):
    result = cli.run_command("migrate", ["--dry-run"])
    assert result.exit_code == 0
    assert "would apply 002 posts" in result.stdout and "REFERENCES users" in result.stdout
    assert history_versions(database_url) == []


def test_migration_info_reports_each_migration(cli):
    cli.run_command("migrate", ["--target", "001"])
    info = cli.run_command("migration-info", ["--format", "json"]).json["migrations"]
    assert [(i["version_text"], i["status"], i["has_rollback"]) for i in info] == [
        ("001", "applied", True), ("002", "pending", True), ("003", "pending", False)]
    assert info[0]["applied_by"] == "postgres" and info[0]["checksum"] == info[0]["file_checksum"]
    one = cli.run_command("migration-info", ["2", "--format", "json"]).json["migrations"]
    assert [i["name"] for i in one] == ["posts"]


def test_rollback_refuses_without_confirm_on_a_non_terminal(cli, database_url):
    cli.run_command("migrate", ["--target", "2"])
    assert_one_line_error(cli.run_command("rollback", ["1"]), 2, "--confirm")
    assert history_versions(database_url) == [1, 2]
    done = cli.run_command("rollback", ["1", "--confirm"])
    assert done.exit_code == 0 and history_versions(database_url) == [1]


def test_rollback_refuses_unknown_target_and_missing_rollback(cli, database_url):
    cli.run_command("migrate")
    assert_one_line_error(cli.run_command("rollback", ["7", "--confirm"]), 2, "7 is not an applied version")
    assert_one_line_error(cli.run_command("rollback", ["1", "--confirm"]), 2, "003_tags.sql: no rollback file")
    assert history_versions(database_url) == [1, 2, 3]


def test_unknown_and_malformed_targets(cli, database_url):
    assert_one_line_error(cli.run_command("migrate", ["--target", "9"]), 2, "--target 9")
    assert_one_line_error(cli.run_command("migrate", ["--target", "-1"]), 2, "--target")
    assert history_versions(database_url) == []


def test_sql_error_names_file_line_and_postgres_message(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations({
        "001_ok.sql": "CREATE TABLE ok ();",
        "002_bad.sql": "CREATE TABLE bad (id int);\n\nCREATE TABEL oops ();"}))
    assert_one_line_error(cli.run_command("migrate"), 5, "002_bad.sql:3", "syntax error at or near \"TABEL\"")
    assert history_versions(database_url) == [1]


@pytest.mark.parametrize(("files", "needle"), [
    ({"001_a.sql": b"SELECT '\xff';"}, "001_a.sql: not valid UTF-8"),
    ({"001_a.sql": "SELECT 1;", "01_b.sql": "SELECT 2;"}, "duplicate migration version 1"),
    ({"1-init.sql": "SELECT 1;"}, "1-init.sql: not a valid migration file name"),
])
def test_bad_files_exit_2_and_touch_nothing(database_url, make_migrations, files, needle):
    result = CLITestRunner(database_url, make_migrations(files)).run_command("migrate")
    assert_one_line_error(result, 2, needle)
    assert history_versions(database_url) == []


def test_missing_migrations_directory(database_url, tmp_path):
    result = CLITestRunner(database_url, tmp_path / "nowhere").run_command("migrate")
    assert_one_line_error(result, 2, "nowhere does not exist")


def test_unreachable_host_exits_3_with_masked_password(make_migrations):
    url = "postgresql://deployer:TopSecret42@127.0.0.1:1/app"
    result = CLITestRunner(url, make_migrations(FILES)).run_command("migrate")
    assert_one_line_error(result, 3, "cannot connect to postgresql://deployer:***@127.0.0.1:1/app")
    assert "TopSecret42" not in result.stdout + result.stderr


def test_changed_file_stops_migrate_with_exit_1(database_url, make_migrations):
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    cli.run_command("migrate", ["--target", "1"])
    (directory / "001_users.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY);")
    assert_one_line_error(cli.run_command("migrate"), 1, "001_users.sql", "--allow-changed")
    assert cli.run_command("migrate", ["--allow-changed"]).exit_code == 0
