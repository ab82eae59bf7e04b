"""Which texts are no-op migrations: only whitespace, comments and semicolons (no database)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poststack.source.files import is_no_op_sql
from poststack.source.sqltext import split_statements

NO_OPS = ["", " \n\t\r\n", "-- intentionally empty\n", "-- no newline at the end", "/* block */",
          "/* outer /* nested */ still comment */", ";\n;", "-- a\n/* b */\n;\n-- c"]
STATEMENTS = ["SELECT 1", "-- c\nSELECT 1;", "/* c */ CREATE TABLE t ();", "/* a /* b */ */ x",
              "/* unterminated", "'-- not a comment'", "--c\n/**/;DROP TABLE t;"]

_pieces = st.one_of(
    st.sampled_from([" ", "\n", "\t", ";"]),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=20)
      .map(lambda t: f"--{t}\n"),
    st.text(alphabet="abc */-'\n", max_size=20).filter(lambda t: "*/" not in t and "/*" not in t)
      .filter(lambda t: not t.endswith(("*", "/"))).map(lambda t: f"/*{t}*/"),
)


@pytest.mark.parametrize("text", NO_OPS)
def test_no_op_texts(text):
    assert is_no_op_sql(text)
    assert split_statements(text) == []  # PostgreSQL's parser agrees: not one statement


@pytest.mark.parametrize("text", STATEMENTS)
def test_texts_with_a_statement_or_an_error_are_not_no_ops(text):
    assert not is_no_op_sql(text)


@given(st.lists(_pieces, max_size=8).map("".join))
def test_any_mix_of_comments_and_whitespace_is_a_no_op_and_the_parser_agrees(text):
    assert is_no_op_sql(text)
    assert split_statements(text) == []
    assert not is_no_op_sql(text + "SELECT 1")
