"""Root options typed after the subcommand (``poststack db migrate --lock-timeout 120``) work like before it."""

from __future__ import annotations

import psycopg
import pytest

from poststack.cli.root import DB_COMMANDS
from poststack.db.lock import lock_key
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);",
    "001_users.rollback.sql": "DROP TABLE users;",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users);",
    "002_posts.rollback.sql": "DROP TABLE posts;",
    "003_tags.sql": "CREATE TABLE tags (id int);",
}
SCHEMA = "hist_after"
ROOT_OPTIONS = ("--database-url", "--migrations-path", "--history-schema", "--lock-timeout", "--verbose", "-v",
                "--quiet", "-q")

# One harmless invocation of every db command: read-only, a dry run, or a no-op on this database.
CASES = {
    "migrate": ["--dry-run"],
    "rollback": ["1", "--dry-run"],
    "migration-status": ["--format", "json"],
    "migration-info": ["--format", "json"],
    "diagnose": ["--format", "json"],
    "repair": ["--dry-run"],
    "validate": ["--check-files", "--check-checksums", "--check-rollbacks"],
    "clean": ["--locks"],  # run while a session holds the lock of SCHEMA's history
    "recover": ["--dry-run"],
    "verify": [],
    "lint": [],
}


@pytest.fixture
def setup(database_url, make_migrations):
    """A database at 002, its history in a non-default schema, one applied file edited; an empty decoy directory."""
    directory = make_migrations(FILES)
    right = ["--database-url", database_url, "--migrations-path", str(directory), "--history-schema", SCHEMA]
    result = CLITestRunner(database_url, directory).run_raw([*right, "db", "migrate", "--target", "2"])
    assert result.exit_code == 0, result
    with (directory / "001_users.sql").open("a") as f:  # a comment edit: cosmetic_change, which repair fixes
        f.write("\n-- users of the application\n")
    return right, make_migrations({}, "decoy")


@pytest.mark.parametrize("command", sorted(DB_COMMANDS))
def test_every_db_command_lists_the_root_options_in_its_help(command):
    result = CLITestRunner("unused", ".").run_raw(["db", command, "--help"])
    assert result.exit_code == 0, result
    for option in ROOT_OPTIONS:
        assert option in result.stdout, (command, option)


@pytest.mark.parametrize("command", sorted(CASES))
def test_root_options_after_the_command_act_as_before_it_and_win(setup, database_url, command):
    right, decoy = setup
    runner = CLITestRunner(database_url, ".")
    # Wrong values before the command, the right ones after it: the ones after must win.
    wrong = ["--database-url", database_url, "--migrations-path", str(decoy), "--history-schema", "hist_decoy"]
    with psycopg.connect(database_url, autocommit=True, application_name="holder") as holder:
        if command == "clean":
            holder.execute("SELECT pg_advisory_lock(%s)", [lock_key(SCHEMA)])
        before = runner.run_raw([*right, "db", command, *CASES[command]])
        after = runner.run_raw([*wrong, "db", command, *CASES[command], *right[2:], "--lock-timeout", "5", "-q"])
        decoyed = runner.run_raw([*wrong, "db", command, *CASES[command]])
    assert before.exit_code in (0, 1), before
    assert (after.exit_code, after.stdout) == (before.exit_code, before.stdout), (before, after)
    assert (decoyed.exit_code, decoyed.stdout) != (before.exit_code, before.stdout), "case does not use the options"


def test_database_url_given_only_after_the_command(database_url, make_migrations):
    directory = make_migrations(FILES)
    result = CLITestRunner(database_url, ".").run_raw(
        ["db", "migrate", "--database-url", database_url, "--migrations-path", str(directory)])
    assert result.exit_code == 0, result
    with psycopg.connect(database_url) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM poststack.migrations ORDER BY 1")] == [1, 2, 3]


def test_lock_timeout_after_the_command_bounds_the_wait(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations(FILES))
    with psycopg.connect(database_url, autocommit=True, application_name="other-deployer") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
        # Before the root option existed here this was a usage error (exit 2); now it waits 0.3 s, then exit 4.
        result = cli.run_raw([*cli.argv("migrate"), "--lock-timeout", "0.3"])
    assert result.exit_code == 4, result
    assert "(other-deployer)" in result.stderr and "0.3" in result.stderr


def test_quiet_after_the_command_silences_progress(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations(FILES))
    quiet = cli.run_raw([*cli.argv("migrate", ["--target", "1"]), "-q"])
    loud = cli.run_raw(cli.argv("migrate"))
    assert quiet.exit_code == loud.exit_code == 0
    assert quiet.stderr == "" and "applying 002 posts" in loud.stderr


def test_verbose_after_the_command_shows_the_traceback(make_migrations):
    cli = CLITestRunner("postgresql://nobody@127.0.0.1:1/none", make_migrations(FILES))
    plain = cli.run_raw(cli.argv("migration-status"))
    verbose = cli.run_raw([*cli.argv("migration-status"), "-v"])
    assert plain.exit_code == verbose.exit_code == 3
    assert "Traceback" not in plain.stderr and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: cannot connect")


@pytest.mark.parametrize("before, after", [([], ["-vv"]), (["-vv"], []), ([], ["-v", "-v"]), (["--verbose"], []),
                                           (["-v"], ["-v"])])
def test_any_count_of_verbose_shows_the_traceback(make_migrations, before, after):
    cli = CLITestRunner("postgresql://nobody@127.0.0.1:1/none", make_migrations(FILES))
    result = cli.run_raw([*before, *cli.argv("migration-status"), *after])
    assert result.exit_code == 3, result
    assert "Traceback" in result.stderr, result
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot connect")


def test_quiet_and_verbose_on_either_side_contradict(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations(FILES))
    result = cli.run_raw(["-v", *cli.argv("migrate"), "-q"])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: -q/--quiet and -v/--verbose contradict")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is None
