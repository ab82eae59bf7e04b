"""Semantic checksums against the history (issue 10, item 12): comment edits stay cosmetic, old rows included."""

import psycopg
import pytest

from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration]

FUNCTION = ("-- Description: keep updated_at current\n"
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n")
FILES = {"001_touch.sql": FUNCTION, "002_t.sql": "CREATE TABLE t (id int);\n"}


def codes(database_url, directory) -> list[tuple[str, int | None]]:
    return [(i.code, i.version) for i in MigrationDiagnostics(database_url, directory).diagnose().issues
            if i.code != "rollback_missing"]


def test_a_comment_above_the_description_of_a_function_file_is_cosmetic_and_migrate_goes_on(
        make_migrations, database_url):
    directory = make_migrations({"001_touch.sql": FUNCTION})
    runner = MigrationRunner(database_url, directory)
    runner.migrate()
    (directory / "001_touch.sql").write_text("-- reviewed 2026-11\n" + FUNCTION)
    (directory / "002_t.sql").write_text(FILES["002_t.sql"])
    assert codes(database_url, directory) == [("cosmetic_change", 1)]
    result = runner.migrate()
    assert [s.version for s in result.steps] == [2]
    assert any("cosmetic" in w for w in result.warnings)


def test_a_row_with_a_semantic_checksum_of_an_older_algorithm_is_judged_by_its_stored_sql(
        make_migrations, database_url):
    directory = make_migrations(FILES)
    MigrationRunner(database_url, directory).migrate()
    with psycopg.connect(database_url, autocommit=True) as conn:  # what an older poststack stored
        conn.execute("UPDATE poststack.migrations SET semantic_checksum = repeat('a', 64)")
    (directory / "001_touch.sql").write_text("-- a note\n" + FUNCTION)
    (directory / "002_t.sql").write_text("CREATE TABLE t (id bigint);\n")
    assert sorted(codes(database_url, directory)) == [("checksum_mismatch", 2), ("cosmetic_change", 1)]
