"""Concurrent first use of a project's embedded PostgreSQL: the start is serialised, every command succeeds."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from poststack.testing.cli_runner import executable

pytestmark = [pytest.mark.integration]


@pytest.fixture
def project() -> Iterator[Path]:
    """A fresh project (short path: a socket name has a length limit) with two migrations, no server yet."""
    root = Path(tempfile.mkdtemp(prefix="pst-", dir="/tmp"))
    (root / "migrations").mkdir()
    (root / "migrations" / "001_users.sql").write_text("CREATE TABLE users (id int);")
    (root / "migrations" / "002_posts.sql").write_text("CREATE TABLE posts (id int);")
    yield root
    _poststack(root, "server", "stop").wait()
    shutil.rmtree(root, ignore_errors=True)


def _poststack(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("POSTSTACK_HOME", "POSTSTACK_DATABASE_URL", "DATABASE_URL")}
    return subprocess.Popen([*executable(), *args], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def test_four_migrates_at_once_in_a_fresh_project_all_succeed(project) -> None:
    procs = [_poststack(project, "db", "migrate") for _ in range(4)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, _, stderr in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr and "CalledProcessError" not in stderr
    applied = [out for _, out, _ in results if out.startswith("Applied 2 migration(s)")]
    assert len(applied) == 1, results  # one of them applied both; the others found nothing to do
    url = _poststack(project, "server", "url").communicate()[0].strip()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, status FROM poststack.migrations ORDER BY version").fetchall()
    assert rows == [(1, "applied"), (2, "applied")]
