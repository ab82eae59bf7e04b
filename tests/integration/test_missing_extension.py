"""A migration needing an extension the server lacks fails with one line: the extension and what to do."""

from __future__ import annotations

import psycopg
import pytest

from poststack.testing import CLITestRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]


def _files(extension: str) -> dict[str, str]:
    return {"001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
            "002_ext.sql": f'CREATE TABLE tokens (id int);\nCREATE EXTENSION IF NOT EXISTS "{extension}";\n',
            "003_more.sql": "CREATE TABLE more (id int);\n"}


def _state(url: str) -> tuple[list[int], bool]:
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM poststack.migrations ORDER BY 1")]
        return versions, conn.execute("SELECT to_regclass('public.tokens') IS NOT NULL").fetchone()[0]


def _one_error_line(result) -> str:
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == result.stderr.strip().splitlines()[-1:], result.stderr
    return errors[0]


def test_unknown_extension_names_it_and_the_way_out(database_url, make_migrations):
    cli = CLITestRunner(database_url, make_migrations(_files("poststack_no_such_ext")))
    result = cli.run_command("migrate")
    assert result.exit_code == 5, result
    line = _one_error_line(result)
    assert '002_ext.sql:2: migration 002 failed: extension "poststack_no_such_ext" is not available: ' in line
    assert "--database-url URL or POSTSTACK_DATABASE_URL" in line
    assert _state(database_url) == ([1], False)  # 002 left no trace, 003 never ran


def test_pgcrypto_applies_where_the_server_has_it_and_is_explained_where_not(database_url, make_migrations):
    with psycopg.connect(database_url) as conn:
        available = conn.execute(
            "SELECT count(*) = 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()[0]
    result = CLITestRunner(database_url, make_migrations(_files("pgcrypto"))).run_command("migrate")
    if available:  # e.g. the Debian PostgreSQL with contrib
        assert result.exit_code == 0, result
        assert _state(database_url) == ([1, 2, 3], True)
        return
    assert result.exit_code == 5, result  # the embedded test server is the wheel's, which lacks pgcrypto
    line = _one_error_line(result)
    assert 'extension "pgcrypto" is not available: the embedded PostgreSQL (used when no database URL is set)' in line
    assert "gen_random_uuid() is built in" in line
    assert _state(database_url) == ([1], False)
