"""The server tests run on and the throwaway databases they get: shared by the pytest plugin and benchmarks.

An external server is used when a URL is given; otherwise an embedded PostgreSQL is started in a temporary
directory. Under pytest-xdist every worker attaches to the same embedded server (the wheel counts the
processes holding it and the last one out stops and deletes it), and each test gets its own database.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from poststack import embedded
from poststack.connection import connect, mask_url, with_database

# Durability is irrelevant for a throwaway test server and costs most of a migration's time.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class TestServer:
    """A PostgreSQL server tests may create databases on; ``url`` points at its maintenance database."""

    __test__ = False  # not a pytest test class

    url: str
    embedded: bool
    version: int

    def database_url(self, name: str) -> str:
        return with_database(self.url, name)

    def __str__(self) -> str:
        kind = "embedded" if self.embedded else "external"
        return f"{kind} PostgreSQL {self.version // 10000} at {mask_url(self.url)}"


def start_embedded(directory: Path) -> TestServer:
    """Start, or join, the embedded test server whose data lives in ``directory``."""
    pgdata = directory / "pgdata"
    directory.mkdir(parents=True, exist_ok=True)
    ep = embedded._quiet_import()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep.get_server(pgdata, cleanup_mode="delete")
    url = embedded.inspect(pgdata).url()
    with connect(url, autocommit=True) as conn:
        for name, value in _FAST_SETTINGS.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
        version = conn.info.server_version
    return TestServer(url, True, version)


def external(url: str) -> TestServer:
    with connect(url, autocommit=True) as conn:
        return TestServer(url, False, conn.info.server_version)


def create_database(server: TestServer, prefix: str = "pst", template: str | None = None) -> str:
    """Create a uniquely named database (optionally cloned from ``template``) and return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect(server.url, autocommit=True) as conn:
        conn.execute(query)
    return name


def drop_database(server: TestServer, name: str) -> None:
    """Drop a database even if a test left connections open (FORCE terminates them, PostgreSQL 13+)."""
    with connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(server: TestServer, prefix: str = "pst", template: str | None = None) -> Iterator[str]:
    """A database that exists for the duration of the block; yields its URL."""
    name = create_database(server, prefix, template)
    try:
        yield server.database_url(name)
    finally:
        drop_database(server, name)
