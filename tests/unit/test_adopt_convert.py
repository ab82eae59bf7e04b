"""Pure conversion of other tools' layouts into poststack files: numbering, names, bodies, flags."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poststack.adopt import dbmate, flyway, sqitch, yoyo
from poststack.adopt.convert import KEPT, RENUMBERED, convert, numbering, prepare_body, safe_name
from poststack.adopt.model import Layout, NoteKind, SourceMigration
from poststack.errors import MigrationFileError
from poststack.source.files import MIGRATION_NAME, load_migrations


def source(version: str, name: str = "x", up: str = "SELECT 1;\n", **kw: object) -> SourceMigration:
    return SourceMigration(version, version, name, f"{version}_{name}.sql", up, **kw)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=8, unique=True),
       st.text(string.printable, min_size=1, max_size=12))
def test_any_versions_load_back_in_the_tools_order(tmp_path_factory, versions, name):
    """Kept or renumbered, poststack reads the written files in exactly the tool's order."""
    layout = Layout("dbmate", tmp_path_factory.mktemp("src"),
                    [source(str(v), f"{name}{i}", f"CREATE TABLE t{i} (id int);\n") for i, v in enumerate(versions)])
    conversion = convert(layout)
    target = tmp_path_factory.mktemp("out")
    for c in conversion.files:
        (target / c.filename).write_text(c.text)
    loaded = load_migrations(target)
    assert loaded.problems == []
    assert [m.sql for m in loaded] == [c.text for c in conversion.files]
    assert [f"t{i} " in m.sql for i, m in enumerate(loaded)] == [True] * len(versions)
    expected = KEPT if versions == sorted(versions) else RENUMBERED
    assert conversion.numbering == expected
    if expected == RENUMBERED:  # the original version stays visible
        assert all(m.name.startswith(f"{v}__") for m, v in zip(loaded, versions, strict=True))


@given(st.text(min_size=0, max_size=30))
def test_safe_name_always_makes_a_migration_file_name(text):
    match = MIGRATION_NAME.fullmatch(f"001_{safe_name(text)}.sql")
    assert match is not None and not match["rollback"]


def test_numbering_rules():
    assert numbering([source("001"), source("002"), source("10")])[0] == KEPT
    assert numbering([source("00000000000000"), source("20240101")])[0] == RENUMBERED  # 0 is no version
    assert numbering([source("1.1")])[0] == RENUMBERED
    assert numbering([source("9"), source("10")])[0] == KEPT
    assert numbering([source("20"), source("3")])[0] == RENUMBERED  # name order is not numeric order


def test_transaction_wrapper_is_removed_and_other_control_reported():
    m = source("1")
    text, no_tx, notes = prepare_body("-- deploy\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n", m, "a.sql", False)
    assert "BEGIN" not in text and "COMMIT" not in text and "CREATE TABLE a" in text and not no_tx
    assert [n.kind for n in notes] == [NoteKind.INFO]
    _, _, notes = prepare_body("CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\n", m, "a.sql", False)
    assert [n.kind for n in notes] == [NoteKind.NEEDS_EDIT]
    text, _, notes = prepare_body("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;\n", m, "a.sql", False)
    assert "SERIALIZABLE" in text and notes[0].kind == NoteKind.NEEDS_EDIT  # not ours to drop
    text, _, _ = prepare_body("BEGIN;\nSAVEPOINT s;\nSELECT 1;\nRELEASE s;\nCOMMIT;\n", m, "a.sql", False)
    assert "SAVEPOINT s" in text and "BEGIN" not in text


@pytest.mark.parametrize("statement", ["CREATE INDEX CONCURRENTLY i ON t (a)", "DROP INDEX CONCURRENTLY i",
                                       "REINDEX INDEX CONCURRENTLY i", "VACUUM t"])
def test_statements_outside_transactions_make_the_file_no_transaction(statement):
    text, no_tx, _ = prepare_body(statement + ";\n", source("1"), "a.sql", False)
    assert no_tx and "-- poststack:no-transaction" in text.splitlines()[:3]


def test_analyze_and_plain_index_stay_transactional():
    for statement in ("ANALYZE t;\n", "CREATE INDEX i ON t (a);\n"):
        assert prepare_body(statement, source("1"), "a.sql", False)[1] is False


def test_multi_statement_flagged_file_of_a_single_query_tool_is_reported():
    m = source("1", single_query=True)
    _, _, notes = prepare_body("CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n", m, "a.sql", True)
    assert [n.kind for n in notes] == [NoteKind.CHANGED_SEMANTICS]
    _, _, notes = prepare_body("CREATE TABLE a (id int);\n", m, "a.sql", True)
    assert notes == []
    _, no_tx, notes = prepare_body("CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY i ON a (id);\n", m, "a.sql",
                                   False)  # golang-migrate: no flag, but it cannot have run in one transaction
    assert no_tx and [n.kind for n in notes] == [NoteKind.INFO, NoteKind.CHANGED_SEMANTICS]


def test_empty_bodies_become_comment_only_no_ops():
    for body in ("", "\n\n", "-- nothing\n"):
        text, _, _ = prepare_body(body, source("1"), "a.sql", False)
        assert all(line.startswith("--") for line in text.splitlines() if line.strip())
        assert "no-op" in text


def test_dbmate_sections():
    up, up_no_tx, down, down_no_tx = dbmate.sections(
        "-- header dropped\n-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
        "-- migrate:down\nDROP INDEX i;\n", "f.sql")
    assert (up, up_no_tx, down, down_no_tx) == ("CREATE INDEX CONCURRENTLY i ON t (a);\n", True,
                                                "DROP INDEX i;\n", False)
    assert dbmate.sections("-- migrate:up\nSELECT 1;\n", "f.sql")[2] is None
    with pytest.raises(MigrationFileError, match=r"f\.sql"):
        dbmate.sections("SELECT 1;\n", "f.sql")


def test_flyway_versions_compare_by_parts(tmp_path):
    assert flyway.version_key("1_0") == flyway.version_key("1.0") == flyway.version_key("1") == "1"
    for name in ("V1.10__c.sql", "V1.2__b.sql", "V1__a.sql", "R__view.sql", "V2__d.sql.conf", "Callback.java"):
        (tmp_path / name).write_text("executeInTransaction=false\n" if name.endswith(".conf") else "SELECT 1;\n")
    (tmp_path / "V2__d.sql").write_text("SELECT 1;\n")
    layout = flyway.read_layout(tmp_path)
    assert [m.version for m in layout.migrations] == ["1", "1.2", "1.10", "2"]
    assert [m.no_transaction for m in layout.migrations] == [False, False, False, True]
    assert sorted(n.path for n in layout.notes) == ["Callback.java", "R__view.sql"]
    (tmp_path / "V1.0__again.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationFileError, match="two migrations with version 1"):
        flyway.read_layout(tmp_path)


def test_flyway_checksum_ignores_line_break_style():
    """CRC32 of the lines without their breaks, signed: LF, CRLF and CR files agree, a final break is no line."""
    import zlib

    expected = zlib.crc32(b"SELECT 1;SELECT 2;")
    expected -= (1 << 32) if expected >= 1 << 31 else 0
    assert {flyway.checksum(t) for t in ("SELECT 1;\nSELECT 2;\n", "SELECT 1;\r\nSELECT 2;", "SELECT 1;\rSELECT 2;\r",
                                         "\ufeffSELECT 1;\nSELECT 2;")} == {expected}
    assert -(1 << 31) <= flyway.checksum("x" * 100) < 1 << 31


def test_sqitch_reworked_change_uses_the_tagged_scripts(tmp_path):
    (tmp_path / "sqitch.plan").write_text(
        "%project=p\nf 2024-01-01T00:00:00Z A <a@x> # one\n@v1 2024-01-02T00:00:00Z A <a@x>\n"
        "f [f@v1] 2024-01-03T00:00:00Z A <a@x> # reworked\n")
    for name in ("f@v1", "f"):
        (tmp_path / "deploy").mkdir(exist_ok=True)
        (tmp_path / "deploy" / f"{name}.sql").write_text(f"-- {name}\nSELECT 1;\n")
    layout = sqitch.read_layout(tmp_path)
    assert [(m.key, m.path, m.planned_at) for m in layout.migrations] == [
        ("f@v1", "deploy/f@v1.sql", "2024-01-01T00:00:00Z"), ("f", "deploy/f.sql", "2024-01-03T00:00:00Z")]
    assert layout.project == "p"


def test_sqitch_conf_moves_the_plan_and_scripts(tmp_path):
    (tmp_path / "sqitch.conf").write_text('[core]\n\tengine = pg\n\ttop_dir = db\n[engine "pg"]\n\ttop_dir = no\n')
    (tmp_path / "db" / "deploy").mkdir(parents=True)
    (tmp_path / "db" / "sqitch.plan").write_text("%project=p\na [!b other:c] 2024-01-01T00:00:00Z A <a@x>\n")
    (tmp_path / "db" / "deploy" / "a.sql").write_text("SELECT 1;\n")
    layout = sqitch.read_layout(tmp_path)
    assert [m.path for m in layout.migrations] == ["db/deploy/a.sql"]
    assert [(n.kind, n.path) for n in layout.migrations[0].notes] == [(NoteKind.NOT_CARRIED, "db/deploy/a.sql")]


def test_yoyo_dependencies_move_a_migration_after_what_it_needs(tmp_path):
    (tmp_path / "a.sql").write_text("-- depends: b\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- transactional: false\nSELECT 2;\n")
    layout = yoyo.read_layout(tmp_path)
    assert [(m.key, m.no_transaction) for m in layout.migrations] == [("b", True), ("a", False)]
