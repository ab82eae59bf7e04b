"""SQL text through pglast (PostgreSQL's own parser): statements, their kinds and lines, semantic checksums.

Using the real parser rather than splitting on semicolons is what makes dollar-quoted function bodies,
comments and string literals safe, and what lets a comment-only edit be told apart from a real one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

from poststack.errors import SqlSyntaxError as SqlSyntaxError  # re-exported: its name here before errors.py

if TYPE_CHECKING:
    from pglast.ast import RawStmt

_T = TypeVar("_T")


@dataclass(frozen=True)
class Statement:
    """One top-level statement: its text (without surrounding comments), first line and parse-node kind."""

    text: str
    line: int
    kind: str


def required(value: _T | None) -> _T:
    """A parse-tree field the grammar always sets for the statement at hand (a RawStmt's statement, a
    CREATE TABLE's relation, a function call's name...). pglast types every node field as optional, since a
    node built by hand may lack any of them; this states, and checks, that a parsed one does not."""
    assert value is not None, "the parser always sets this field"
    return value


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, max(offset, 0)) + 1


def _parse(sql: str) -> tuple[RawStmt, ...]:
    # pglast is imported on first use (here and in semantic_checksum): a no-op migrate whose files are
    # unchanged never needs the parser.
    from pglast import parser as pg_parser

    try:
        return pg_parser.parse_sql(sql)
    except pg_parser.ParseError as exc:
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        raise SqlSyntaxError(str(exc.args[0]), line_of(sql, offset) if offset is not None else None) from None


def split_statements(sql: str) -> list[Statement]:
    """Split SQL into statements with the line each starts on (pglast gives character offsets)."""
    statements = []
    for raw in _parse(sql):
        start = raw.stmt_location or 0
        length = raw.stmt_len or len(sql) - start
        text = sql[start : start + length].strip()
        statements.append(Statement(text, line_of(sql, start), type(raw.stmt).__name__))
    return statements


# Every source position in libpg_query's JSON tree: the fields pglast declares as ``ParseLoc`` (character
# offsets of a node, of a DefElem's argument such as a function body, of an IN list's parentheses, of a
# subscription's connection string...) and ``stmt_len``. Kept as an explicit list because an alternation of
# literals is twice as fast as a generic ``[a-z_]*location`` pattern on this hot path; a unit test checks it
# against pglast's node definitions, so a pglast upgrade that adds a position field fails loudly. Only integer
# values match: ``CreateTableSpaceStmt.location`` is a directory (a string) and is meaning.
POSITION_KEYS = ("location", "stmt_location", "stmt_len", "arg_location", "rexpr_list_start", "rexpr_list_end",
                 "list_start", "list_end", "conninfo_location", "name_location", "payload_location")
# Removed in two passes that each start with a literal (which Python's re scans for quickly): every key after
# a comma, then one that opens an object. Quotes inside JSON strings are escaped, so a SQL literal can never
# match.
_KEY = '"(?:' + "|".join(POSITION_KEYS) + ')":-?\\d+'
_LATER_POSITIONS = re.compile(rf",{_KEY}")
_FIRST_POSITION = re.compile(rf"\{{{_KEY},?")
_PARSER_VERSION = re.compile(r'^\{"version":\d+,?')


@lru_cache(maxsize=4096)
def semantic_checksum(sql: str) -> str | None:
    """sha256 of the parse tree without source positions: equal for edits of comments and whitespace only.

    Every source position is removed (see POSITION_KEYS), so a comment or whitespace between any two tokens
    never changes it, while any change of a literal, identifier or keyword does. The tree's JSON text is
    edited with a regular expression rather than loaded and re-dumped: this runs for every migration
    applied, and a Python round trip of the tree cost twenty times the parse itself.
    Returns None for text pglast cannot parse; callers then fall back to the byte checksum.
    """
    from pglast import parser as pg_parser

    try:
        tree = pg_parser.parse_sql_json(sql)
    except pg_parser.ParseError:
        return None
    # The parser's PostgreSQL version is not part of the migration's meaning.
    canonical = _FIRST_POSITION.sub("{", _LATER_POSITIONS.sub("", _PARSER_VERSION.sub("{", tree, count=1)))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_syntax(sql: str) -> None:
    """Raise SqlSyntaxError if the text does not parse."""
    _parse(sql)


def created_roles(sql_texts: Iterable[str]) -> list[str]:
    """Names of the roles the statements create, in order, without duplicates: ``CREATE ROLE/USER/GROUP`` at
    top level, and literal ones inside ``DO`` blocks (the usual way to tolerate a role that already exists);
    not roles named by dynamic SQL. Roles are server-wide, so whoever replays or tests migrations must know
    which ones are theirs to drop, and drop no other."""
    import pglast
    from pglast import ast

    names: list[str] = []
    for text in sql_texts:
        try:
            statements = pglast.parse_sql(text)
        except pglast.parser.ParseError:
            continue  # a syntax error is the migration's own failure, reported where it runs
        for raw in statements:
            found = [str(raw.stmt.role)] if isinstance(raw.stmt, ast.CreateRoleStmt) else []
            if isinstance(raw.stmt, ast.DoStmt):
                body = next((str(a.arg.sval) for a in raw.stmt.args or () if a.defname == "as"), "")
                found = [_unquote_role(m.group(1)) for m in _CREATE_ROLE_IN_BODY.finditer(body)]
            names += [name for name in found if name not in names]
    return names


_CREATE_ROLE_IN_BODY = re.compile(r"\bCREATE\s+(?:ROLE|USER|GROUP)\s+(\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*)", re.I)


def _unquote_role(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
