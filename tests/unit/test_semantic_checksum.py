"""The semantic checksum as a property (issue 10, item 12): position-free, yet sensitive to every real edit.

Over real-looking files (the shipped scenarios, the examples, and generated SQL): a comment or whitespace
inserted between any two tokens never changes the semantic checksum; a changed literal, identifier or
keyword always does. Tokens come from PostgreSQL's own scanner (pglast), so "between two tokens" means what
the server means by it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import pglast.ast
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pglast import parser

from poststack.source.files import SqlFile, same_meaning
from poststack.source.sqltext import POSITION_KEYS, semantic_checksum

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIRS = (ROOT / "src" / "poststack" / "testing" / "scenarios", ROOT / "examples")
COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})
# Keyword replacements that keep a statement parseable where they apply, and always change what it means.
KEYWORD_SWAPS = {"asc": "DESC", "desc": "ASC", "true": "false", "false": "true", "cascade": "RESTRICT",
                 "restrict": "CASCADE", "before": "AFTER", "after": "BEFORE", "and": "OR", "or": "AND",
                 "int": "bigint", "integer": "bigint", "bigint": "smallint", "smallint": "bigint",
                 "left": "RIGHT", "inner": "LEFT", "union": "INTERSECT", "varchar": "char", "first": "LAST",
                 "last": "FIRST", "unlogged": "TEMPORARY", "row": "STATEMENT", "statement": "ROW",
                 "immutable": "VOLATILE", "stable": "IMMUTABLE", "volatile": "STABLE", "timestamp": "date",
                 "numeric": "real", "boolean": "bigint", "real": "numeric"}


@cache
def corpus() -> tuple[str, ...]:
    texts = [SqlFile.read(path).text for directory in CORPUS_DIRS for path in sorted(directory.rglob("*.sql"))]
    return tuple(t for t in texts if semantic_checksum(t) is not None)


def tokens(text: str) -> list[parser.Token]:
    return [t for t in parser.scan(text) if t.name not in COMMENT_TOKENS]


# -- generated SQL: what migrations are made of, with drawn names and literals -------------------------------
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"all", "and", "as", "do", "end", "for", "from", "in", "is", "on", "or", "to"})
types = st.sampled_from(["int", "bigint", "text", "varchar(40)", "numeric(10, 2)", "boolean", "timestamptz"])
literals = st.one_of(st.integers(-10**6, 10**6).map(str),
                     st.text("abc xyz'", max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'"))


@st.composite
def generated_sql(draw: st.DrawFn) -> str:
    table, column, other = draw(names), draw(names), draw(names)
    assume(len({table, column, other}) == 3)
    statements = [
        f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {column} {draw(types)} "
        f"NOT NULL DEFAULT {draw(literals)}, {other} text CHECK ({other} IN ({draw(literals)}, {draw(literals)})))",
        f"CREATE INDEX {table}_{column}_idx ON {table} ({column} DESC NULLS LAST) WHERE {column} IS NOT NULL",
        f"CREATE FUNCTION {table}_f(a int DEFAULT {draw(st.integers(0, 99))}) RETURNS int LANGUAGE sql "
        f"IMMUTABLE AS $$ SELECT a + {draw(st.integers(0, 99))} $$",
        f"ALTER TABLE {table} ADD COLUMN {other}_2 int[] DEFAULT ARRAY[{draw(st.integers(0, 9))}, 2]",
        f"INSERT INTO {table} ({column}, {other}) VALUES ({draw(literals)}, {draw(literals)})",
        f"COMMENT ON TABLE {table} IS {draw(literals)}",
        f"CREATE VIEW {table}_v AS SELECT {column}, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1 ASC",
    ]
    chosen = draw(st.lists(st.sampled_from(statements), min_size=1, max_size=4, unique=True))
    return ";\n".join(chosen) + ";\n"


sql_texts = st.one_of(st.sampled_from(corpus()), generated_sql())
fillers = st.one_of(
    st.text(" \t\n", min_size=1, max_size=4),
    st.text("abc 123,;'\"$-", max_size=12).map(lambda s: f" /* {s} */ "),
    st.text("abc 123,;'\"$*/", max_size=12).map(lambda s: f" -- {s}\n"),
)


# -- the properties -------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=sql_texts, where=st.integers(min_value=0), filler=fillers)
def test_a_comment_or_whitespace_between_any_two_tokens_never_changes_it(text: str, where: int,
                                                                         filler: str) -> None:
    boundaries = [0, *(t.end + 1 for t in tokens(text))]
    at = boundaries[where % len(boundaries)]
    edited = text[:at] + filler + text[at:]
    assert semantic_checksum(edited) == semantic_checksum(text), (at, filler)


def mutated(text: str, token: parser.Token) -> str | None:
    """The text with one literal, identifier or keyword changed in meaning, or None for other tokens."""
    word = text[token.start:token.end + 1]
    if token.name == "ICONST":
        replacement = str(int(word) + 1) if word.isdigit() else None
    elif token.name == "FCONST":
        replacement = word + "1" if "e" not in word.lower() else None
    elif token.name == "SCONST":
        opening = word.index("$", 1) + 1 if word.startswith("$") else word.index("'") + 1
        replacement = word[:opening] + "z" + word[opening:]
    elif token.name == "IDENT":
        replacement = word[:-1] + 'z"' if word.startswith('"') else word + "z"
    elif token.kind != "NO_KEYWORD" and word.lower() in KEYWORD_SWAPS:
        replacement = KEYWORD_SWAPS[word.lower()]
    else:
        replacement = None
    return None if replacement is None else text[:token.start] + replacement + text[token.end + 1:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=sql_texts, which=st.integers(min_value=0))
def test_a_changed_literal_identifier_or_keyword_always_changes_it(text: str, which: int) -> None:
    candidates = [t for t in tokens(text) if mutated(text, t) is not None]
    assume(candidates)
    token = candidates[which % len(candidates)]
    edited = mutated(text, token)
    assert edited is not None
    after = semantic_checksum(edited)
    assume(after is not None)  # e.g. a keyword swap the grammar does not allow there
    assert after != semantic_checksum(text), text[token.start:token.end + 1]


# -- the concrete cases behind the issue -------------------------------------------------------------------
FUNCTION_FILE = ("-- Description: touch\nCREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                 "BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n")


def test_a_comment_above_the_description_of_a_function_file_is_cosmetic() -> None:
    # The old checksum kept DefElem.arg_location (where the body starts): this edit was a checksum_mismatch.
    assert semantic_checksum("-- a note\n" + FUNCTION_FILE) == semantic_checksum(FUNCTION_FILE)
    assert semantic_checksum(FUNCTION_FILE.replace("now()", "clock_timestamp()")) != semantic_checksum(FUNCTION_FILE)


def test_in_lists_and_arrays_are_position_free() -> None:
    base = "SELECT 1 WHERE 2 IN (1, 2) AND ARRAY[1, 2] = '{1,2}';"
    assert semantic_checksum(base.replace("(1, 2)", "(\n  1,\n  2\n)").replace("ARRAY[", "ARRAY [")) == \
        semantic_checksum(base)


def test_a_tablespace_location_is_meaning_not_position() -> None:
    # CreateTableSpaceStmt.location is a directory: a string, which the position filter never touches.
    a = semantic_checksum("CREATE TABLESPACE t LOCATION '/srv/a';")
    assert a is not None and a != semantic_checksum("CREATE TABLESPACE t LOCATION '/srv/b';")


def test_every_position_field_pglast_declares_is_removed() -> None:
    declared = {name for node in vars(pglast.ast).values() if isinstance(getattr(node, "__slots__", None), dict)
                for name, slot in node.__slots__.items() if getattr(slot, "c_type", None) == "ParseLoc"}
    assert declared, "pglast no longer declares ParseLoc fields: check POSITION_KEYS by hand"
    assert declared <= set(POSITION_KEYS), sorted(declared - set(POSITION_KEYS))


@pytest.mark.parametrize("text", corpus()[:5])
def test_stored_text_is_judged_with_the_current_algorithm(tmp_path: Path, text: str) -> None:
    # A row recorded by an older poststack carries an old-algorithm semantic checksum; the recorded text
    # (verified by its byte checksum) is what gets compared, so the stale value cannot cause a false alarm.
    path = tmp_path / "001_x.sql"
    path.write_text("-- edited later\n" + text)
    current = SqlFile.read(path)
    recorded_checksum = hashlib.sha256(text.encode()).hexdigest()
    assert same_meaning(text, recorded_checksum, "0" * 64, current)
    # A text that does not hash to the recorded checksum is not evidence: the stored value decides.
    assert not same_meaning(text, "f" * 64, "0" * 64, current)
    assert same_meaning(text, "f" * 64, current.semantic_checksum, current)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=sql_texts, where=st.integers(min_value=0), filler=fillers, which=st.integers(min_value=0))
def test_both_properties_at_scale(text: str, where: int, filler: str, which: int) -> None:
    """The two properties with many more examples (``--run-slow``)."""
    test_a_comment_or_whitespace_between_any_two_tokens_never_changes_it.hypothesis.inner_test(text, where, filler)
    candidates = [t for t in tokens(text) if mutated(text, t) is not None]
    if candidates:
        edited = mutated(text, candidates[which % len(candidates)])
        after = semantic_checksum(edited) if edited is not None else None
        if after is not None:
            assert after != semantic_checksum(text)
