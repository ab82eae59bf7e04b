"""Opening connections: one place that names the client, masks passwords and maps driver failures.

Every connection poststack opens carries an application_name with the OS user, host and pid, so that a
lock holder seen in pg_stat_activity can be traced back to the deployer that holds it.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo

from poststack.errors import ConnectError

_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# libpq's URI userinfo: user ':' password '@', ending before the first '/'; greedy to the last '@' before it.
_URI_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/\s]*(?=@)")
_URI_QUERY_PASSWORD = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def mask_url(url: str | None) -> str:
    """Return the URL with any password replaced by ``***`` so it can be printed, logged or put in JSON."""
    if not url:
        return ""
    if "://" in url:
        # Regexes rather than urlsplit, which ends the password at an unencoded '#' or '?' that libpq keeps
        # (and so printed the rest of it), and missed a URL inside a longer text such as '--database-url=...'.
        return _URI_QUERY_PASSWORD.sub(r"\1***", _URI_PASSWORD.sub(r"\1***", url))
    return _KV_PASSWORD.sub(r"\1***", url)


def password_of(url: str) -> str | None:
    """The password a URL carries, so it can be scrubbed from messages that might echo it."""
    try:
        return pg_conninfo.conninfo_to_dict(url).get("password") or None
    except psycopg.ProgrammingError:
        return None


def scrub(message: str, url: str | None) -> str:
    """Remove the URL's password from a message (driver errors may quote the connection string)."""
    password = password_of(url) if url else None
    if password:
        message = message.replace(password, "***")
    return " ".join(message.split())


def client_identity() -> str:
    """``user@host:pid`` of this process, recorded in history rows and in application_name."""
    return _identity(os.getpid())  # keyed by pid: a forked child must not report its parent


@lru_cache(maxsize=8)
def _identity(pid: int) -> str:
    # Looked up once per process: it is written with every history row.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{pid}"


def application_name() -> str:
    # PostgreSQL truncates application_name at 63 bytes; keep the pid, which is at the end, visible.
    name = f"poststack {client_identity()}"
    return name if len(name) <= 63 else "poststack …" + name[-51:]


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Connect with poststack's application_name; raise ConnectError with a masked, one-line reason."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=application_name(),
            connect_timeout=int(os.environ.get("POSTSTACK_CONNECT_TIMEOUT", "10")),
            **kwargs,
        )
    except psycopg.ProgrammingError as exc:  # malformed conninfo
        raise ConnectError(f"invalid database URL {mask_url(url)}: {scrub(str(exc), url)}") from None
    except psycopg.OperationalError as exc:
        raise ConnectError(f"cannot connect to {mask_url(url)}: {scrub(str(exc), url)}") from None


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database: keeps the URL form when given a URL."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query, parts.fragment))
    return pg_conninfo.make_conninfo(url, dbname=dbname)


def database_of(url: str) -> str:
    """The database a URL points at (libpq defaults to the user name)."""
    params = pg_conninfo.conninfo_to_dict(url)
    return str(params.get("dbname") or params.get("user") or getpass.getuser())


def server_version(conn: psycopg.Connection[Any]) -> int:
    """The server's version number, e.g. 150004; poststack supports 130000 and later."""
    return conn.info.server_version
