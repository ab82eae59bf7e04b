"""Lint that knows the schema: with a database URL, findings carry the size of the table they touch (biggest
first), and a table created by an earlier migration of the batch (not yet applied) is never "existing"."""

import pytest

from poststack.lint import lint_migrations
from poststack.testing import CLITestRunner
from poststack.testing.db_helper import DbHelper

pytestmark = [pytest.mark.integration]

LOCK = "SET lock_timeout = '5s';\n"
FILES = {
    "001_tables.sql": "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n"
                      "CREATE TABLE tags (id bigint PRIMARY KEY, name text);",
    "002_indexes.sql": LOCK + "CREATE INDEX tags_name_idx ON tags (name);\n"
                              "CREATE INDEX users_email_idx ON users (email);",
    "003_events.sql": LOCK + "CREATE TABLE events (id bigint, at timestamptz);",
    "004_events_idx.sql": LOCK + "CREATE INDEX events_at_idx ON events (at);\n"
                                 "ALTER TABLE events ADD CONSTRAINT events_pk PRIMARY KEY (id);",
}


@pytest.fixture
def deployed(make_migrations, database_url):
    """001 applied and users filled with 5,000 rows (analyzed); 002-004 pending."""
    directory = make_migrations(FILES)
    assert CLITestRunner(database_url, directory).run_command("migrate", ["--target", "001"]).exit_code == 0
    with DbHelper(database_url) as db:
        db.fill("public.users", rows=5_000)
    return directory


def test_findings_carry_table_sizes_and_the_biggest_table_comes_first(deployed, database_url):
    result = CLITestRunner(database_url, deployed).run_command("lint", ["--format", "json"])
    assert result.exit_code == 1, result.stderr
    findings = result.json["findings"]
    assert [(f["rule"], f["table"]) for f in findings] == [("index-not-concurrent", "users"),
                                                           ("index-not-concurrent", "tags")]
    users, tags = findings[0]["table_size"], findings[1]["table_size"]
    assert users["table"] == "public.users" and users["rows"] == 5_000 and users["bytes"] > 0
    assert tags["table"] == "public.tags" and tags["rows"] in (0, None)  # never analyzed: unknown
    assert result.json["batch"] == [2, 3, 4]
    markdown = CLITestRunner(database_url, deployed).run_command("lint", ["--format", "markdown"]).stdout
    assert "table size" in markdown and "public.users: ~5,000 rows" in markdown


def test_a_table_created_earlier_in_the_batch_is_new_to_later_migrations(deployed, database_url):
    with_schema = lint_migrations(deployed, database_url=database_url)
    assert not [f for f in with_schema.findings if f.version == 4]  # events is created by pending 003
    without = lint_migrations(deployed)  # no database: each migration is judged on its own
    assert sorted(f.rule for f in without.findings if f.version == 4) == ["constraint-builds-index",
                                                                          "index-not-concurrent"]


def test_a_table_created_by_an_applied_migration_is_existing(make_migrations, database_url):
    directory = make_migrations(FILES)
    assert CLITestRunner(database_url, directory).run_command("migrate", ["--target", "003"]).exit_code == 0
    report = lint_migrations(directory, database_url=database_url)
    assert report.batch == [4]
    assert sorted(f.rule for f in report.findings if f.version == 4) == ["constraint-builds-index",
                                                                         "index-not-concurrent"]


def test_an_unreachable_database_is_a_connection_error_when_asked_for_and_a_warning_when_configured(
        make_migrations, tmp_path):
    directory = make_migrations(FILES)
    nowhere = "postgresql://nobody@127.0.0.1:1/none"
    cli = CLITestRunner(nowhere, directory, env={"POSTSTACK_DATABASE_URL": "", "DATABASE_URL": ""}, cwd=tmp_path)
    explicit = cli.run_raw(["--migrations-path", str(directory), "db", "lint", "--database-url", nowhere])
    assert explicit.exit_code == 3 and explicit.stderr.startswith("error: ")
    configured = cli.run_command("lint")  # the runner configures the URL as the root option
    assert configured.exit_code == 1  # the static findings, as without a database
    assert "warning: table sizes not read" in configured.stderr and "index-not-concurrent" in configured.stdout
