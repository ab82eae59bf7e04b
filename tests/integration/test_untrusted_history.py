"""History rows, headers and file names are data others control: they never choose a path or forge output.

Anyone who can write the history table (or a migration file) controls version_text, name, description and
file names. Issue 11: ``repair`` wrote ``/elsewhere/OUTSIDE_x.sql`` from such a row, a ``../`` name gave a
traceback, and a name with a newline forged a ``Current version: 999`` line in migration-status.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poststack.cli.render import _UNSAFE
from poststack.integrity.issues import Issue
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.testing import CLITestRunner
from poststack.testing.db_helper import DbHelper

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY);\n",
    "002_posts.rollback.sql": "DROP TABLE posts;\n",
}

HOSTILE_ROWS = [  # (version_text, name) a history row may hold
    ("/elsewhere/OUTSIDE", "x"),
    ("002", "../../escape"),
    ("002", "sub/../../../x"),
    ("002", "x\nerror: forged"),
    ("002", ".hidden"),
    ("../002", "posts"),
    ("²", "posts"),
    ("0002", "posts.rollback"),
    ("003", "posts"),  # a valid name, but of another version than the row's
]


@pytest.mark.parametrize(("version_text", "name"), HOSTILE_ROWS, ids=repr)
def test_repair_never_writes_a_file_named_by_a_hostile_history_row(version_text, name, database_url,
                                                                    make_migrations, tmp_path) -> None:
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").ok
    (directory / "002_posts.sql").unlink()
    (directory / "002_posts.rollback.sql").unlink()
    outside = sorted(p.name for p in directory.parent.iterdir())
    with DbHelper(database_url) as db:
        db.execute("UPDATE poststack.migrations SET version_text = %s, name = %s WHERE version = 2",
                   [version_text, name])
        before = db.history_rows()

        diagnosis = cli.run_command("diagnose", ["--format", "json"])
        [missing] = [i for i in diagnosis.json["issues"] if i["code"] == "missing_file"]
        assert missing["auto_fixable"] is False and any("do not form a valid migration file name" in line
                                                        for line in missing["evidence"]), missing
        for result in (cli.run_command("repair"), cli.run_command("repair", ["--force", "--issue-type",
                                                                             "missing_file"])):
            assert result.exit_code in (0, 1) and "Traceback" not in result.stdout + result.stderr, result
        # The library path too, with an issue that claims to be fixable (a stale or forged one).
        claimed = Issue.of("missing_file", 2, "forged", auto_fixable=True)
        outcome = MigrationDiagnostics(database_url, directory).repair([claimed], force=True)
        assert outcome.fixed == [] and "does not form a valid migration file name" in outcome.skipped[0].reason
        assert db.history_rows() == before
    assert sorted(p.name for p in directory.iterdir()) == ["001_users.rollback.sql", "001_users.sql"]
    assert sorted(p.name for p in directory.parent.iterdir()) == outside
    assert not Path("/elsewhere").exists()


def test_repair_refuses_a_symlink_out_of_the_directory(database_url, make_migrations, tmp_path) -> None:
    """A dangling symlink with the file's name would make the restore write wherever it points."""
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").ok
    (directory / "002_posts.sql").unlink()
    target = tmp_path / "planted.sql"
    (directory / "002_posts.sql").symlink_to(target)
    outcome = MigrationDiagnostics(database_url, directory).repair(
        [Issue.of("missing_file", 2, "forged", auto_fixable=True)], force=True)
    assert outcome.fixed == [] and not target.exists()


def test_repair_still_restores_a_valid_missing_file(database_url, make_migrations) -> None:
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").ok
    (directory / "002_posts.sql").unlink()
    result = cli.run_command("repair")
    assert result.ok, result
    assert (directory / "002_posts.sql").read_text() == FILES["002_posts.sql"]


FORGED = "x\nCurrent version: 999\x1b[2J\x1b]8;;http://evil\x07\u202e\x85\u2028[red]markup[/red]"
RAW = {chr(c) for c in _UNSAFE} - {"\n"}


def test_control_characters_are_escaped_in_every_text_output(database_url, make_migrations) -> None:
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").ok
    with DbHelper(database_url) as db:
        db.execute("UPDATE poststack.migrations SET name = %s, description = %s, error = %s WHERE version = 2",
                   [FORGED, FORGED, FORGED])
    header = FORGED.replace("\n", " ")
    (directory / "003_tags.sql").write_text(f"-- Description: {header}\nCREATE TABLE t (id int);\n")
    (directory / "002_posts.sql").unlink()  # missing_file: the row's name shows up in diagnose and repair
    runs = {command: cli.run_command(command, args) for command, args in [
        ("migration-status", []), ("migration-info", []), ("diagnose", []), ("repair", ["--dry-run"]),
        ("recover", ["--dry-run"]), ("validate", []), ("lint", []), ("rollback", ["1", "--dry-run"])]}
    (directory / "004_\x1b[2Jx\nerror: ok.sql").write_text("SELECT 1;\n")
    runs |= {f"{command} (bad file)": cli.run_command(command) for command in ("validate", "diagnose", "lint",
                                                                               "verify", "migrate")}
    for label, result in runs.items():
        shown = result.stdout + result.stderr
        assert result.exception is None and "Traceback" not in shown, (label, result)
        assert not RAW & set(shown), (label, sorted(RAW & set(shown)), result)
        lines = shown.splitlines()
        assert not [line for line in lines if line.startswith(("Current version: 999", "error: forged",
                                                                "error: ok"))], (label, result)
        assert len([line for line in lines if line.startswith("error:")]) <= 1, (label, result)
    assert "x\\nCurrent version: 999\\x1b[2J" in runs["migration-status"].stdout
    assert "\\u202e" in runs["diagnose"].stdout and "[red]markup[/red]" in runs["migration-status"].stdout
    # JSON stays faithful: the same text, escaped by JSON itself.
    status = cli.run_command("migration-status", ["--format", "json"]).json
    assert [r["name"] for r in status["applied"] if r["version"] == 2] == [FORGED]


def test_legacy_row_with_a_superscript_version_is_refused_by_recover(database_url, make_migrations) -> None:
    """int('²') raised ValueError (a traceback) although '²'.isdigit() is True."""
    directory = make_migrations(FILES)
    with DbHelper(database_url) as db:
        db.execute("CREATE TABLE public.schema_migrations (version text PRIMARY KEY, checksum text)")
        db.execute("INSERT INTO public.schema_migrations VALUES ('²', 'x'), ('\u0660\u0660\u0661', 'y')")
        result = CLITestRunner(database_url, directory).run_command("recover")
        assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr, result
        assert "not a numeric version" in result.stdout, result
        assert db.history_rows() == []


def test_a_status_the_check_constraint_forbids_is_refused_by_name(database_url, make_migrations) -> None:
    """Rows become HistoryStatus members where they are built; a table altered to hold another status is
    named as the problem (exit 2), never a traceback and never guessed to be an unfinished run."""
    directory = make_migrations(FILES)
    cli = CLITestRunner(database_url, directory)
    assert cli.run_command("migrate").ok
    with DbHelper(database_url) as db:
        db.execute("ALTER TABLE poststack.migrations DROP CONSTRAINT migrations_status_check")
        db.execute("UPDATE poststack.migrations SET status = 'half' WHERE version = 2")
    for command in ("migration-status", "migrate", "diagnose", "recover"):
        result = cli.run_command(command)
        shown = result.stdout + result.stderr
        assert result.exit_code == 2 and "Traceback" not in shown, (command, result)
        assert "history row 2 has status 'half', which is not one of applied, running, failed" in shown, result
