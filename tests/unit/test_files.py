"""Migration discovery: naming, ordering, checksums and the problems a directory can have."""

from pathlib import Path

import pytest

from poststack.errors import MigrationFileError, UsageError
from poststack.source.files import checksum_of, header_directives, load_migrations, parse_version


def write(directory: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (directory / name).write_bytes(data)
    return directory


def test_versions_compare_as_integers_and_keep_their_spelling(tmp_path):
    write(tmp_path, {"10_ten.sql": "SELECT 10;", "9_nine.sql": "SELECT 9;", "011_eleven.sql": "SELECT 11;"})
    migrations = load_migrations(tmp_path)
    assert [m.version for m in migrations] == [9, 10, 11]
    assert [m.version_text for m in migrations] == ["9", "10", "011"]
    assert migrations.problems == []


def test_rollback_files_pair_with_their_migration(tmp_path):
    write(tmp_path, {"001_a.sql": "CREATE TABLE a ();", "001_a.rollback.sql": "DROP TABLE a;",
                     "002_b.sql": "CREATE TABLE b ();"})
    a, b = load_migrations(tmp_path)
    assert a.rollback is not None and a.rollback.text == "DROP TABLE a;"
    assert b.rollback is None


def test_duplicate_versions_name_both_files(tmp_path):
    write(tmp_path, {"001_a.sql": "SELECT 1;", "1_b.sql": "SELECT 2;"})
    migrations = load_migrations(tmp_path)
    [problem] = migrations.problems
    assert problem.code == "duplicate_version"
    assert "001_a.sql" in problem.message and "1_b.sql" in problem.message
    with pytest.raises(MigrationFileError, match="duplicate migration version 1"):
        migrations.raise_for_problems()


@pytest.mark.parametrize("name", ["1-init.sql", "001_x.SQL", "001.sql", "abc.sql", "002_.sql"])
def test_files_that_look_like_migrations_are_reported(tmp_path, name):
    write(tmp_path, {name: "SELECT 1;"})
    [problem] = load_migrations(tmp_path).problems
    assert problem.code == "invalid_filename"
    assert name in problem.message


def test_unrelated_files_are_ignored(tmp_path):
    write(tmp_path, {"README.md": "hello", ".hidden.sql": "x", "001_a.sql": "SELECT 1;"})
    migrations = load_migrations(tmp_path)
    assert len(migrations) == 1 and migrations.problems == []


def test_rollback_without_migration_is_reported(tmp_path):
    write(tmp_path, {"003_gone.rollback.sql": "DROP TABLE gone;"})
    [problem] = load_migrations(tmp_path).problems
    assert problem.code == "orphan_rollback" and "003_gone.rollback.sql" in problem.message


def test_non_utf8_files_are_problems_naming_the_file_and_empty_ones_are_no_ops(tmp_path):
    write(tmp_path, {"001_empty.sql": "  \n", "002_latin1.sql": b"SELECT 'caf\xe9';"})
    found = load_migrations(tmp_path)
    problems = {p.code: p.message for p in found.problems}
    assert list(problems) == ["bad_encoding"]
    assert "002_latin1.sql: not valid UTF-8 (byte 0xe9" in problems["bad_encoding"]
    [empty] = found.migrations
    assert empty.version == 1 and empty.up.is_no_op


def test_checksum_ignores_bom_and_line_endings_but_not_content():
    base = checksum_of(b"CREATE TABLE a ();\nSELECT 1;\n")
    assert checksum_of(b"\xef\xbb\xbfCREATE TABLE a ();\r\nSELECT 1;\r\n") == base
    assert checksum_of(b"CREATE TABLE b ();\nSELECT 1;\n") != base


def test_semantic_checksum_ignores_comments_and_whitespace(tmp_path):
    write(tmp_path, {"001_a.sql": "CREATE TABLE a (id int);", "002_b.sql": "-- note\nCREATE   TABLE a (\n id int\n);",
                     "003_c.sql": "CREATE TABLE a (id bigint);"})
    a, b, c = load_migrations(tmp_path)
    assert a.checksum != b.checksum
    assert a.semantic_checksum == b.semantic_checksum
    assert a.semantic_checksum != c.semantic_checksum


def test_header_directives_are_read_from_leading_comments_only():
    text = "-- Description: add users\n-- poststack:no-transaction\nCREATE TABLE a ();\n-- Description: late\n"
    assert header_directives(text) == {"description": "add users", "poststack:no-transaction": ""}


def test_missing_directory_names_the_option(tmp_path):
    with pytest.raises(MigrationFileError, match=r"does not exist \(--migrations-path\)"):
        load_migrations(tmp_path / "nope")


@pytest.mark.parametrize(("text", "expected"), [("002", 2), ("2", 2), (" 10 ", 10), ("0", 0)])
def test_parse_version_accepts_any_spelling(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["-1", "abc", "1.5", ""])
def test_parse_version_rejects_non_versions_naming_the_option(text):
    with pytest.raises(UsageError, match="--target"):
        parse_version(text)


def test_semantic_checksum_is_position_free_even_for_the_first_statement():
    from poststack.source.sqltext import semantic_checksum

    plain = "CREATE TABLE a (id int, s text DEFAULT 'x,}');"
    commented = "-- header\n\nCREATE   TABLE a (\n  id int,\n  s text DEFAULT 'x,}' -- note\n);"
    assert semantic_checksum(plain) == semantic_checksum(commented)
    assert semantic_checksum(plain) != semantic_checksum("CREATE TABLE a (id int, s text DEFAULT 'x}');")
    assert semantic_checksum("CREATE TABLE a (;") is None
