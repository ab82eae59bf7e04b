"""Passwords out of every text poststack prints: URLs of any shape, key=value strings, libpq's messages.

A URL reaches output in errors, JSON (``database``), reprs and command lines. libpq cannot parse every URL
a user writes (an unencoded ``p@ss:w/rd?#%x``, a ``%``, a space, ``mysql://``, ``[::1``), and its messages
then quote the connection string or the piece it stumbled on. So masking never relies on parsing:

- ``mask_url``: everything between ``scheme://user:`` and the *last* ``@`` is the password (libpq would
  end it at the first), ``password=`` values of URL queries and key=value strings too (a key=value value
  runs to the next libpq keyword, so ``password=my secret host=h`` is masked whole);
- ``scrub``: every form of the password (as written, percent-decoded, as libpq reads it), and every run of
  three of its characters, is replaced in a message; a token libpq quotes is replaced when it shares three
  or more characters with the password;
- ``scrub_unparsed``: for libpq's messages about a connection string it could not parse, every quoted token
  but a libpq keyword or a lone punctuation mark is replaced, because the token is a piece of the string
  and libpq cut it at delimiters that may be inside the password.
"""

from __future__ import annotations

import contextlib
import re
from difflib import SequenceMatcher
from functools import lru_cache
from urllib.parse import unquote

import psycopg
from psycopg import conninfo as pg_conninfo

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside a longer text ends at white space or a quote (libpq quotes the strings it cannot parse).
_URI_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s"']*""")
_SECRET_KEYS = r"(?:ssl)?password|oauth_client_secret|scram_client_key|scram_server_key"
# Inside other text (a message) a key=value secret ends at white space; scrub() removes the rest by value.
_KV_SECRET_IN_TEXT = re.compile(rf"((?<![A-Za-z_])(?:{_SECRET_KEYS})\s*=\s*)(?!\*\*\*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)",
                                re.IGNORECASE)
_QUERY_SECRET = re.compile(rf"((?<![A-Za-z_])(?:{_SECRET_KEYS})=)[^&\s\"']*", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]*)"')
_ANY_QUOTED = re.compile(r""""([^"]*)"|'([^']*)'""")  # libpq quotes hosts with ', tokens with "
# Quoted phrases of libpq's conninfo parse errors (fe-connect.c) that come before the quoted input.
_FIXED_QUOTES = ('"=" after ', '"=" in URI', '"]" in IPv6', '":" or "/"')
_SHORT_SECRET = 4  # shorter secrets are replaced only as whole delimited tokens, not inside words


@lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    """libpq's connection keywords (host, port, dbname, ...), from libpq itself."""
    return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())


@lru_cache(maxsize=1)
def _kv_secret() -> re.Pattern[str]:
    """key=value strings: a secret value is quoted, or runs to the next ' keyword=' or the end."""
    keywords = "|".join(sorted(_keywords(), key=len, reverse=True))
    return re.compile(rf"((?<![A-Za-z_])(?:{_SECRET_KEYS})\s*=\s*)('(?:[^'\\]|\\.)*'|.*?)"
                      rf"(?=\s+(?:{keywords})\s*=|\s*$)", re.IGNORECASE | re.DOTALL)


def mask_url(url: str | None) -> str:
    """Return the URL with any password replaced by ``***`` so it can be printed, logged or put in JSON."""
    if not url:
        return ""
    if _SCHEME.match(url):
        return _QUERY_SECRET.sub(r"\1***", _mask_userinfo(url))
    # key=value secrets first (a password may hold '://'), then URLs inside a longer text ('--database-url=...')
    return mask_text(_kv_secret().sub(lambda m: m.group(1) + "***", url))


def mask_text(text: str) -> str:
    """Mask every URL password and ``password=`` value found in a text (messages, command lines)."""
    text = _URI_IN_TEXT.sub(lambda m: _QUERY_SECRET.sub(r"\1***", _mask_userinfo(m.group())), text)
    return _KV_SECRET_IN_TEXT.sub(lambda m: m.group(1) + "***", text)


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
        found.update(m.group()[m.group().index("=") + 1:] for m in _QUERY_SECRET.finditer(url))
    else:
        found.update(m.group(2).strip("'") for m in _kv_secret().finditer(url))
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
        password = pg_conninfo.conninfo_to_dict(url).get("password")
        return str(password) if password else None  # parsed from a string, it is text
    except (psycopg.ProgrammingError, UnicodeDecodeError, ValueError):
        return None


def scrub(message: str, url: str | None) -> str:
    """Remove the URL's password from a message, on one line."""
    return " ".join(scrub_secrets(message, url).split())


def scrub_secrets(message: str, url: str | None) -> str:
    """``scrub`` without joining lines (for text whose line breaks are escaped, not lost, when shown)."""
    secrets = sorted(secrets_of(url), key=len, reverse=True)
    for secret in secrets:
        if len(secret) >= _SHORT_SECRET:
            message = message.replace(secret, "***")
        else:
            message = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", message)

    # When libpq misreads the password (it cannot parse the string, or reads less than was written), it
    # cuts the password at its own delimiters and quotes the pieces: then any three characters of it are
    # masked, wherever they appear (the message may lose a word that happens to be in the password).
    parsed = password_of(url) if url else None
    misread = [s for s in secrets if s != parsed and len(s) >= 3] if url and len(secrets) > 0 else []
    if parsed is not None and all(unquote(s, errors="replace") == parsed or s == parsed for s in secrets):
        misread = []
    pieces = {s[i:i + 3] for s in misread for i in range(len(s) - 2)}
    if pieces:
        message = re.sub("|".join(map(re.escape, sorted(pieces))), "***", message)

    def quoted(match: re.Match[str]) -> str:
        token = match.group(1) if match.group(1) is not None else match.group(2)
        hidden = token and any(_overlaps(token, s) for s in secrets)
        mark = match.group()[0]
        return f"{mark}***{mark}" if hidden else match.group()

    return mask_text(_ANY_QUOTED.sub(quoted, message))


def scrub_unparsed(message: str, url: str) -> str:
    """libpq's message about a connection string it could not parse, with the quoted piece of that string
    masked: from the first quote that does not open one of libpq's fixed phrases (``"=" after``, ``"]" in
    IPv6``...) to the last quote of the message, because the piece may itself hold quotes."""
    start = 0
    while (quote := message.find('"', start)) >= 0:
        fixed = next((f for f in _FIXED_QUOTES if message.startswith(f, quote)), None)
        if fixed is None:
            message = message[:quote] + '"***"' + message[message.rfind('"') + 1:]
            break
        start = quote + len(fixed)
    return scrub(message, url)


def _overlaps(token: str, secret: str) -> bool:
    """Whether a token libpq quoted holds part of the secret: libpq cuts an unencoded password at its own
    delimiters, so the token may be a piece of it ('#%x@host' of 'p@ss:w/rd?#%x')."""
    if token in secret or secret in token:
        return True
    size = SequenceMatcher(None, token, secret, autojunk=False).find_longest_match().size
    return size >= min(3, len(secret))
