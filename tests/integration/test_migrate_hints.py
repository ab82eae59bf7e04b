"""Every hint migrate prints is true (issue 10, item 9): advice that would fail is never given.

An unrecorded migration whose objects exist is pointed at diagnose/recover (applying it again fails), a
pending out-of-order --target is not sent to rollback (it was never applied), and the success line says
which versions ran and where the history is now.
"""

import psycopg
import pytest

from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration]

ONE = {"001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n"}
TWO = {"002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY);\n"}
THREE = {"003_tags.sql": "CREATE TABLE tags (id int PRIMARY KEY);\n"}


def run_by_hand(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def gap(make_migrations, database_url):
    """001 and 003 applied by poststack; 002 arrives later (a merged branch)."""
    directory = make_migrations({**ONE, **THREE})
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    (directory / "002_posts.sql").write_text(TWO["002_posts.sql"])
    return directory, cli


def test_an_out_of_order_migration_whose_objects_exist_is_sent_to_recover(gap, database_url):
    _, cli = gap
    run_by_hand(database_url, TWO["002_posts.sql"])  # someone applied it by hand
    refused = cli.run_command("migrate")
    assert refused.exit_code == 1, refused
    assert "poststack db recover" in refused.stderr and "--allow-out-of-order" not in refused.stderr
    assert "002_posts.sql" in refused.stderr


def test_an_out_of_order_migration_that_never_ran_is_offered_allow_out_of_order(gap):
    _, cli = gap
    refused = cli.run_command("migrate")
    assert refused.exit_code == 1 and "none of its objects exist: pass --allow-out-of-order" in refused.stderr
    done = cli.run_command("migrate", ["--allow-out-of-order"])
    assert done.exit_code == 0, done
    assert "Applied 1 migration(s) (002 out of order): current version stays 003" in done.stdout


def test_target_of_a_pending_out_of_order_version_is_not_sent_to_rollback(gap):
    _, cli = gap
    refused = cli.run_command("migrate", ["--target", "002"])
    assert refused.exit_code == 1 and "rollback" not in refused.stderr, refused
    assert "--allow-out-of-order" in refused.stderr
    done = cli.run_command("migrate", ["--target", "002", "--allow-out-of-order", "--format", "json"])
    assert done.exit_code == 0, done
    assert [s["version"] for s in done.json["applied"]] == [2]
    assert (done.json["from_version"], done.json["to_version"]) == ("003", "003")


def test_target_below_the_current_version_names_a_rollback_only_when_it_would_run(gap):
    directory, cli = gap
    refused = cli.run_command("migrate", ["--target", "001"])
    assert refused.exit_code == 2 and "'poststack db rollback 1' would refuse" in refused.stderr, refused
    assert "003_tags.sql: no rollback file" in refused.stderr
    (directory / "003_tags.rollback.sql").write_text("DROP TABLE tags;\n")
    refused = cli.run_command("migrate", ["--target", "001"])
    assert refused.exit_code == 2 and "use 'poststack db rollback 1'" in refused.stderr, refused
    assert cli.run_command("rollback", ["1", "--dry-run"]).exit_code == 0  # the advice is runnable


def test_already_exists_points_to_diagnose_and_recover(make_migrations, database_url):
    directory = make_migrations(ONE)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").exit_code == 0
    (directory / "002_posts.sql").write_text(TWO["002_posts.sql"])
    run_by_hand(database_url, TWO["002_posts.sql"])
    failed = cli.run_command("migrate")
    assert failed.exit_code == 5, failed
    [error] = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert "already exists" in error and "'poststack db diagnose'" in error and "'poststack db recover'" in error
    recovered = cli.run_command("recover")  # and the advice holds: recover records it
    assert recovered.exit_code == 0, recovered
    assert "Nothing to apply" in cli.run_command("migrate").stdout


def test_the_success_line_lists_what_ran_and_where_the_history_is(make_migrations, database_url):
    directory = make_migrations({**ONE, **TWO})
    done = CLITestRunner(database_url, directory).run_command("migrate")
    assert "Applied 2 migration(s) (001, 002): none -> 002" in done.stdout, done
