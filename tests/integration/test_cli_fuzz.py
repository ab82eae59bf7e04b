"""Fuzzing the command line: argument lists, environment values and pyproject.toml contents for every command.

Whatever hypothesis generates, poststack must: never crash (no uncaught exception, no traceback without -v),
exit with a documented code, print at most one ``error:`` line (the last line of stderr, and exactly one for
exit codes 2 to 5), never print a password, and leave the database exactly as it was whenever it refused.
Passwords come from a pool of URL shapes libpq cannot parse (issue 11) and from the test server's own URL.

Runs in-process (CLITestRunner), on one database per test. The default run is a few hundred examples; the
``slow`` variant many more.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from poststack.cli.root import DB_COMMANDS, cli
from poststack.db.connection import password_of
from poststack.testing import CLITestRunner

FILES = {
    "001_users.sql": "-- Description: users\nCREATE TABLE users (id int PRIMARY KEY);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY);\n",
    "002_posts.rollback.sql": "DROP TABLE posts;\n",
    "003_tags.sql": "CREATE TABLE tags (id int);\n",
}
SECRET = "Fz9#s3cr@t"
HOSTILE_URLS = [
    f"postgresql://app:{SECRET}@127.0.0.1:1/app", f"postgresql://app:p@ss:{SECRET}/rd?#%x@127.0.0.1:1/app",
    f"postgresql://app:{SECRET}100%@127.0.0.1:1/app", f"postgresql://app:my {SECRET} pw@127.0.0.1:1/app",
    f"mysql://u:{SECRET}@127.0.0.1/db", f"postgresql://u:{SECRET}@[::1/app", f"postgresql://u:%cd{SECRET}@h/x",
    f"host=127.0.0.1 port=1 password={SECRET}", f"host=127.0.0.1 port=1 password='{SECRET} x'",
    f"postgresql://127.0.0.1:1/app?password={SECRET}", f"postgresql://app:{SECRET}@127.0.0.1:1/app?sslmode=bogus",
    f"password={SECRET} port=notaport",
]
EXIT_CODES = {0, 1, 2, 3, 4, 5, 130}
VALUES = ["1", "002", "0", "3", "-1", "", "²", "\u0663", "99999999999999999999", "latest", "json", "table",
          "xml", "nan", "inf", "-inf", "1e400", "0.01", "\u0661", "true", "a%sb", "information_schema", "pg_x",
          "h" * 64, "x\nerror: forged", "\x1b[2J", "--", "--format=json", "-v", "-q", "--help", "critical", "low",
          "missing_file", "bad_vibes", "/nonexistent", "."]
DANGEROUS = {"--database-url", "--database-url-file", "--migrations-path"}  # generated separately


GOOD_VALUES = {"--target": ["1", "2", "003"], "--from": ["1", "2"], "--to": ["2", "3"], "--lock-timeout": ["0.5", "5"],
               "--history-schema": ["poststack", "other_history", "a%sb"], "--lock-age": ["0", "60"],
               "--type": ["missing_file", "checksum_mismatch"], "--issue-type": ["missing_file"]}


def _options(command: click.Command) -> list[tuple[str, list[str] | None]]:
    """(option, values that make sense for it, or None for a flag) of a command."""
    found: list[tuple[str, list[str] | None]] = []
    for p in command.params:
        if not isinstance(p, click.Option):
            continue
        for o in (*p.opts, *p.secondary_opts):
            if o in DANGEROUS:
                continue
            choices = list(p.type.choices) if isinstance(p.type, click.Choice) else None
            found.append((o, None if p.is_flag or p.count else choices or GOOD_VALUES.get(o, ["1"])))
    return found


def _db_command(name: str) -> click.Command:
    group = cli.commands["db"]
    assert isinstance(group, click.Group)
    command = group.get_command(click.Context(group), name)
    assert command is not None
    return command


OPTIONS = {name: _options(_db_command(name)) for name in DB_COMMANDS}
ROOT_OPTIONS = [o for o in _options(cli) if o[0] not in ("--version", "--help", "-h")]
COMMANDS = [name for name in DB_COMMANDS if name != "verify"] * 4 + ["verify"]  # verify creates databases


@st.composite
def invocations(draw: st.DrawFn) -> dict[str, Any]:
    command = draw(st.sampled_from(COMMANDS))
    value = st.one_of(st.sampled_from(["1", "2", "3", "0", "json", "table", "5", "0.5"]), st.sampled_from(VALUES),
                      st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8))

    def with_values(options: list[tuple[str, list[str] | None]], size: int) -> list[str]:
        out: list[str] = []
        for option, good in draw(st.lists(st.sampled_from(options), max_size=size, unique_by=lambda o: o[0])):
            if good is not None:
                out += [option, draw(st.sampled_from(good)) if draw(st.integers(0, 2)) else draw(value)]
            else:
                out.append(option)
        return out

    args = with_values(OPTIONS[command], 4)
    root = with_values(ROOT_OPTIONS, 2)
    if command in ("rollback", "migration-info") and draw(st.booleans()):
        args.insert(0, draw(value))  # the positional TARGET / VERSION
    if draw(st.integers(0, 5)) == 0:
        args.insert(draw(st.integers(0, len(args))), draw(value))  # a stray token anywhere
    url_source = draw(st.sampled_from(["flag", "flag", "flag", "env", "database_url", "pyproject", "file"]))
    url = "good" if draw(st.integers(0, 2)) else draw(st.sampled_from(HOSTILE_URLS))
    variables = st.sampled_from(["POSTSTACK_LOCK_TIMEOUT", "POSTSTACK_CONNECT_TIMEOUT", "POSTSTACK_HISTORY_SCHEMA",
                                 "POSTSTACK_MIGRATIONS_PATH"])
    env = {} if draw(st.integers(0, 2)) else draw(st.dictionaries(variables,
                               st.one_of(st.sampled_from(VALUES), st.text(max_size=6)).filter(
                                   lambda v: "\x00" not in v), max_size=2))
    pyproject = None if draw(st.integers(0, 2)) else draw(st.one_of(st.none(), st.sampled_from([
        "[tool.poststack]\nlock_timeout = [1]\n", "[tool.poststack]\nlock_timeout = true\n",
        "[tool.poststack]\nmigrations_path = 5\n", "[tool.poststack]\nhistory_schema = {a = 1}\n",
        "[tool]\npoststack = 'x'\n", "tool = 1\n", "[tool.poststack\n", "[tool.poststack]\nlock_timeout = 0.5\n",
        "[tool.poststack]\nhistory_schema = 'information_schema'\n", "\xff garbage = = =\n"]),
        st.text(max_size=30)))
    path_flag = draw(st.booleans())
    return {"command": command, "args": args, "root": root, "url_source": url_source, "url": url, "env": env,
            "pyproject": pyproject, "path_flag": path_flag}


def state(url: str) -> tuple[Any, ...]:
    """Every schema, relation and the content of every table outside the system schemas."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
            "ORDER BY 1, 2").fetchall()
        contents = []
        for schema, table in tables:
            rows = conn.execute(sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table))).fetchall()
            contents.append((schema, table, hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()))
        schemas = conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1").fetchall()
        indexes = conn.execute("SELECT indexrelid::regclass::text FROM pg_index ORDER BY 1").fetchall()
        return tuple(contents), tuple(schemas), tuple(indexes)


def run_one(case: dict[str, Any], database_url: str, directory: Path, project: Path) -> int:
    good = case["url"] == "good"
    url = database_url if good else case["url"]
    env = dict(case["env"])
    argv: list[str] = []
    toml = case["pyproject"] or ""
    if case["url_source"] == "flag":
        argv += ["--database-url", url]
    elif case["url_source"] == "env":
        env["POSTSTACK_DATABASE_URL"] = url
    elif case["url_source"] == "database_url":
        env["DATABASE_URL"] = url
    elif case["url_source"] == "file":
        (project / "url").write_text(url + "\n")
        argv += ["--database-url-file", str(project / "url")]
    else:  # pyproject: the URL first, then whatever was generated (a duplicate [tool.poststack] is an error too)
        toml = "[tool.poststack]\ndatabase_url = " + _toml_string(url) + "\n" + toml
    (project / "pyproject.toml").write_text(toml, errors="surrogateescape")
    if case["path_flag"]:
        argv += ["--migrations-path", str(directory)]
    else:
        env.setdefault("POSTSTACK_MIGRATIONS_PATH", str(directory))
    argv += [*case["root"], "db", case["command"], *case["args"]]
    env.setdefault("POSTSTACK_CONNECT_TIMEOUT", "5")
    before = state(database_url)
    result = CLITestRunner(database_url, directory, env=env, cwd=project).run_raw(argv)
    shown = result.stdout + result.stderr
    event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many runs got how far
    assert result.exception is None, result
    assert result.exit_code in EXIT_CODES, result
    if "-v" not in argv and "--verbose" not in argv:
        assert "Traceback" not in shown, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, result
    if result.exit_code in (2, 3, 4, 5):
        assert errors and result.stderr.rstrip("\n").splitlines()[-1] == errors[0], result
    for secret in (SECRET, password_of(database_url)):
        if secret:
            assert secret not in shown, result
    if result.exit_code != 0:  # refused, failed, or found issues: nothing may have changed
        assert state(database_url) == before, result
    return result.exit_code


def _toml_string(text: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in text) + '"'


def fuzz(examples: int, database_url: str, make_migrations: Any, tmp_path: Path) -> None:
    directory = make_migrations(FILES)
    project = tmp_path / "project"
    project.mkdir()
    assert CLITestRunner(database_url, directory).run_command("migrate", ["--target", "1"]).ok

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large])
    @given(invocations())
    def check(case: dict[str, Any]) -> None:
        reached[run_one(case, database_url, directory, project)] += 1

    reached: Counter[int] = Counter()
    check()
    print(f"exit codes reached: {dict(sorted(reached.items()))}")
    # The generator is not degenerate: commands that succeed, refuse usage and fail to connect all ran.
    assert {0, 2, 3} <= set(reached), reached


def test_fuzzed_command_lines_fail_cleanly(database_url, make_migrations, tmp_path) -> None:
    fuzz(300, database_url, make_migrations, tmp_path)


@pytest.mark.slow
def test_fuzzed_command_lines_fail_cleanly_many(database_url, make_migrations, tmp_path) -> None:
    fuzz(3000, database_url, make_migrations, tmp_path)
