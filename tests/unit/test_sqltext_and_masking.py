"""Statement splitting with lines, and password masking: pure functions users never see fail."""

import pytest

from poststack.db.connection import mask_url, scrub, with_database
from poststack.source.sqltext import SqlSyntaxError, split_statements


def test_split_keeps_dollar_quoted_bodies_and_reports_lines():
    sql = "-- header\nCREATE TABLE a (id int);\n\nCREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n" \
          "  RETURN 1; -- ; inside\nEND $$;\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"
    statements = split_statements(sql)
    assert [(s.kind, s.line) for s in statements] == [("CreateStmt", 2), ("CreateFunctionStmt", 4),
                                                       ("IndexStmt", 8)]
    assert statements[1].text.endswith("END $$")


def test_syntax_error_reports_the_line():
    with pytest.raises(SqlSyntaxError) as info:
        split_statements("SELECT 1;\n\nCREATE TABEL x ();")
    assert info.value.line == 3
    assert "syntax error" in info.value.message


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://bob:s3cret@db:5432/app", "postgresql://bob:***@db:5432/app"),
    ("postgresql://bob@db/app", "postgresql://bob@db/app"),
    ("postgresql://db/app?password=s3cret&sslmode=require", "postgresql://db/app?password=***&sslmode=require"),
    ("host=db password=s3cret user=bob", "host=db password=*** user=bob"),
    ("host=db password='a b c' user=bob", "host=db password=*** user=bob"),
])
def test_mask_url_hides_every_password_form(url, masked):
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url)


def test_scrub_removes_the_password_from_driver_messages():
    url = "postgresql://bob:hunter2@db/app"
    assert scrub('failed for "hunter2"\n  detail', url) == 'failed for "***" detail'


def test_with_database_keeps_url_form_and_quotes_names():
    assert with_database("postgresql://u:p@h:5/old?sslmode=require", "new db") == \
        "postgresql://u:p@h:5/new%20db?sslmode=require"
    assert "dbname=other" in with_database("host=h user=u dbname=old", "other")
