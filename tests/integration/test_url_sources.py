"""Ways to give poststack a password without putting it in argv, where every local user reads it (``ps``).

docs/security.md lists them; each is used for real here against a role that must authenticate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ROLE_PASSWORD
from psycopg import conninfo

from poststack.config import load_settings
from poststack.testing import CLITestRunner

FILES = {"001_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n"}


@pytest.fixture
def role_params(make_role, database_url) -> dict[str, str]:
    """Connection parameters of a new password role, without its password."""
    params = {k: str(v) for k, v in conninfo.conninfo_to_dict(database_url).items() if k != "password"}
    params["user"] = make_role("SUPERUSER")  # may create the history and the tables; still needs its password
    return params


def run(directory: Path, argv: list[str], env: dict[str, str] | None = None) -> object:
    cli = CLITestRunner("", directory, env=env)
    result = cli.run_raw([*argv, "--migrations-path", str(directory), "db", "migrate"])
    assert result.exception is None, result
    assert ROLE_PASSWORD not in result.stdout + result.stderr + result.command_line, result
    return result


def test_database_url_file_keeps_the_password_out_of_argv(role_params, make_migrations, tmp_path) -> None:
    directory = make_migrations(FILES)
    secret = tmp_path / "url"
    secret.write_text(conninfo.make_conninfo(**role_params, password=ROLE_PASSWORD) + "\n")
    secret.chmod(0o600)
    result = run(directory, ["--database-url-file", str(secret)])
    assert result.ok, result
    # A wrong password in the file fails as a connection failure, masked.
    secret.write_text(conninfo.make_conninfo(**role_params, password="Wr0ng-file#pw"))
    again = run(make_migrations(FILES, "again"), ["--database-url-file", str(secret)])
    assert again.exit_code == 3 and "password authentication failed" in again.stderr, again
    assert "Wr0ng-file#pw" not in again.stderr


def test_database_url_file_from_the_environment(role_params, make_migrations, tmp_path) -> None:
    secret = tmp_path / "url"
    secret.write_text(conninfo.make_conninfo(**role_params, password=ROLE_PASSWORD))
    result = run(make_migrations(FILES), [], env={"POSTSTACK_DATABASE_URL_FILE": str(secret)})
    assert result.ok, result


def test_url_without_password_uses_pgpassword(role_params, make_migrations) -> None:
    url = conninfo.make_conninfo(**role_params)
    without = run(make_migrations(FILES), ["--database-url", url], env={"PGPASSWORD": "", "PGPASSFILE": os.devnull})
    assert without.exit_code == 3, without  # the role must authenticate: the next success is PGPASSWORD's
    assert run(make_migrations(FILES, "b"), ["--database-url", url], env={"PGPASSWORD": ROLE_PASSWORD}).ok


def test_url_without_password_uses_pgpass(role_params, make_migrations, tmp_path) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{role_params['user']}:{ROLE_PASSWORD}\n")
    passfile.chmod(0o600)
    url = conninfo.make_conninfo(**role_params)
    result = run(make_migrations(FILES), ["--database-url", url], env={"PGPASSFILE": str(passfile)})
    assert result.ok, result


def test_pgservice_names_the_whole_connection(role_params, make_migrations, tmp_path) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text("[deploy]\n" + "".join(f"{k}={v}\n" for k, v in role_params.items())
                        + f"password={ROLE_PASSWORD}\n")
    services.chmod(0o600)
    env = {"PGSERVICEFILE": str(services)}
    assert run(make_migrations(FILES), ["--database-url", "service=deploy"], env=env).ok
    assert run(make_migrations(FILES, "b"), ["--database-url", "postgresql://?service=deploy"], env=env).ok
    assert run(make_migrations(FILES, "c"), ["--database-url", "postgresql://"],
               env={**env, "PGSERVICE": "deploy"}).ok


def test_empty_url_takes_everything_from_libpq_environment(role_params, make_migrations) -> None:
    env = {"PGHOST": role_params["host"], "PGDATABASE": role_params["dbname"], "PGUSER": role_params["user"],
           "PGPASSWORD": ROLE_PASSWORD}
    if "port" in role_params:
        env["PGPORT"] = role_params["port"]
    result = run(make_migrations(FILES), ["--database-url", "postgresql://"], env=env)
    assert result.ok, result


def test_libpq_environment_alone_does_not_choose_the_target(monkeypatch, tmp_path) -> None:
    """No URL means the project's embedded server, even with PGHOST set: a stray PGHOST in a shell must not
    make ``migrate`` deploy to whatever server it names. ``--database-url postgresql://`` opts in."""
    for name in ("POSTSTACK_DATABASE_URL", "POSTSTACK_DATABASE_URL_FILE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGHOST", "db.example.invalid")
    monkeypatch.setenv("PGDATABASE", "prod")
    assert load_settings(cwd=tmp_path).database_url is None
