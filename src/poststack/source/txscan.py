"""A streaming lexical scan of SQL text: where each top-level statement starts and ends, and its first words.

It exists for two jobs that must work at any file size, where running PostgreSQL's parser (pglast) on a
multi-megabyte data load would cost seconds and gigabytes:

* refusing transaction control (``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``PREPARE TRANSACTION``...)
  in a transactional migration before anything runs;
* naming the line of the statement a multi-statement query failed in, when PostgreSQL gives no position.

It knows what PostgreSQL's lexer knows about where a ``;`` does not end a statement: '' strings, E'' strings
with backslash escapes, "quoted identifiers", $tag$ dollar quotes$tag$, nested /* */ comments, -- comments, and
(psql's heuristic) the ``BEGIN ATOMIC ... END`` body of a ``CREATE FUNCTION``/``PROCEDURE``. It assumes
``standard_conforming_strings = on`` (the default since PostgreSQL 9.1): a file that turns it off can hide a
statement from this scan, which is why the executor also checks its transaction is still its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_SPECIAL = re.compile(r"""['";$]|--|/\*""")
# In a CREATE FUNCTION/PROCEDURE, BEGIN ... END (and CASE ... END inside it) nest, as in psql's lexer.
_SPECIAL_IN_ROUTINE = re.compile(r"""['";$]|--|/\*|(?<![\w$])(?:begin|case|end)(?![\w$])""", re.IGNORECASE)
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_STANDARD_STRING = re.compile(r"(?:[^']|'')*'")
_ESCAPE_STRING = re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL)
_QUOTED_IDENTIFIER = re.compile(r'(?:[^"]|"")*"')
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_FIRST_WORDS = 4

TRANSACTION_WORDS = frozenset({"begin", "commit", "end", "rollback", "abort", "savepoint", "release"})
_NEEDS_TRANSACTION_WORD = frozenset({"start", "prepare"})  # START TRANSACTION, PREPARE TRANSACTION


@dataclass(frozen=True)
class ScannedStatement:
    """One top-level statement: offsets into the text (end excludes the ``;``), first line, first words."""

    start: int
    end: int
    line: int
    words: tuple[str, ...]  # the first few keywords/identifiers, lowercased

    def text(self, sql: str) -> str:
        return sql[self.start:self.end].strip()

    @property
    def is_transaction_control(self) -> bool:
        """BEGIN, START TRANSACTION, COMMIT [PREPARED], END, ROLLBACK [TO|PREPARED], ABORT, SAVEPOINT, RELEASE,
        PREPARE TRANSACTION: every statement that opens, ends or splits a transaction."""
        if not self.words:
            return False
        first = self.words[0]
        if first in TRANSACTION_WORDS:
            return True
        return first in _NEEDS_TRANSACTION_WORD and self.words[1:2] == ("transaction",)


def _is_ident_char(ch: str) -> bool:
    return ch in _IDENT_CHARS or ch >= "\x80"


def _skip_block_comment(text: str, pos: int) -> int:
    """``pos`` is at ``/*``; return the offset after its matching ``*/`` (comments nest), or len(text)."""
    depth = 0
    for edge in _COMMENT_EDGE.finditer(text, pos):
        depth += 1 if edge.group() == "/*" else -1
        if depth == 0:
            return edge.end()
    return len(text)


def _skip_space_and_comments(text: str, pos: int) -> int:
    n = len(text)
    while pos < n:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        elif text.startswith("--", pos):
            newline = text.find("\n", pos)
            pos = n if newline < 0 else newline + 1
        elif text.startswith("/*", pos):
            pos = _skip_block_comment(text, pos)
        else:
            return pos
    return pos


def _first_words(text: str, pos: int) -> tuple[str, ...]:
    words: list[str] = []
    while len(words) < _FIRST_WORDS:
        word = _WORD.match(text, pos)
        if not word:
            break
        words.append(word.group().lower())
        pos = _skip_space_and_comments(text, word.end())
    return tuple(words)


def _creates_routine(words: tuple[str, ...]) -> bool:
    if words[:1] != ("create",):
        return False
    kind = words[3:4] if words[1:3] == ("or", "replace") else words[1:2]
    return kind in (("function",), ("procedure",))


def _after_quote(text: str, pos: int, special: str) -> int:
    """``pos`` is at a quote character or ``$``; return where scanning resumes after the quoted text."""
    n = len(text)
    if special == "'":
        escape = pos > 0 and text[pos - 1] in "eE" and not (pos > 1 and _is_ident_char(text[pos - 2]))
        closing = (_ESCAPE_STRING if escape else _STANDARD_STRING).match(text, pos + 1)
        return closing.end() if closing else n
    if special == '"':
        closing = _QUOTED_IDENTIFIER.match(text, pos + 1)
        return closing.end() if closing else n
    # '$': a dollar quote only where a token can start (not inside an identifier such as a$b, not $1).
    tag = None if pos > 0 and _is_ident_char(text[pos - 1]) else _DOLLAR_TAG.match(text, pos)
    if tag is None:
        return pos + 1
    closing_tag = text.find(tag.group(), tag.end())
    return n if closing_tag < 0 else closing_tag + len(tag.group())


def scan(text: str) -> Iterator[ScannedStatement]:
    """The top-level statements of ``text`` in order; empty statements (a lone ``;``) are skipped, as the
    server skips them, so the n-th statement here is the n-th result of a multi-statement query."""
    n = len(text)
    pos = 0
    line = 1
    counted_to = 0
    while True:
        pos = _skip_space_and_comments(text, pos)
        if pos >= n:
            return
        if text[pos] == ";":
            pos += 1
            continue
        start = pos
        line += text.count("\n", counted_to, start)
        counted_to = start
        words = _first_words(text, start)
        pattern = _SPECIAL_IN_ROUTINE if _creates_routine(words) else _SPECIAL
        depth = 0
        end = n
        while True:
            found = pattern.search(text, pos)
            if found is None:
                pos = n
                break
            special = found.group()
            at = found.start()
            if special == ";":
                if depth == 0:
                    end, pos = at, at + 1
                    break
                pos = at + 1
            elif special == "--":
                newline = text.find("\n", at)
                pos = n if newline < 0 else newline + 1
            elif special == "/*":
                pos = _skip_block_comment(text, at)
            elif special in ("'", '"', "$"):
                pos = _after_quote(text, at, special)
            else:
                word = special.lower()
                if word == "begin" or (word == "case" and depth > 0):
                    depth += 1
                elif word == "end" and depth > 0:
                    depth -= 1
                pos = found.end()
        yield ScannedStatement(start, end, line, words)


def first_transaction_control(text: str) -> ScannedStatement | None:
    """The first top-level transaction-control statement of ``text``, or None."""
    if not _MAY_CONTROL.search(text):
        return None  # the common case: none of the words occurs at all, so no scan is needed
    return next((st for st in scan(text) if st.is_transaction_control), None)


_MAY_CONTROL = re.compile(r"(?<![\w$])(?i:begin|start|commit|end|rollback|abort|savepoint|release|prepare)(?![\w$])")


def statement_at(text: str, index: int) -> ScannedStatement | None:
    """The ``index``-th (0-based) statement of ``text``, or None when there are fewer."""
    for i, statement in enumerate(scan(text)):
        if i == index:
            return statement
    return None
