"""Opening connections: one place that names the client, masks passwords and maps driver failures.

Every connection poststack opens carries an application_name with the OS user, host and pid, so that a
lock holder seen in pg_stat_activity can be traced back to the deployer that holds it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo

from poststack.errors import ConnectError, UsageError

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside a longer text ends at white space or a quote (libpq quotes the strings it cannot parse).
_URI_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s"']*""")
# key=value strings: the value is quoted, or runs to the next ' key=' (a password with a space is masked
# whole); inside other text (a message) it ends at white space, and scrub() removes the rest by value.
_KV_PASSWORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|.*?)(?=\s+[A-Za-z_]+\s*=|\s*$)",
                          re.IGNORECASE)
_KV_PASSWORD_IN_TEXT = re.compile(r"((?:ssl)?password\s*=\s*)(?!\*\*\*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)",
                                  re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(password=)[^&\s\"']*", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]*)"')
_SHORT_SECRET = 4  # shorter secrets are replaced only as whole quoted or delimited tokens, not inside words


def mask_url(url: str | None) -> str:
    """Return the URL with any password replaced by ``***`` so it can be printed, logged or put in JSON.

    Works on any text, parseable or not: for a URL everything between ``scheme://user:`` and the last ``@``
    is masked (libpq ends the password at the first ``@``, so an unencoded ``p@ss:w/rd?#%x`` is masked
    whole, whatever libpq would make of it), also for a URL of another scheme (``mysql://``) and for URLs
    inside a longer text such as ``--database-url=...``; ``password=`` values of URL queries and key=value
    strings are masked too.
    """
    if not url:
        return ""
    if _SCHEME.match(url):
        return _QUERY_PASSWORD.sub(r"\1***", _mask_userinfo(url))
    if "://" in url:  # a URL inside a longer text ('--database-url=postgresql://...')
        return mask_text(url)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + "***", url)


def mask_text(text: str) -> str:
    """Mask every URL password and ``password=`` value found in a text (messages, command lines)."""
    text = _URI_IN_TEXT.sub(lambda m: _QUERY_PASSWORD.sub(r"\1***", _mask_userinfo(m.group())), text)
    return _KV_PASSWORD_IN_TEXT.sub(lambda m: m.group(1) + "***", text)


def _mask_userinfo(url: str) -> str:
    scheme = _SCHEME.match(url)
    assert scheme is not None
    rest = url[scheme.end():]
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url  # a user name, no password
    user = userinfo.split(":", 1)[0]
    if re.search(r"[\s/?#\[\]]", user):  # not even the user name can be told apart: mask all of it
        return f"{scheme.group()}***@{rest[at + 1:]}"
    return f"{scheme.group()}{user}:***@{rest[at + 1:]}"


def secrets_of(url: str | None) -> set[str]:
    """Every text that may be the URL's password: as written, percent-decoded, and as libpq reads it."""
    if not url:
        return set()
    found: set[str] = set()
    scheme = _SCHEME.match(url)
    if scheme:
        rest = url[scheme.end():]
        userinfo = rest[:max(rest.rfind("@"), 0)]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
        found.update(m.group()[len("password="):] for m in _QUERY_PASSWORD.finditer(url))
    else:
        found.update(m.group(2).strip("'") for m in _KV_PASSWORD.finditer(url))
    for secret in list(found):
        with contextlib.suppress(UnicodeDecodeError):  # '%cd' is not UTF-8 text
            found.add(unquote(secret, errors="strict"))
    parsed = password_of(url)
    if parsed:
        found.add(parsed)
    return {s for s in found if s}


def password_of(url: str) -> str | None:
    """The password a URL carries as libpq reads it (None when it has none or cannot be parsed)."""
    try:
        return pg_conninfo.conninfo_to_dict(url).get("password") or None
    except (psycopg.ProgrammingError, UnicodeDecodeError, ValueError):
        return None


def scrub(message: str, url: str | None) -> str:
    """Remove the URL's password from a message, on one line: libpq quotes the connection string it cannot
    parse (``missing "=" after "mysql://u:secret@h"``) or the token it stumbled on (``"100%"``)."""
    return " ".join(scrub_secrets(message, url).split())


def scrub_secrets(message: str, url: str | None) -> str:
    """``scrub`` without joining lines (for text whose line breaks are escaped, not lost, when shown)."""
    secrets = sorted(secrets_of(url), key=len, reverse=True)
    for secret in secrets:
        if len(secret) >= _SHORT_SECRET:
            message = message.replace(secret, "***")
        else:
            message = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", message)

    def quoted(match: re.Match[str]) -> str:
        token = match.group(1)
        hidden = token and any(_overlaps(token, s) for s in secrets)
        return '"***"' if hidden else match.group()

    return mask_text(_QUOTED.sub(quoted, message))


def _overlaps(token: str, secret: str) -> bool:
    """Whether a token libpq quoted holds part of the secret: libpq cuts an unencoded password at its own
    delimiters, so the token may be a piece of it ('#%x@host' of 'p@ss:w/rd?#%x')."""
    if token in secret or secret in token:
        return True
    size = SequenceMatcher(None, token, secret, autojunk=False).find_longest_match().size
    return size >= min(3, len(secret))


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
        return ConnectError(f"invalid database URL {mask_url(url)}: {scrub(str(exc), url)}")
    return ConnectError(f"invalid database URL {mask_url(url)}: a percent-encoded value is not UTF-8 text "
                        f"({type(exc).__name__})")


def server_version(conn: psycopg.Connection[Any]) -> int:
    """The server's version number, e.g. 150004; poststack supports 130000 and later."""
    return conn.info.server_version
