"""Security: passwords never printed, identifiers always quoted, destructive commands confirmed, and an embedded
server no other OS user can reach. See docs/security.md.
"""

from __future__ import annotations

import ast
import os
import pty
import pwd
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from poststack.db import embedded
from poststack.db.connection import password_of
from poststack.db.lock import lock_key
from poststack.errors import UsageError
from poststack.schema_migration import MigrationRunner
from poststack.testing import CLITestRunner
from poststack.testing.cli_runner import CommandResult, executable
from poststack.testing.db_helper import DbHelper

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_email_idx.sql": "CREATE INDEX users_email ON users (email);\n",
    "002_email_idx.rollback.sql": "DROP INDEX users_email;\n",
}
SRC = Path(__file__).resolve().parents[2] / "src" / "poststack"


# -- passwords -------------------------------------------------------------------------------------------------
def test_password_is_masked_in_every_output_path(role_url, make_migrations) -> None:
    url = role_url("SUPERUSER")
    password = password_of(url)
    assert password and "#" in password  # libpq keeps an unencoded '#'; a URL parser would cut it short
    cli = CLITestRunner(url, make_migrations(FILES))
    runs = [
        cli.run_command("migrate", ["-v", "--target", "1"]),
        cli.run_command("migrate", ["--dry-run", "--format", "json"]),
        cli.run_command("migrate", ["-v"]),
        cli.run_command("migration-status", ["--format", "json"]),
        cli.run_command("migration-status", ["-v"]),
        cli.run_command("migration-info", ["--format", "json"]),
        cli.run_command("migration-info", ["1"]),
        cli.run_command("diagnose", ["--format", "json", "--severity", "info"]),
        cli.run_command("diagnose", ["-v", "--severity", "info"]),
        cli.run_command("validate", ["--format", "json"]),
        cli.run_command("recover", ["--dry-run", "--format", "json"]),
        cli.run_command("repair", ["--dry-run", "--format", "json"]),
        cli.run_command("clean", ["--confirm", "--format", "json"]),
        cli.run_command("rollback", ["0", "--confirm", "-v"]),
    ]
    for result in runs:
        assert result.exit_code in (0, 1) and result.exception is None, result
        assert password not in result.stdout + result.stderr + result.command_line + repr(cli), result
    status, diagnosis = runs[3].json, runs[7].json
    assert "password=***" in status["database"] and "password=***" in diagnosis["summary"]["database"]


@pytest.mark.parametrize("form", ["url", "url_option_equals", "keywords", "environment"])
def test_password_is_masked_in_errors_even_with_traceback(form, role_url, make_migrations) -> None:
    """-v prints the traceback of an error: it must not carry the password either."""
    right = role_url()
    params = conninfo.conninfo_to_dict(right)
    wrong = "Wr0ng#pass?word"
    url = f"postgresql://{params['user']}:{wrong}@/{params['dbname']}?host={params['host']}"
    directory = str(make_migrations(FILES))
    if form == "keywords":
        url = conninfo.make_conninfo(right, password=wrong)
    argv = {"url": ["--database-url", url], "url_option_equals": [f"--database-url={url}"],
            "keywords": ["--database-url", url], "environment": []}[form]
    cli = CLITestRunner(url, directory, env={"POSTSTACK_DATABASE_URL": url} if form == "environment" else None)
    result = cli.run_raw([*argv, "-v", "--migrations-path", directory, "db", "migrate"])
    assert result.exit_code == 3, result
    assert "password authentication failed" in result.stderr
    assert wrong not in result.stdout + result.stderr + result.command_line + str(result)
    assert "***" in result.stderr.splitlines()[-1]


def test_library_objects_show_masked_urls(database_url, make_migrations) -> None:
    url = conninfo.make_conninfo(database_url, password="Lib#secret")
    directory = make_migrations(FILES)
    shown = [repr(MigrationRunner(url, directory)), repr(DbHelper(url)), repr(CLITestRunner(url, directory)),
             CommandResult(["--database-url", url, "db", "migrate"], 0, "", "").command_line]
    assert all("Lib#secret" not in text and "***" in text for text in shown), shown


# -- identifiers ---------------------------------------------------------------------------------------------
HOSTILE_SCHEMAS = ['a"b', "x; DROP TABLE sentinel; --", "it's", "schéma_ü", " ", "Mixed Case", "a.b",
                   "$1", "h" * 63, "é" * 31,
                   # '%' met psycopg's placeholder parsing in every query that also took parameters (issue 11)
                   "a%sb", "100%", "%%", "%(x)s", "a\\0025b"]


@pytest.mark.parametrize("schema", HOSTILE_SCHEMAS, ids=lambda s: repr(s)[:20])
def test_hostile_history_schema_names_are_quoted_everywhere(schema, database_url, make_migrations) -> None:
    cli = CLITestRunner(database_url, make_migrations(FILES))
    with DbHelper(database_url, history_schema=schema) as db:
        db.execute("CREATE TABLE sentinel (id int)")
        opt = ["--history-schema", schema]
        results = [cli.run_command("migrate", opt), cli.run_command("migration-status", [*opt, "--format", "json"]),
                   cli.run_command("migration-info", [*opt, "--format", "json"]),
                   cli.run_command("diagnose", [*opt, "--format", "json"]),
                   cli.run_command("validate", opt), cli.run_command("repair", [*opt, "--dry-run"]),
                   cli.run_command("recover", [*opt, "--dry-run"]), cli.run_command("clean", [*opt, "--confirm"])]
        for result in results:
            assert result.ok, result
        assert results[1].json["current_version"] == "002" and results[1].json["history_schema"] == schema
        assert db.schema_exists(schema) and db.applied_versions() == [1, 2]
        assert cli.run_command("rollback", ["1", "--confirm", *opt]).ok
        assert db.applied_versions() == [1] and not db.index_exists("users_email")
        assert db.table_exists("sentinel") and not db.schema_exists("poststack")


@pytest.mark.parametrize("schema", ["a\x00b", "", "pg_toast", "h" * 64, "information_schema", "pg_temp_1"])
def test_library_refuses_schema_names_postgresql_cannot_hold(schema, database_url, make_migrations) -> None:
    """NUL cannot come through argv or the environment, but it can through the Python API."""
    with pytest.raises(UsageError, match="--history-schema"):
        MigrationRunner(database_url, make_migrations(FILES), history_schema=schema)
    with DbHelper(database_url) as db:
        assert db.fetch_value("SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                              "AND nspname NOT IN ('public', 'information_schema')") == 0


def _formatted_sql_calls() -> list[str]:
    """``.execute()`` calls whose SQL is an f-string, a concatenation, ``%`` or ``str.format``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany") and node.args):
                continue
            query = node.args[0]
            formatted = (isinstance(query, ast.JoinedStr)
                         or (isinstance(query, ast.BinOp) and isinstance(query.op, ast.Add | ast.Mod))
                         or (isinstance(query, ast.Call) and isinstance(query.func, ast.Attribute)
                             and query.func.attr == "format" and not _is_sql_composable(query.func.value)))
            if formatted:
                found.append(f"{path.relative_to(SRC)}: {ast.unparse(query)}")
    return found


def _is_sql_composable(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) in ("sql.SQL", "SQL")


def test_no_sql_is_built_by_string_formatting() -> None:
    """Identifiers go through psycopg.sql.Identifier; text formatting of SQL is allowed only for constants."""
    allowed = {"db/legacy.py: _LEGACY_DUPLICATES.format(order=order)"}  # ORDER BY from two fixed column lists
    assert set(_formatted_sql_calls()) - allowed == set()


# -- confirmation ----------------------------------------------------------------------------------------------
@pytest.fixture
def migrated(database_url, make_migrations) -> CLITestRunner:
    cli = CLITestRunner(database_url, make_migrations(FILES))
    assert cli.run_command("migrate").ok
    return cli


@pytest.mark.parametrize("subprocess_run", [False, True], ids=["in_process", "subprocess"])
def test_rollback_without_a_terminal_needs_confirm_even_when_yes_is_piped(migrated, subprocess_run) -> None:
    cli = CLITestRunner(migrated.database_url, migrated.migrations_path, subprocess=subprocess_run)
    result = cli.run_command("rollback", ["0"], input="y\ny\n")
    assert result.exit_code == 2 and "refusing without --confirm" in result.stderr, result
    with DbHelper(migrated.database_url) as db:
        assert db.applied_versions() == [1, 2]


def _on_terminal(argv: list[str], answer: str) -> tuple[int, str]:
    """Run poststack with a pseudo-terminal as stdin/stdout, answer its prompt, return (exit code, output)."""
    main, terminal = pty.openpty()
    proc = subprocess.Popen([*executable(), *argv], stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output, answered = b"", False
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if select.select([main], [], [], 0.1)[0]:
            try:
                output += os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
        if not answered and b"[y/N]" in output:
            os.write(main, answer.encode() + b"\n")
            answered = True
    code = proc.wait(timeout=60)
    os.close(main)
    return code, output.decode(errors="replace")


@pytest.mark.parametrize(("answer", "code", "left"), [("n", 2, [1, 2]), ("y", 0, [])])
def test_rollback_on_a_terminal_asks_first(migrated, answer, code, left) -> None:
    exit_code, output = _on_terminal(migrated.argv("rollback", ["0"]), answer)
    assert "roll back 2 migration(s) (002, 001)?" in output
    assert exit_code == code, output
    with DbHelper(migrated.database_url) as db:
        assert db.applied_versions() == left


def test_clean_force_ends_the_lock_holder_only_with_confirm(migrated) -> None:
    with psycopg.connect(migrated.database_url, autocommit=True, application_name="stuck-deployer") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
        refused = migrated.run_command("clean", ["--locks", "--force"])
        assert refused.exit_code == 2 and "refusing without --confirm" in refused.stderr, refused
        assert holder.execute("SELECT 1").fetchone() == (1,)  # still connected, still holding the lock
        done = migrated.run_command("clean", ["--locks", "--force", "--confirm"])
        assert done.ok, done
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")


# -- the embedded server -------------------------------------------------------------------------------------------
@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A temporary directory with a short path: pytest's (longer under xdist) can exceed a socket name's limit."""
    path = Path(tempfile.mkdtemp(prefix="pst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _poststack(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTSTACK_HOME", "POSTSTACK_DATABASE_URL",
                                                            "DATABASE_URL")}
    return subprocess.run([*executable(), *args], cwd=project, env=env, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)


def _connect_as_nobody(url: str) -> subprocess.CompletedProcess[str]:
    """Try the URL as OS user nobody (needs root), with the wheel's psql, which every user may run."""
    psql = embedded.postgres_bin_dir() / "psql"
    nobody = pwd.getpwnam("nobody")

    def become_nobody() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return subprocess.run([str(psql), "-X", "-c", "SELECT 1", url], capture_output=True,
                          text=True, check=False, preexec_fn=become_nobody, cwd="/")


@pytest.mark.parametrize("long_path", [False, True], ids=["socket_in_pgdata", "socket_in_runtime_dir"])
def test_embedded_server_listens_on_a_socket_only_its_user_can_open(short_tmp_path, long_path) -> None:
    """A data path too long for a socket name moves the socket to a runtime directory the wheel makes 0777."""
    project = short_tmp_path / ("p" * 80 if long_path else "proj")
    project.mkdir()
    assert _poststack(project, "server", "start").returncode == 0
    try:
        url = _poststack(project, "server", "url").stdout.strip()
        socket_dir = Path(conninfo.conninfo_to_dict(url)["host"])
        assert (socket_dir == project / ".poststack" / "pgdata") is not long_path
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
            assert conn.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)
        socket = next(socket_dir.glob(".s.PGSQL.*[0-9]"))
        assert socket.stat().st_mode & 0o077 == 0 and socket_dir.stat().st_mode & 0o077 == 0
        if os.geteuid() == 0:
            denied = _connect_as_nobody(url)  # psql ran and reached the socket: the socket refused it
            assert denied.returncode == 2 and f'socket "{socket}" failed: Permission denied' in denied.stderr, denied
        with psycopg.connect(url) as conn:  # the server's own user (or root) still gets in
            conn.execute(sql.SQL("SELECT 1"))
    finally:
        assert _poststack(project, "server", "stop").returncode == 0
