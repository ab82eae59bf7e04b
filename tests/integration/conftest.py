"""Fixtures shared by the integration tests: roles that must authenticate, and OS conditions root cannot see.

The embedded test server (poststack.testing.server) requires a password from every role but ``postgres``, so
a wrong password is refused for real. Every role made here has a password.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest
from psycopg import conninfo, sql

from poststack.testing import migrations_dir_for
from poststack.testing.cli_runner import executable


@pytest.fixture
def migrations_dir(request, sample_migrations):
    """poststack has no migrations of its own: its tests run on the sample scenario unless they choose."""
    return migrations_dir_for(request, sample_migrations)


@pytest.fixture
def cli_runner(poststack_cli_runner):
    """poststack's runner under the seed's name, even with pytest-click (which owns ``cli_runner``) installed."""
    return poststack_cli_runner


ROLE_PASSWORD = "Rol3-s3cret#pw"  # a '#' on purpose: libpq keeps it in a URL's password, urlsplit does not


def url_for(database_url: str, **changes: str) -> str:
    """The same database with other connection parameters (user, password, options...)."""
    params = conninfo.conninfo_to_dict(database_url)
    params.update(changes)
    return conninfo.make_conninfo(**params)


@pytest.fixture
def make_role(postgres_server, database_url) -> Iterator[Callable[..., str]]:
    """Factory: ``make_role("SUPERUSER", settings={...})`` -> the role's name. Dropped after the test.

    The role logs in with ROLE_PASSWORD, and on the embedded server it must: a wrong password is refused.
    What it created in the test's database is dropped with it (this fixture is torn down before that database).
    """
    made: list[str] = []
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:

        def make(*attributes: str, settings: dict[str, str] | None = None) -> str:
            role = f"pst_role_{uuid.uuid4().hex[:8]}"
            options = sql.SQL(" ").join(sql.SQL(a) for a in ("LOGIN", *attributes))  # fixed keywords only
            admin.execute(sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                sql.Identifier(role), options, sql.Literal(ROLE_PASSWORD)))
            for name, value in (settings or {}).items():
                admin.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    sql.Identifier(role), sql.Identifier(name), sql.Literal(value)))
            made.append(role)
            return role

        yield make
        with psycopg.connect(database_url, autocommit=True) as owner:
            owner.execute("SET default_transaction_read_only = off")  # a test may have made the database read-only
            for role in made:
                owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        for role in made:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def role_url(make_role, database_url) -> Callable[..., str]:
    """Factory: ``role_url("SUPERUSER", password="wrong", default_transaction_read_only="on")`` -> the URL of
    ``database_url`` for a new role with those attributes and settings; the password is the right one unless given.
    """

    def make(*attributes: str, password: str = ROLE_PASSWORD, **settings: str) -> str:
        return url_for(database_url, user=make_role(*attributes, settings=settings), password=password)

    return make


@pytest.fixture
def password_role(make_role) -> str:
    """A role that must authenticate with ROLE_PASSWORD (the embedded server trusts its socket by default)."""
    return make_role()


# -- permission denied, for real, even as root -------------------------------------------------------------
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_override() -> None:
    """Runs in the child before exec: without these two capabilities root obeys file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _can_drop_capabilities() -> bool:
    probe = subprocess.run(["true"], preexec_fn=_drop_file_override, check=False)
    return probe.returncode == 0


@pytest.fixture
def run_without_file_override() -> Callable[[Sequence[str]], subprocess.CompletedProcess[str]]:
    """Run ``poststack ARGS`` in a process that file permissions apply to: chmod 000 denies it.

    As root (as in CI containers) permissions are bypassed through CAP_DAC_OVERRIDE; the child drops it and
    CAP_DAC_READ_SEARCH from its bounding set before exec, so it is still uid 0 but gets EACCES like anyone.
    """
    as_root = os.geteuid() == 0
    if as_root:
        try:
            usable = _can_drop_capabilities()
        except (OSError, subprocess.SubprocessError):
            usable = False
        if not usable:
            pytest.skip("running as root without CAP_SETPCAP: permission denied cannot be produced here")

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*executable(), *argv], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, preexec_fn=_drop_file_override if as_root else None)

    return run
