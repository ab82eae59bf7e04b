"""The streaming scan agrees with PostgreSQL's own parser (pglast) on where statements are and which of them
are transaction control, whatever quotes, comments and function bodies hide a ';' or a COMMIT."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from poststack.source.files import transaction_control
from poststack.source.sqltext import split_statements
from poststack.source.txscan import first_transaction_control, scan

PLAIN = [
    "SELECT 1",
    "CREATE TABLE t (a int, b text)",
    "SELECT 'a;b COMMIT' AS x",
    "SELECT 'it''s; ROLLBACK'",
    "SELECT E'x\\'; COMMIT; \\\\'",
    "SELECT e'\\\\'",
    "SELECT $$; ROLLBACK; $$",
    "SELECT $tag$ $$ ; COMMIT $tag$",
    'SELECT 1 AS "we;ird""COMMIT"',
    "SELECT 1 /* ; /* nested COMMIT; */ still ; */ + 1",
    "SELECT 1 -- ; COMMIT\n + 2",
    "SELECT a$b$c FROM (SELECT 1 AS a$b$c) s",
    "PREPARE q AS SELECT $1::int",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
    "CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $body$ BEGIN COMMIT; END $body$",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SELECT U&'d\\0061t\\+000061; COMMIT'",
    "INSERT INTO t (b) VALUES ('end'), ('begin')",
]
CONTROL = ["BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT", "SAVEPOINT s", "RELEASE s", "RELEASE SAVEPOINT s",
           "ROLLBACK TO SAVEPOINT s", "START TRANSACTION", "BEGIN ISOLATION LEVEL SERIALIZABLE",
           "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'", "COMMIT AND CHAIN"]
SEPARATORS = [";\n", " ; ", ";-- a comment; COMMIT\n", ";/* COMMIT; */\n", ";\n\n;\n", ";"]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(PLAIN + CONTROL), st.sampled_from(SEPARATORS)), min_size=1,
                max_size=8),
       st.sampled_from(["", "-- header\n", "/* lead */ ", "\n\n"]))
def test_the_scan_finds_the_statements_and_the_transaction_control_the_parser_finds(parts, lead) -> None:
    text = lead + "".join(statement + separator for statement, separator in parts)
    parsed = split_statements(text)
    scanned = list(scan(text))
    assert [s.line for s in scanned] == [s.line for s in parsed]
    assert [s.text(text) for s in scanned] == [s.text for s in parsed]
    assert [s.is_transaction_control for s in scanned] == [s.kind == "TransactionStmt" for s in parsed]


def test_a_data_load_of_several_mebibytes_is_scanned_to_its_end() -> None:
    rows = "".join(f"INSERT INTO big VALUES ({i}, 'row {i}; COMMIT', $${i}; ROLLBACK$$);\n" for i in range(60_000))
    text = f"CREATE TABLE big (id int, a text, b text);\n{rows}ROLLBACK;\n"
    assert len(text) > 4 << 20
    found = transaction_control(text)
    assert found is not None and found.line == 60_002 and found.text == "ROLLBACK"


def test_unterminated_quotes_and_comments_end_the_text_without_error() -> None:
    for text in ("SELECT 'open; COMMIT", "SELECT $x$ open; COMMIT", "SELECT /* open; COMMIT", 'SELECT "x; COMMIT'):
        assert first_transaction_control(text) is None
        assert len(list(scan(text))) == 1
