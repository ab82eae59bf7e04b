"""The examples/ directory the README's quick start migrates: it must apply, roll back and verify cleanly."""

from pathlib import Path

import pytest

from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "migrations"


def test_examples_migrate_roll_back_and_migrate_again(database_url, db_helper):
    cli = CLITestRunner(database_url, EXAMPLES)
    assert cli.run_command("migrate").exit_code == 0
    assert cli.run_command("migration-status", ["--format", "json"]).json["current_version"] == "005"
    assert db_helper.index_exists("users_email_lower_idx")
    assert db_helper.function_exists("touch_updated_at")
    db_helper.execute("INSERT INTO accounts (name) VALUES ('acme')")
    assert db_helper.fetch_one("SELECT name, users FROM account_summary") == ("acme", 0)

    assert cli.run_command("rollback", ["0", "--confirm"]).exit_code == 0
    assert not db_helper.table_exists("accounts")
    assert cli.run_command("migrate").exit_code == 0


def test_every_example_rollback_restores_the_schema(database_url):
    result = CLITestRunner(database_url, EXAMPLES).run_command("verify", ["--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = result.json
    assert [(m["version_text"], m["status"]) for m in report["migrations"]] == [
        ("001", "passed"), ("002", "passed"), ("003", "passed"), ("004", "passed"), ("005", "passed")]


def test_examples_are_lint_clean():
    result = CLITestRunner("unused: lint reads files only", EXAMPLES).run_command("lint", ["--format", "json"])
    assert result.exit_code == 0, result.stdout
