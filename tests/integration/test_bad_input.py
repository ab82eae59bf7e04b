"""The bad input catalog: every row is something a user, a checkout or an environment really does to poststack.

Each row must end in one line on stderr starting with ``error:`` (progress lines may precede it) that names
what is at fault, the exit code docs/errors.md documents, no traceback, no password, and a database exactly
as it was: same history rows, same catalog, same schemas. Rows are listed by id in docs/errors.md.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from poststack.db.connection import database_of, password_of
from poststack.db.lock import lock_key
from poststack.testing import CLITestRunner
from poststack.testing.db_helper import DbHelper

GOOD = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY);\n",
    "002_posts.rollback.sql": "DROP TABLE posts;\n",
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


@dataclass
class Case:
    """What one row runs against; ``setup`` functions change the path or URL and may register cleanups."""

    request: pytest.FixtureRequest
    database_url: str
    path: Path
    url: str | None  # None: no --database-url (the URL comes from the environment, a file or pyproject.toml)
    cleanups: list[Callable[[], Any]] = field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    def admin(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(statement)


@dataclass(frozen=True)
class Bad:
    id: str
    args: tuple[str, ...]  # the db command and its options; root options are moved in front of 'db'
    code: int
    needle: str  # must appear in the error line
    files: Mapping[str, str | bytes] = field(default_factory=dict)  # added to GOOD
    setup: Callable[[Case], None] | None = None
    applied: str | None = None  # migrate --target this first, so a history exists
    denied: bool = False  # run in a process that file permissions apply to (root included)
    secret: tuple[str, ...] = ()  # must appear in no output (for URLs password_of cannot parse)


# -- setups ------------------------------------------------------------------------------------------------
def symlink(name: str, target: str) -> Callable[[Case], None]:
    return lambda case: os.symlink(case.path / target, case.path / name)


def on_path(make: Callable[[Path], Path]) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        case.path = make(case.path)
    return setup


def a_file(directory: Path) -> Path:
    (directory / "notes.txt").write_text("not a directory\n")
    return directory / "notes.txt"


def a_loop(directory: Path) -> Path:
    loop = directory / "loop"
    os.symlink(loop, loop)
    return loop


def mkfifo(name: str) -> Callable[[Case], None]:
    return lambda case: os.mkfifo(case.path / name)


def chmod_000(name: str | None) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        target = case.path / name if name else case.path
        target.chmod(0)
        case.cleanups.append(lambda: target.chmod(0o755))
    return setup


def url(value: str) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        case.url = value
    return setup


def params(**changes: str) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        case.url = conninfo.make_conninfo(case.database_url, **changes)
    return setup


def role(*attributes: str, **settings: str) -> Callable[[Case], None]:
    """A new role (see role_url in conftest.py); ``password=`` gives it a wrong one."""
    def setup(case: Case) -> None:
        case.url = case.fixture("role_url")(*attributes, **settings)
    return setup


def pyproject(text: str) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        case.cwd = case.path.with_name(f"{case.path.name}_project")
        case.cwd.mkdir()
        (case.cwd / "pyproject.toml").write_text(text)
    return setup


def environment(**variables: str) -> Callable[[Case], None]:
    return lambda case: case.env.update(variables)


def read_only_database(case: Case) -> None:
    name = sql.Identifier(database_of(case.database_url))
    case.admin(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(name))


def lock_held(case: Case) -> None:
    holder = psycopg.connect(case.database_url, autocommit=True, application_name="other-deployer")
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
    case.cleanups.append(holder.close)


SLEEP = {"003_slow.sql": "SELECT pg_sleep(30);\nCREATE TABLE slow (id int);\n"}
THIRD = {"003_tags.sql": "CREATE TABLE tags (id int);\n"}
REMOTE = "postgresql://deployer:S3cret#pw@127.0.0.1:1/app"

ROWS = [
    # -- files: contents ------------------------------------------------------------------------------------
    Bad("nul_bytes", ("migrate",), 2, "003_x.sql: contains NUL bytes", {"003_x.sql": b"SELECT 1;\x00\x00"}),
    Bad("binary_file", ("migrate",), 2, "003_x.sql: not valid UTF-8 (byte 0x89 at offset 0)",
        {"003_x.sql": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}),
    Bad("latin1_file", ("migrate",), 2, "003_x.sql: not valid UTF-8 (byte 0xe9 at offset 16)",
        {"003_x.sql": "CREATE TABLE caf\xe9 (id int);".encode("latin-1")}),
    Bad("utf16_file", ("migrate",), 2, "003_x.sql: not valid UTF-8",
        {"003_x.sql": "CREATE TABLE t (id int);".encode("utf-16")}),
    Bad("rollback_not_utf8", ("migrate",), 2, "003_x.rollback.sql: not valid UTF-8",
        {"003_x.sql": "CREATE TABLE x (id int);", "003_x.rollback.sql": b"DROP TABLE \xff;"}),
    Bad("syntax_error", ("migrate",), 5, "003_x.sql:2: migration 003 failed: syntax error at or near",
        {"003_x.sql": "CREATE TABLE x (id int);\nCREATE TABEL y (id int);\n"}, applied="002"),
    Bad("commit_in_migration", ("migrate",), 2, "003_x.sql:2: 'COMMIT' would take transaction control",
        {"003_x.sql": "CREATE TABLE x (id int);\nCOMMIT;\nCREATE TABLE y (id int);\nSELECT 1 / 0;\n"}, applied="002"),
    Bad("rollback_in_migration", ("migrate",), 2, "003_x.sql:2: 'ROLLBACK' would take transaction control",
        {"003_x.sql": "CREATE TABLE x (id int);\nROLLBACK;\n"}, applied="002"),
    Bad("begin_commit_wrapper", ("migrate",), 2, "003_x.sql:1: 'BEGIN' would take transaction control",
        {"003_x.sql": "BEGIN;\nCREATE TABLE x (id int);\nCOMMIT;\n"}, applied="002"),
    Bad("commit_in_rollback_file", ("rollback", "1", "--confirm"), 2,
        "002_posts.rollback.sql:2: 'COMMIT' would take transaction control", {
            "002_posts.rollback.sql": "DROP TABLE posts;\nCOMMIT;\n"}, applied="002"),
    # -- files: names -----------------------------------------------------------------------------------------
    Bad("dash_name", ("migrate",), 2, "1-init.sql: not a valid migration file name", {"1-init.sql": "SELECT 1;"}),
    Bad("upper_extension", ("migrate",), 2, "003_x.SQL: not a valid migration file name",
        {"003_x.SQL": "SELECT 1;"}),
    Bad("space_in_name", ("migrate",), 2, "003_my table.sql: not a valid", {"003_my table.sql": "SELECT 1;"}),
    Bad("unicode_name", ("migrate",), 2, "003_café.sql: not a valid", {"003_café.sql": "SELECT 1;"}),
    Bad("editor_backup", ("migrate",), 2, "002_posts.sql~: not a valid", {"002_posts.sql~": "SELECT 1;"}),
    Bad("newline_name", ("migrate",), 2, "003_x.sql\\n: not a valid", {"003_x.sql\n": "SELECT 1;"}),
    Bad("forged_error_line", ("migrate",), 2, "003_x\\nerror: all good.sql: not a valid",
        {"003_x\nerror: all good.sql": "SELECT 1;"}),
    Bad("escape_sequence_name", ("migrate",), 2, "003_\\x1b[2Jx.sql: not a valid", {"003_\x1b[2Jx.sql": "SELECT 1;"}),
    Bad("version_beyond_bigint", ("migrate",), 2, "version 99999999999999999999 is larger than",
        {"99999999999999999999_x.sql": "SELECT 1;"}),
    Bad("duplicate_version", ("migrate",), 2, "duplicate migration version 2:", {"002_other.sql": "SELECT 1;"}),
    Bad("duplicate_padded_version", ("migrate",), 2, "duplicate migration version 2:", {"2_other.sql": "SELECT 1;"}),
    Bad("orphan_rollback", ("migrate",), 2, "003_x.rollback.sql: rollback file has no migration named 003_x.sql",
        {"003_x.rollback.sql": "SELECT 1;"}),
    Bad("misnamed_rollback", ("migrate",), 2, "002_post.rollback.sql: rollback file has no migration",
        {"002_post.rollback.sql": "SELECT 1;"}),
    # -- files: what the name points at ---------------------------------------------------------------------
    Bad("directory_as_file", ("migrate",), 2, "003_x.sql: is a directory",
        setup=lambda case: (case.path / "003_x.sql").mkdir()),
    Bad("fifo_as_file", ("migrate",), 2, "003_x.sql: not a regular file (a FIFO", setup=mkfifo("003_x.sql")),
    Bad("fifo_as_rollback", ("migrate",), 2, "003_x.rollback.sql: not a regular file",
        {"003_x.sql": "SELECT 1;"}, setup=mkfifo("003_x.rollback.sql")),
    Bad("dangling_symlink", ("migrate",), 2, "003_x.sql: dangling symlink to",
        setup=symlink("003_x.sql", "gone.sql")),
    Bad("symlink_loop", ("migrate",), 2, "003_x.sql: symlink loop", setup=lambda case: (
        symlink("003_x.sql", "003_y.sql")(case), symlink("003_y.sql", "003_x.sql")(case))),
    Bad("self_symlink", ("migrate",), 2, "003_x.sql: symlink loop", setup=symlink("003_x.sql", "003_x.sql")),
    Bad("unreadable_file", ("migrate",), 2, "002_posts.sql: cannot read: Permission denied",
        setup=chmod_000("002_posts.sql"), denied=True),
    Bad("unreadable_directory", ("migrate",), 2, "is not readable", setup=chmod_000(None), denied=True),
    Bad("path_missing", ("migrate",), 2, "does not exist (--migrations-path)", setup=on_path(lambda d: d / "nope")),
    Bad("path_is_a_file", ("migrate",), 2, "'--migrations-path'", setup=on_path(a_file)),
    Bad("path_below_a_file", ("migrate",), 2, "notes.txt/sub does not exist",
        setup=on_path(lambda d: a_file(d) / "sub")),
    Bad("path_symlink_loop", ("migrate",), 2, "loop does not exist", setup=on_path(a_loop)),
    # -- options --------------------------------------------------------------------------------------------
    Bad("unknown_target", ("migrate", "--target", "7"), 2, "--target 7: no migration file has version 7"),
    Bad("negative_target", ("migrate", "--target", "-1"), 2, "--target: '-1' is not a version"),
    Bad("text_target", ("migrate", "--target", "latest"), 2, "--target: 'latest' is not a version"),
    Bad("empty_target", ("migrate", "--target", ""), 2, "--target: '' is not a version"),
    Bad("target_below_current", ("migrate", "--target", "1"), 2, "below the current version 002", applied="002"),
    Bad("rollback_unknown", ("rollback", "7", "--confirm"), 2, "rollback target 7 is not an applied version",
        applied="002"),
    Bad("rollback_nothing_applied", ("rollback", "1", "--confirm"), 2, "not an applied version (applied: none"),
    Bad("rollback_negative", ("rollback", "-1", "--confirm"), 2, "No such option", applied="002"),
    Bad("rollback_unconfirmed", ("rollback", "0"), 2, "refusing without --confirm", applied="002"),
    Bad("rollback_without_file", ("rollback", "0", "--confirm"), 2, "003_tags.sql: no rollback file",
        THIRD, applied="003"),
    Bad("info_unknown_version", ("migration-info", "42"), 2, "no migration has version 42"),
    Bad("bad_format", ("migration-status", "--format", "xml"), 2, "'xml' is not one of 'table', 'json'"),
    Bad("unknown_option", ("migrate", "--frobnicate"), 2, "No such option '--frobnicate'"),
    Bad("unknown_command", ("frobnicate",), 2, "No such command 'frobnicate'"),
    Bad("quiet_and_verbose", ("migrate", "-q", "-v"), 2, "-q/--quiet and -v/--verbose contradict"),
    Bad("negative_lock_timeout", ("migrate", "--lock-timeout", "-1"), 2, "--lock-timeout: '-1' must be"),
    Bad("nan_lock_timeout", ("migrate", "--lock-timeout", "nan"), 2, "--lock-timeout: 'nan' is not a number"),
    Bad("text_lock_timeout", ("migrate", "--lock-timeout", "soon"), 2, "--lock-timeout: 'soon' is not a number"),
    Bad("bad_pyproject", ("migrate",), 2, "pyproject.toml: cannot read [tool.poststack]: ",
        setup=pyproject("[tool.poststack\nlock_timeout = 1\n")),
    Bad("pyproject_lock_timeout", ("migrate",), 2, "--lock-timeout: 'soon' is not a number of seconds",
        setup=pyproject("[tool.poststack]\nlock_timeout = 'soon'\n")),
    Bad("env_lock_timeout", ("migrate",), 2, "--lock-timeout: '-5' must be a number of seconds",
        setup=environment(POSTSTACK_LOCK_TIMEOUT="-5")),
    Bad("unknown_severity", ("diagnose", "--severity", "urgent"), 2, "--severity: 'urgent' is not one of"),
    Bad("unknown_issue_type", ("repair", "--issue-type", "bad_vibes"), 2, "unknown issue code 'bad_vibes'"),
    # -- environment ----------------------------------------------------------------------------------------
    Bad("unreachable_host", ("migrate",), 3, "cannot connect to postgresql://deployer:***@127.0.0.1:1/app",
        setup=url(REMOTE)),
    Bad("unresolvable_host", ("migration-status",), 3, "cannot connect to postgresql://deployer:***@",
        setup=url("postgresql://deployer:S3cret#pw@no-such-host.invalid/app")),
    Bad("malformed_url", ("migrate",), 3, "invalid database URL", setup=url("password=S3cret#pw host")),
    Bad("wrong_password", ("migrate",), 3, "password authentication failed", setup=role(password="Wr0ng#pass")),
    Bad("database_missing", ("migrate",), 3, 'database "pst_no_such_db" does not exist',
        setup=params(dbname="pst_no_such_db")),
    Bad("no_create_privilege", ("migrate",), 3, "cannot create the history tables in schema 'poststack' as role",
        setup=role()),
    Bad("read_only_role", ("migrate",), 3, "read-only transaction", setup=role("SUPERUSER",
        default_transaction_read_only="on")),
    Bad("read_only_database", ("migrate",), 5, "003_tags.sql:1: migration 003 failed: cannot execute CREATE TABLE in "
        "a read-only transaction", THIRD, setup=read_only_database, applied="002"),
    Bad("statement_timeout", ("migrate",), 5, "migration 003 failed: canceling statement due to statement timeout",
        SLEEP, setup=params(options="-c statement_timeout=200"), applied="002"),
    Bad("lock_held", ("migrate", "--lock-timeout", "0.2"), 4, "(other-deployer)", THIRD, setup=lock_held,
        applied="002"),
    # -- hostile identifiers (the ones that work are in test_security.py) ----------------------------------
    Bad("schema_64_bytes", ("migrate", "--history-schema", "h" * 64), 2, "is not a valid schema name (1-63 bytes"),
    Bad("schema_64_utf8_bytes", ("migrate", "--history-schema", "é" * 32), 2, "is not a valid schema name"),
    Bad("schema_empty", ("migrate", "--history-schema", ""), 2, "--history-schema: '' is not a valid"),
    Bad("foreign_history_table", ("migrate", "--history-schema", "public"), 2,
        "public.migrations is not a poststack history table", setup=lambda case: case.admin(sql.SQL(
            "CREATE TABLE public.migrations (id serial PRIMARY KEY, name text, run_on timestamptz)"))),
    Bad("schema_reserved", ("migrate", "--history-schema", "pg_catalog"), 2, "'pg_catalog' is reserved"),
]


def snapshot(url: str) -> tuple[Any, ...]:
    with DbHelper(url) as db:
        schemas = db.fetch_all("SELECT nspname FROM pg_namespace ORDER BY 1")
        return db.history_rows(), db.snapshot(), schemas


def assert_clean_failure(code: int, stdout: str, stderr: str, want: Bad, url: str | None) -> None:
    shown = f"exit {code}\n--- stdout\n{stdout}--- stderr\n{stderr}"
    assert code == want.code, shown
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), shown
    assert [line for line in lines if line.lower().startswith("error")] == lines[-1:], shown  # one, the last
    assert "\x1b" not in stderr  # escape sequences from file names are shown escaped, never sent raw
    assert want.needle in lines[-1], shown
    assert "Traceback" not in stdout + stderr
    password = password_of(url) if url else None
    for secret in (password, *want.secret):
        if secret:
            assert secret not in stdout + stderr, shown


@pytest.mark.parametrize("bad", ROWS, ids=[row.id for row in ROWS])
def test_bad_input(bad: Bad, request, database_url, make_migrations) -> None:
    run_bad_row(bad, request, database_url, make_migrations)


def run_bad_row(bad: Bad, request: pytest.FixtureRequest, database_url: str, make_migrations: Any) -> None:
    """Set up one row, run it, and check the failure is clean and the database unchanged."""
    case = Case(request, database_url, make_migrations({**GOOD, **bad.files}), database_url)
    try:
        if bad.applied:
            done = CLITestRunner(database_url, case.path).run_command("migrate", ["--target", bad.applied])
            assert done.ok, done
        if bad.setup:
            bad.setup(case)
        before = snapshot(database_url)
        cli = CLITestRunner(case.url or "", case.path, cwd=case.cwd, env=case.env)
        command, *args = bad.args
        argv = cli.argv(command, args)
        if case.url is None:
            argv = argv[2:]  # no --database-url
        if bad.denied:
            proc: subprocess.CompletedProcess[str] = request.getfixturevalue("run_without_file_override")(argv)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            result = cli.run_raw(argv)
            assert result.exception is None, result
            code, stdout, stderr = result.exit_code, result.stdout, result.stderr
            assert not case.url or password_of(case.url) in (None, "") or password_of(case.url) not in \
                result.command_line
        assert_clean_failure(code, stdout, stderr, bad, case.url)
        assert snapshot(database_url) == before
    finally:
        for cleanup in reversed(case.cleanups):
            cleanup()


def test_catalog_has_at_least_forty_rows_each_documented() -> None:
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    documented = DOCS.read_text()
    assert [i for i in ids if f"`{i}`" not in documented] == []


# -- odd input that must work: what poststack decided to accept ------------------------------------------
def test_comment_only_migration_is_applied_and_recorded(cli_runner_for) -> None:
    """A placeholder migration ('-- intentionally empty') is a real version, not an empty file."""
    cli, db = cli_runner_for({**GOOD, "003_placeholder.sql": "-- Description: kept for numbering\n"})
    result = cli.run_command("migrate")
    assert result.ok, result
    assert db.applied_versions() == [1, 2, 3]


def test_bom_and_crlf_apply_and_checksum_like_the_plain_file(cli_runner_for, make_migrations) -> None:
    plain = "CREATE TABLE tags (id int);\nCREATE INDEX tags_id ON tags (id);\n"
    cli, db = cli_runner_for({"001_tags.sql": b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode()})
    assert cli.run_command("migrate").ok
    [row] = db.history_rows()
    assert row.checksum == CLITestRunner(db.database_url, make_migrations({"001_tags.sql": plain})).run_command(
        "migration-info", ["1", "--format", "json"]).json["migrations"][0]["file_checksum"]
    assert db.table_exists("tags") and db.index_exists("tags_id")


def test_symlinked_migration_file_is_applied_from_its_target(cli_runner_for) -> None:
    cli, db = cli_runner_for(GOOD)
    shared = cli.migrations_path.with_name(f"{cli.migrations_path.name}_shared_tags.sql")
    shared.write_text("CREATE TABLE tags (id int);\n")
    os.symlink(shared, cli.migrations_path / "003_tags.sql")
    assert cli.run_command("migrate").ok
    assert db.table_exists("tags") and db.history_rows()[-1].name == "tags"


def test_hundred_thousand_statements_apply_in_one_transaction(cli_runner_for) -> None:
    """Above 1 MiB the semantic checksum is skipped: its parse tree would cost ~100x the file in memory."""
    body = "CREATE TABLE big (id int);\n" + "".join(f"INSERT INTO big VALUES ({i});\n" for i in range(100_000))
    cli, db = cli_runner_for({"001_big.sql": body})
    result = cli.run_command("migrate")
    assert result.ok, result
    assert db.fetch_value("SELECT count(*) FROM big") == 100_000
    [row] = db.history_rows()
    assert row.sql == body and row.semantic_checksum is None


@pytest.mark.slow
def test_fifty_megabyte_migration_applies(cli_runner_for) -> None:
    rows = ",\n".join(f"({i}, 'row {i} with some padding text')" for i in range(1_250_000))
    body = f"CREATE TABLE big (id int, t text);\nINSERT INTO big VALUES\n{rows};\n"
    assert len(body) > 50_000_000
    cli, db = cli_runner_for({"001_big.sql": body})
    result = cli.run_command("migrate")
    assert result.ok, result
    assert db.fetch_value("SELECT count(*) FROM big") == 1_250_000
    assert db.fetch_value("SELECT length(sql) FROM poststack.migrations") == len(body)


@pytest.fixture
def cli_runner_for(database_url, make_migrations):
    """Factory: files -> (CLITestRunner, DbHelper) on this test's database."""
    helpers: list[DbHelper] = []

    def make(files: Mapping[str, str | bytes]) -> tuple[CLITestRunner, DbHelper]:
        helpers.append(DbHelper(database_url))
        return CLITestRunner(database_url, make_migrations(files)), helpers[-1]

    yield make
    for helper in helpers:
        helper.close()
