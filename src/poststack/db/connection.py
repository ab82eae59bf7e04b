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

from poststack.db.masking import mask_text, mask_url, password_of, scrub, scrub_secrets, scrub_unparsed, secrets_of
from poststack.errors import ConnectError, UsageError

__all__ = ["connect", "database_of", "mask_text", "mask_url", "password_of", "scrub", "scrub_secrets",
           "secrets_of", "with_database"]  # the masking functions keep their historical import path here


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


def connect_timeout() -> int:
    """POSTSTACK_CONNECT_TIMEOUT in whole seconds (default 10), ASCII digits only."""
    text = os.environ.get("POSTSTACK_CONNECT_TIMEOUT", "10").strip()
    if not re.fullmatch(r"[0-9]{1,6}", text):
        raise UsageError(f"POSTSTACK_CONNECT_TIMEOUT: {text!r} is not a whole number of seconds")
    return int(text)


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Connect with poststack's application_name; raise ConnectError with a masked, one-line reason."""
    timeout = connect_timeout()
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=application_name(),
            connect_timeout=timeout,
            **kwargs,
        )
    except (psycopg.ProgrammingError, UnicodeDecodeError, ValueError) as exc:  # malformed; '%cd' is not UTF-8
        raise _invalid(url, exc) from None
    except psycopg.OperationalError as exc:
        raise ConnectError(f"cannot connect to {mask_url(url)}: {scrub(str(exc), url)}") from None


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database: keeps the URL form when given a URL."""
    try:
        if "://" in url:
            parts = urlsplit(url)  # ValueError for an IPv6 typo ('[::1')
            return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query,
                               parts.fragment))
        return pg_conninfo.make_conninfo(url, dbname=dbname)
    except (psycopg.ProgrammingError, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(url, exc) from None


def database_of(url: str) -> str:
    """The database a URL points at (libpq defaults to the user name)."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except (psycopg.ProgrammingError, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(url, exc) from None
    return str(params.get("dbname") or params.get("user") or getpass.getuser())


def _invalid(url: str, exc: Exception) -> ConnectError:
    """The one error for a URL that cannot be parsed, whoever tried to parse it."""
    if isinstance(exc, psycopg.ProgrammingError):
        return ConnectError(f"invalid database URL {mask_url(url)}: {scrub_unparsed(str(exc), url)}")
    return ConnectError(f"invalid database URL {mask_url(url)}: a percent-encoded value is not UTF-8 text "
                        f"({type(exc).__name__})")


def server_version(conn: psycopg.Connection[Any]) -> int:
    """The server's version number, e.g. 150004; poststack supports 130000 and later."""
    return conn.info.server_version
