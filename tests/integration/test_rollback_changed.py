"""Rollback files edited after their migration was applied (issue 10, item 2).

The history records each rollback file's checksum and text when its migration is applied. A rollback file
whose meaning changed since then is refused by ``rollback`` (with the diff), reported by ``diagnose`` as
``rollback_changed``, failed by ``validate --check-rollbacks`` and shown by ``migration-status`` and
``migration-info``; a cosmetic edit runs with a warning.
"""

import psycopg
import pytest

from poststack.errors import RollbackChanged
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users);\n",
    "002_posts.rollback.sql": "DROP TABLE posts;\n",
}
EDITED = "DROP TABLE posts;\nDROP TABLE users;\n"  # the issue's example: the edit would drop users and its rows


@pytest.fixture
def applied(make_migrations, database_url):
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (1), (2)")
    return directory, cli


def user_count(database_url: str) -> int | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.users')").fetchone()[0] is None:
            return None
        return conn.execute("SELECT count(*) FROM users").fetchone()[0]


def applied_versions(database_url: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM poststack.migrations ORDER BY version")]


def test_rollback_refuses_a_rollback_file_whose_meaning_changed_and_shows_the_diff(applied, database_url):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text(EDITED)
    refused = cli.run_command("rollback", ["1", "--confirm"])
    assert refused.exit_code == 1, refused
    error_lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "002_posts.rollback.sql" in error_lines[0]
    assert "--allow-changed" in error_lines[0] and "--use-recorded" in error_lines[0]
    assert "+DROP TABLE users;" in refused.stderr  # the unified diff, recorded -> file
    assert "history:002_posts.rollback.sql" in refused.stderr
    assert user_count(database_url) == 2 and applied_versions(database_url) == [1, 2]
    # The dry run says the same, before anything.
    dry = cli.run_command("rollback", ["1", "--dry-run"])
    assert dry.exit_code == 1 and "+DROP TABLE users;" in dry.stderr


def test_use_recorded_runs_the_rollback_sql_stored_at_apply_time(applied, database_url):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text(EDITED)
    dry = cli.run_command("rollback", ["1", "--dry-run", "--use-recorded", "--format", "json"])
    assert dry.exit_code == 0 and [s["source"] for s in dry.json["planned"]] == ["history"]
    done = cli.run_command("rollback", ["1", "--confirm", "--use-recorded"])
    assert done.exit_code == 0, done
    assert user_count(database_url) == 2  # the recorded rollback dropped posts only
    assert applied_versions(database_url) == [1]


def test_allow_changed_runs_the_edited_file(applied, database_url):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text("DROP TABLE posts;\nDELETE FROM users WHERE id = 2;\n")
    done = cli.run_command("rollback", ["1", "--confirm", "--allow-changed"])
    assert done.exit_code == 0, done
    assert "warning: 002_posts.rollback.sql: changed since 002 was applied" in done.stderr
    assert user_count(database_url) == 1
    both = cli.run_command("rollback", ["0", "--confirm", "--allow-changed", "--use-recorded"])
    assert both.exit_code == 2 and "contradict" in both.stderr


def test_a_cosmetic_edit_runs_with_a_warning_and_is_low_in_diagnose(applied, database_url):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text("-- undo 002\nDROP   TABLE\n  posts; -- gone\n")
    data = cli.run_command("diagnose", ["--format", "json"]).json
    [issue] = [i for i in data["issues"] if i["code"] == "rollback_changed"]
    assert (issue["severity"], issue["version"], issue["auto_fixable"]) == ("low", 2, True)
    assert cli.run_command("validate", ["--check-rollbacks", "--format", "json"]).json["ok"] is True
    done = cli.run_command("rollback", ["1", "--confirm"])
    assert done.exit_code == 0, done
    assert "warning: 002_posts.rollback.sql: comments or whitespace changed" in done.stderr
    assert applied_versions(database_url) == [1]


def test_diagnose_validate_status_and_info_report_a_changed_rollback(applied):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text(EDITED)
    diagnosis = cli.run_command("diagnose", ["--format", "json"])
    assert diagnosis.exit_code == 1
    [issue] = [i for i in diagnosis.json["issues"] if i["code"] == "rollback_changed"]
    assert issue["severity"] == "high" and issue["version"] == 2
    assert "+DROP TABLE users;" in issue["evidence"]
    validate = cli.run_command("validate", ["--check-rollbacks"])
    assert validate.exit_code == 1 and "002_posts.rollback.sql: changed in meaning" in validate.stdout
    status = cli.run_command("migration-status", ["--format", "json"])
    assert [(c["version"], c["kind"]) for c in status.json["changed_rollbacks"]] == [(2, "changed")]
    assert "changed rollback: 002_posts.rollback.sql" in cli.run_command("migration-status").stdout
    info = cli.run_command("migration-info", ["--format", "json"]).json["migrations"]
    assert [i["rollback_status"] for i in info] == ["unchanged", "changed"]


def test_validate_check_rollbacks_compares_with_the_history_only_given_a_database(applied, database_url):
    from poststack.engine.validation import validate

    directory, _ = applied
    (directory / "002_posts.rollback.sql").write_text(EDITED)
    files_only = validate(directory, files=False, checksums=False, rollbacks=True)
    assert files_only.ok and files_only.database is None
    with_database = validate(directory, files=False, checksums=False, rollbacks=True, database_url=database_url)
    assert [(p.check, p.version) for p in with_database.problems] == [("rollbacks", 2)]


def test_repair_records_the_edited_rollback_only_with_force(applied, database_url):
    directory, cli = applied
    (directory / "002_posts.rollback.sql").write_text("DROP TABLE IF EXISTS posts;\n")
    without = cli.run_command("repair", ["--issue-type", "rollback_changed"])
    assert without.exit_code == 1 and "--force" in without.stdout
    forced = cli.run_command("repair", ["--issue-type", "rollback_changed", "--force"])
    assert forced.exit_code == 0, forced
    assert cli.run_command("diagnose", ["--format", "json", "--type", "rollback_changed"]).json["issues"] == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        recorded, action = conn.execute(
            "SELECT m.rollback_sql, a.action FROM poststack.migrations m JOIN poststack.audit_log a "
            "ON a.version = m.version WHERE m.version = 2").fetchone()
    assert (recorded, action) == ("DROP TABLE IF EXISTS posts;\n", "rerecord_rollback")
    assert cli.run_command("rollback", ["1", "--confirm"]).exit_code == 0


def test_python_api_raises_rollback_changed_with_the_diff(applied, database_url):
    directory, _ = applied
    (directory / "002_posts.rollback.sql").write_text(EDITED)
    runner = MigrationRunner(database_url, directory)
    with pytest.raises(RollbackChanged) as caught:
        runner.rollback(1)
    assert "+DROP TABLE users;" in caught.value.details
    assert MigrationDiagnostics(database_url, directory).diagnose().of("rollback_changed")


def test_a_rollback_file_written_after_apply_is_not_a_change(make_migrations, database_url):
    directory = make_migrations({"001_users.sql": FILES["001_users.sql"]})
    runner = MigrationRunner(database_url, directory)
    runner.migrate()
    (directory / "001_users.rollback.sql").write_text("DROP TABLE users;\n")
    assert not MigrationDiagnostics(database_url, directory).diagnose().of("rollback_changed")
    [info] = runner.info()
    assert info.rollback_status == "not_recorded"
    assert [s.version for s in runner.rollback(0).steps] == [1]
