"""The integrity commands through the CLI: exit codes, filters, the stable JSON shape, confirmation."""

from pathlib import Path

import psycopg
import pytest

from poststack.db.connection import password_of
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY);\n",
}
ISSUE_KEYS = {"code", "severity", "version", "message", "evidence", "auto_fixable", "fix"}
SUMMARY_KEYS = {"database", "history_schema", "history_exists", "current_version", "files", "applied", "pending",
                "unfinished", "lock", "lock_held_seconds", "checks_skipped", "issues_found",
                "skipped_reasons"}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def migrated(tmp_path, database_url):
    directory = write(tmp_path / "m", FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    return directory, cli


def test_clean_database_exits_zero_and_json_has_the_documented_shape(migrated):
    _, cli = migrated
    result = cli.run_command("diagnose", ["--format", "json"])
    assert result.exit_code == 0, result
    data = result.json
    assert set(data) == {"summary", "filters", "issues"}
    assert set(data["summary"]) == SUMMARY_KEYS and data["issues"] == []
    assert data["summary"]["issues_found"]["info"] == 1  # 002 has no rollback: info, below the default "low"
    assert data["filters"] == {"severity": "low", "types": []}


def test_issues_at_or_above_the_threshold_fail_and_filters_apply_to_every_format(migrated):
    directory, cli = migrated
    (directory / "001_users.sql").write_text("-- users\nCREATE TABLE users (id int PRIMARY KEY);\n")
    table = cli.run_command("diagnose")
    assert table.exit_code == 1 and "cosmetic_change" in table.stdout and "rollback_missing" not in table.stdout
    data = cli.run_command("diagnose", ["--format", "json", "--severity", "info"]).json
    assert sorted((i["code"], i["version"]) for i in data["issues"]) == [("cosmetic_change", 1),
                                                                         ("rollback_missing", 2)]
    assert all(set(i) == ISSUE_KEYS for i in data["issues"])
    only = cli.run_command("diagnose", ["--format", "json", "--severity", "info", "--type", "rollback_missing"])
    assert only.exit_code == 1 and [i["code"] for i in only.json["issues"]] == ["rollback_missing"]
    above = cli.run_command("diagnose", ["--severity", "medium"])
    assert above.exit_code == 0 and "No issues at or above medium (2 more hidden by the filters)" in above.stdout


@pytest.mark.parametrize("args, needle", [(["--severity", "bad"], "--severity"),
                                          (["--type", "no_such_code"], "--type")])
def test_bad_filters_are_one_line_usage_errors(migrated, args, needle):
    _, cli = migrated
    result = cli.run_command("diagnose", args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_repair_dry_run_then_force_for_a_changed_file(migrated, database_url):
    directory, cli = migrated
    (directory / "002_posts.sql").write_text("CREATE TABLE posts (id bigint PRIMARY KEY);\n")
    dry = cli.run_command("repair", ["--dry-run", "--force"])
    assert dry.exit_code == 0 and "would fix: checksum_mismatch 2" in dry.stdout
    assert "+CREATE TABLE posts (id bigint PRIMARY KEY);" in dry.stdout  # the diff is shown first
    assert cli.run_command("diagnose", ["--type", "checksum_mismatch"]).exit_code == 1  # dry run changed nothing
    refused = cli.run_command("repair", ["--format", "json"])
    assert refused.exit_code == 1
    assert [s["code"] for s in refused.json["skipped"] if s["code"] == "checksum_mismatch"] == ["checksum_mismatch"]
    forced = cli.run_command("repair", ["--force", "--issue-type", "checksum_mismatch"])
    assert forced.exit_code == 0 and "fixed: checksum_mismatch 2" in forced.stdout
    assert cli.run_command("diagnose").exit_code == 0


def test_validate_file_checks_never_connect(tmp_path):
    directory = write(tmp_path / "m", {**FILES, "002_posts.rollback.sql": "DROP TABLE posts;\n"})
    env = {"POSTSTACK_DATABASE_URL": "", "DATABASE_URL": ""}
    cli = CLITestRunner("postgresql://nobody@127.0.0.1:1/none", directory, env=env, cwd=tmp_path)
    ok = cli.run_raw(["--migrations-path", str(directory), "db", "validate", "--check-files", "--check-rollbacks"])
    assert ok.exit_code == 0 and "ok" in ok.stdout, ok
    assert not (tmp_path / ".poststack").exists()  # no embedded server was started either
    unreachable = cli.run_command("validate", ["--check-files"])  # a URL that cannot connect is not used
    assert unreachable.exit_code == 0


def test_validate_names_the_file_and_line_of_a_syntax_error(tmp_path):
    directory = write(tmp_path / "m", {**FILES, "003_bad.sql": "CREATE TABLE a (id int);\nCREATE TABLE b (id int;\n"})
    result = CLITestRunner("postgresql://unused@127.0.0.1:1/x", directory).run_command(
        "validate", ["--check-files", "--format", "json"])
    assert result.exit_code == 1
    [problem] = result.json["problems"]
    assert problem["check"] == "files" and problem["line"] == 2 and problem["path"].endswith("003_bad.sql")
    assert f"{directory / '003_bad.sql'}:2: syntax error" in problem["message"]


def test_validate_refuses_concurrently_in_a_transactional_rollback_and_accepts_a_no_transaction_one(tmp_path):
    index = "CREATE INDEX CONCURRENTLY users_id_idx ON users (id);\n"
    files = {**FILES, "002_posts.rollback.sql": "DROP TABLE posts;\n", "003_drop_idx.sql": "SELECT 1;\n",
             "003_drop_idx.rollback.sql": "-- restore the index\n" + index}
    directory = write(tmp_path / "m", files)
    cli = CLITestRunner("postgresql://unused@127.0.0.1:1/x", directory)
    result = cli.run_command("validate", ["--check-files", "--format", "json"])
    assert result.exit_code == 1
    [problem] = result.json["problems"]
    assert problem["path"].endswith("003_drop_idx.rollback.sql") and problem["line"] == 2
    assert "CONCURRENTLY" in problem["message"]
    write(directory, {"003_drop_idx.rollback.sql": "-- poststack:no-transaction\n" + index})
    assert cli.run_command("validate", ["--check-files"]).exit_code == 0


def test_validate_rollbacks_both_ways(tmp_path, monkeypatch):
    directory = write(tmp_path / "m", {**FILES, "009_gone.rollback.sql": "DROP TABLE gone;\n"})
    for name in ("POSTSTACK_DATABASE_URL", "DATABASE_URL"):  # no database configured: the files alone
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CLITestRunner("postgresql://unused@127.0.0.1:1/x", directory).run_raw(
        ["--migrations-path", str(directory), "db", "validate", "--check-rollbacks"])
    assert result.exit_code == 1, result
    assert "002_posts.sql: no rollback file" in result.stdout and "009_gone.rollback.sql" in result.stdout


def test_validate_unreadable_directory_exits_2(tmp_path):
    result = CLITestRunner("postgresql://unused@127.0.0.1:1/x", tmp_path / "nope").run_command(
        "validate", ["--check-files"])
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.database
def test_validate_checksums_reads_the_history(migrated):
    directory, cli = migrated
    assert cli.run_command("validate", ["--check-checksums"]).exit_code == 0
    (directory / "001_users.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY);\n")
    changed = cli.run_command("validate", ["--check-checksums"])
    assert changed.exit_code == 1 and "001_users.sql: changed since it was applied" in changed.stdout


@pytest.mark.database
def test_clean_refuses_without_confirm_and_audits_with_it(tmp_path, database_url):
    files = {"001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);\n",
             "002_u.sql": "-- poststack:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n"}
    cli = CLITestRunner(database_url, write(tmp_path / "m", files))
    assert cli.run_command("migrate").exit_code == 5
    refused = cli.run_command("clean", ["--failed"])
    assert refused.exit_code == 2 and "--confirm" in refused.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM poststack.migrations WHERE version = 2").fetchone() == ("failed",)
    done = cli.run_command("clean", ["--failed", "--confirm"])
    assert done.exit_code == 0 and "done: delete the failed history row of migration 002" in done.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT action FROM poststack.audit_log").fetchall() == [("delete_failed_row",)]
    free = cli.run_command("clean", ["--locks"])
    assert free.exit_code == 0 and "lock: free" in free.stdout


def test_no_password_in_diagnose_output(tmp_path, database_url):
    # An external test server's URL carries its real password; the embedded one trusts postgres, so any works.
    secret = password_of(database_url)
    with_password = database_url
    if secret is None:
        secret = "s3cret-pw"
        with_password = database_url.replace("postgres@", f"postgres:{secret}@", 1)
    result = CLITestRunner(with_password, write(tmp_path / "m", FILES)).run_command("diagnose", ["--format", "json"])
    assert result.exit_code == 0, result
    assert secret not in result.stdout + result.stderr
    assert result.json["summary"]["database"].startswith("postgresql://postgres:***@")


def test_repair_tells_manual_from_refused_by_the_skipped_kind_in_text_and_json(migrated, database_url):
    directory, cli = migrated
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE stray (id int)")  # schema_drift: for a person to decide, not for repair
    manual = cli.run_command("repair")
    assert manual.exit_code == 0, manual  # only manual issues: nothing repair was stopped from doing
    assert manual.stdout == "Nothing to repair.\n" and "skipped:" not in manual.stdout
    # The note names the manual codes, leaving out info (002 has no rollback file, which may be deliberate).
    assert manual.stderr == "note: not auto-fixable, see 'poststack db diagnose': schema_drift\n"
    data = cli.run_command("repair", ["--format", "json"])
    assert data.exit_code == 0, data
    assert [(s["code"], s["kind"]) for s in data.json["skipped"]] == [("schema_drift", "manual"),
                                                                      ("rollback_missing", "manual")]

    (directory / "002_posts.sql").write_text("CREATE TABLE posts (id bigint PRIMARY KEY);\n")  # needs --force
    refused = cli.run_command("repair")
    assert refused.exit_code == 1, refused
    [skipped] = [line for line in refused.stdout.splitlines() if line.startswith("skipped:")]
    assert skipped.startswith("skipped: checksum_mismatch 2: ")  # a "skipped:" line is a refusal, only a refusal
    assert refused.stderr == manual.stderr
    data = cli.run_command("repair", ["--format", "json"])
    assert data.exit_code == 1, data
    assert {(s["code"], s["kind"]) for s in data.json["skipped"]} == {
        ("schema_drift", "manual"), ("rollback_missing", "manual"), ("checksum_mismatch", "refused")}
