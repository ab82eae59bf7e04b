"""Deployers racing each other, a held lock, and credentials that do not work."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from poststack.db.lock import lock_key
from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {f"{v:03d}_t{v}.sql": f"CREATE TABLE t{v} (id int);\nINSERT INTO t{v} SELECT generate_series(1, 500);"
         for v in range(1, 21)}


def poststack_cmd(url: str, path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "poststack", "--database-url", url, "--migrations-path", str(path), *args]


def test_eight_concurrent_deployers_apply_each_migration_once(database_url, make_migrations):
    directory = make_migrations(FILES)
    procs = [subprocess.Popen(poststack_cmd(database_url, directory, "db", "migrate"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outcomes = [(p.wait(), *p.communicate()) for p in procs]
    assert [code for code, *_ in outcomes] == [0] * 8, outcomes
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM poststack.migrations ORDER BY 1")]
        rows = conn.execute("SELECT count(*) FROM t20").fetchone()[0]
    assert versions == list(range(1, 21))
    assert rows == 500  # applied once: a second run would have failed on CREATE TABLE
    applied_by_run = sorted(int(out.split("Applied ")[1].split()[0]) for _, out, _ in outcomes if "Applied" in out)
    assert sum(applied_by_run) == 20


def test_lock_timeout_exits_4_naming_the_holder(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations(FILES))
    with psycopg.connect(database_url, autocommit=True, application_name="other-deployer") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("poststack")])
        pid = holder.info.backend_pid
        result = cli.run_command("migrate", ["--lock-timeout", "0.3"])
        status = cli.run_command("migration-status", ["--format", "json"]).json
    assert result.exit_code == 4
    [line] = result.stderr.strip().splitlines()
    assert f"held by pid {pid} (other-deployer)" in line and "--lock-timeout" in line
    assert status["lock"]["pid"] == pid
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is None


def test_wrong_password_exits_3_and_is_never_printed(postgres_server, database_url, password_role,
                                                     make_migrations):
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info.update(user=password_role, password="Wr0ngPassw0rd")
    url = psycopg.conninfo.make_conninfo(**info)
    result = CLITestRunner(url, make_migrations(FILES)).run_command("migrate")
    assert result.exit_code == 3, result.stderr
    assert "password authentication failed" in result.stderr
    assert "Wr0ngPassw0rd" not in result.stdout + result.stderr
    assert "password=***" in result.stderr


def test_subprocess_run_has_no_traceback_for_bad_input(tmp_path):
    env = {**os.environ, "POSTSTACK_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x"}
    proc = subprocess.run([sys.executable, "-m", "poststack", "--migrations-path", str(tmp_path / "none"),
                           "db", "migrate"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: migrations directory") and "Traceback" not in proc.stderr
