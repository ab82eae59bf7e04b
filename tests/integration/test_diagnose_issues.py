"""Each diagnose issue, created for real on PostgreSQL: found exactly, fixed, and gone on the next diagnose."""

from pathlib import Path

import psycopg
import pytest

from poststack.errors import MigrationFailed
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner

pytestmark = [pytest.mark.integration, pytest.mark.database]

FILES = {
    "001_users.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
    "001_users.rollback.sql": "DROP TABLE users;\n",
    "002_posts.sql": "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users);\n"
                     "CREATE INDEX posts_user_idx ON posts (user_id);\n",
    "002_posts.rollback.sql": "DROP TABLE posts;\n",
    "003_tags.sql": "CREATE TABLE tags (id int PRIMARY KEY, name text NOT NULL);\n",
    "003_tags.rollback.sql": "DROP TABLE tags;\n",
}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def found(diag: MigrationDiagnostics, severity: str = "info") -> list[tuple[str, int | None]]:
    return [(i.code, i.version) for i in diag.diagnose().filtered(severity).issues]


def execute(url: str, text: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(text.encode())


def history(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('poststack.migrations')").fetchone()[0] is None:
            return []
        return conn.execute("SELECT version, status, source, checksum FROM poststack.migrations "
                            "ORDER BY version").fetchall()


def audit(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT command, action, version, reason FROM poststack.audit_log ORDER BY id").fetchall()


@pytest.fixture
def project(tmp_path, database_url):
    directory = write(tmp_path / "migrations", FILES)
    return directory, MigrationRunner(database_url, directory), MigrationDiagnostics(database_url, directory)


def test_fresh_database_with_pending_migrations_has_no_issue(project):
    _, _, diag = project
    result = diag.diagnose()
    assert result.issues == []
    assert result.summary.history_exists is False and result.summary.pending == 3


def test_fully_migrated_database_has_no_issue(project):
    _, runner, diag = project
    runner.migrate()
    result = diag.diagnose()
    assert result.issues == [] and result.summary.applied == 3 and result.summary.current_version == "003"


def test_missing_tracking_found_and_recorded_by_repair(project, database_url):
    _directory, runner, diag = project
    execute(database_url, FILES["001_users.sql"])  # applied by another tool: objects, no history row
    result = diag.diagnose()
    assert [(i.code, i.version) for i in result.issues] == [("missing_tracking", 1)]
    assert any("users" in line for line in result.issues[0].evidence)
    fixed = diag.repair(result.issues)
    assert [(a.code, a.version) for a in fixed.fixed] == [("missing_tracking", 1)]
    assert [(v, s, src) for v, s, src, _ in history(database_url)] == [(1, "applied", "recover")]
    assert found(diag) == []
    runner.migrate()  # 002 and 003 run on top: the recorded 001 is not re-run
    assert [v for v, *_ in history(database_url)] == [1, 2, 3]


def test_partially_applied_is_reported_object_by_object_and_never_recorded(project, database_url):
    _, runner, diag = project
    runner.migrate(1)
    execute(database_url, "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users)")
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("partially_applied", 2, "critical")]
    assert result.issues[0].evidence == ["catalog lies between the states after 001 and after 002",
                                         "done: table public.posts: created",
                                         "not done: index public.posts_user_idx: not created"]
    repaired = diag.repair(result.issues, force=True)
    assert repaired.fixed == [] and [s.code for s in repaired.skipped] == ["partially_applied"]
    assert [v for v, *_ in history(database_url)] == [1]
    execute(database_url, "DROP TABLE posts")  # undone by hand: 002 is simply pending again
    assert found(diag) == []


def test_checksum_mismatch_needs_force_shows_the_diff_and_is_audited(project, database_url):
    directory, runner, diag = project
    runner.migrate()
    (directory / "003_tags.sql").write_text("CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);\n")
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("checksum_mismatch", 3, "high")]
    before = history(database_url)
    refused = diag.repair(result.issues)
    assert refused.fixed == [] and refused.skipped[0].code == "checksum_mismatch"
    assert "-CREATE TABLE tags (id int PRIMARY KEY, name text NOT NULL);" in refused.skipped[0].details
    assert "+CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);" in refused.skipped[0].details
    assert history(database_url) == before
    forced = diag.repair(result.issues, force=True)
    assert [(a.code, a.action) for a in forced.fixed] == [("checksum_mismatch", "rechecksum")]
    assert found(diag) == []
    entry = audit(database_url)[-1]
    assert entry[:3] == ("repair", "rechecksum", 3) and "+CREATE TABLE tags (id bigint" in entry[3]


def test_cosmetic_change_is_low_and_rechecksummed_without_force(project, database_url):
    directory, runner, diag = project
    runner.migrate()
    (directory / "001_users.sql").write_text("-- the users\nCREATE TABLE users (\n  id int PRIMARY KEY,\n"
                                             "  email text\n);\n")
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("cosmetic_change", 1, "low")]
    assert [a.action for a in diag.repair(result.issues).fixed] == ["rechecksum"]
    assert found(diag) == []
    assert audit(database_url)[-1][:3] == ("repair", "rechecksum", 1)


def test_missing_file_is_restored_byte_for_byte_from_the_history(project, database_url):
    directory, runner, diag = project
    runner.migrate()
    original = (directory / "002_posts.sql").read_bytes()
    (directory / "002_posts.sql").unlink()
    (directory / "002_posts.rollback.sql").unlink()
    result = diag.diagnose()
    assert [(i.code, i.version) for i in result.issues] == [("missing_file", 2)]
    assert [a.action for a in diag.repair(result.issues).fixed] == ["restore_file"]
    assert (directory / "002_posts.sql").read_bytes() == original
    assert (directory / "002_posts.rollback.sql").read_text() == FILES["002_posts.rollback.sql"]
    assert found(diag) == []
    assert audit(database_url)[-1][:3] == ("repair", "restore_file", 2)


def test_rollback_missing_is_info_and_hidden_at_the_default_threshold(project):
    directory, _runner, diag = project
    (directory / "003_tags.rollback.sql").unlink()
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("rollback_missing", 3, "info")]
    assert result.filtered("low").issues == []
    (directory / "003_tags.rollback.sql").write_text("DROP TABLE tags;\n")
    assert found(diag) == []


def test_out_of_order_pending_version(project, database_url, tmp_path):
    directory, runner, diag = project
    (directory / "002_posts.sql").rename(tmp_path / "002_posts.sql")
    (directory / "002_posts.rollback.sql").unlink()
    runner.migrate()
    (tmp_path / "002_posts.sql").rename(directory / "002_posts.sql")
    (directory / "002_posts.rollback.sql").write_text("DROP TABLE posts;\n")
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("out_of_order", 2, "medium")]
    assert "--allow-out-of-order" in result.issues[0].fix
    runner.migrate(allow_out_of_order=True)
    assert found(diag) == []


def test_duplicate_version_and_invalid_filenames(project):
    directory, _, diag = project
    (directory / "002_other.sql").write_text("CREATE TABLE other (id int);\n")
    (directory / "4-bad.sql").write_text("CREATE TABLE bad (id int);\n")
    (directory / "005_orphan.rollback.sql").write_text("DROP TABLE nothing;\n")
    result = diag.diagnose()
    codes = sorted((i.code, i.version or 0) for i in result.issues)
    assert codes == [("duplicate_version", 2), ("invalid_filename", 0), ("invalid_filename", 5)]
    assert any("002_other.sql" in i.message and "002_posts.sql" in i.message for i in result.of("duplicate_version"))
    (directory / "002_other.sql").rename(directory / "004_other.sql")
    (directory / "004_other.rollback.sql").write_text("DROP TABLE other;\n")
    (directory / "4-bad.sql").unlink()
    (directory / "005_orphan.rollback.sql").unlink()
    assert found(diag) == []


def test_failed_concurrent_index_leaves_failed_row_and_invalid_index(tmp_path, database_url):
    files = {
        "001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);\n",
        "001_t.rollback.sql": "DROP TABLE t;\n",
        "002_t_unique.sql": "-- poststack:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n",
        "002_t_unique.rollback.sql": "DROP INDEX t_v_key;\n",
    }
    directory = write(tmp_path / "m", files)
    runner, diag = MigrationRunner(database_url, directory), MigrationDiagnostics(database_url, directory)
    with pytest.raises(MigrationFailed):
        runner.migrate()
    result = diag.diagnose()
    assert sorted((i.code, i.version, i.severity) for i in result.issues) == [
        ("failed_migration", 2, "critical"), ("invalid_index", 2, "high")]
    assert any("public.t_v_key" in line and "indisvalid = false" in line
               for line in result.of("invalid_index")[0].evidence)
    unforced = diag.repair(result.issues)
    assert unforced.fixed == [] and all("--force" in s.reason for s in unforced.skipped)
    execute(database_url, "DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")  # fix the data
    forced = diag.repair(result.issues, force=True)
    assert [(a.code, a.action) for a in forced.fixed] == [("failed_migration", "retry")]
    assert [v for v, *_ in history(database_url)] == [1]
    assert audit(database_url)[-1][:3] == ("repair", "retry", 2)
    assert found(diag) == []  # 002 is pending again, its index is gone
    runner.migrate()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v_key'::regclass").fetchone()[0]
    assert found(diag) == []


def test_schema_drift_shows_the_change_made_by_hand(project, database_url):
    _, runner, diag = project
    runner.migrate()  # records the snapshot drift is measured against
    execute(database_url, "CREATE INDEX users_email_idx ON users (email); ALTER TABLE tags ADD COLUMN color text")
    result = diag.diagnose()
    assert [(i.code, i.severity) for i in result.issues] == [("schema_drift", "medium")]
    evidence = result.issues[0].evidence
    assert "index public.users_email_idx: created outside poststack" in evidence
    assert "column public.tags.color: created outside poststack" in evidence
    assert diag.repair(result.issues).fixed == []  # never automatic: a human decides
    execute(database_url, "DROP INDEX users_email_idx; ALTER TABLE tags DROP COLUMN color")
    assert found(diag) == []


def test_hand_applied_column_and_function_are_tracking_not_drift(tmp_path, database_url):
    """What an unrecorded migration explains is reported once, as missing_tracking, not again as drift."""
    files = {"001_a.sql": "CREATE TABLE a (id int);",
             "002_b.sql": "ALTER TABLE a ADD COLUMN b int CONSTRAINT a_b_positive CHECK (b > 0);\n"
                          "CREATE FUNCTION a_count(x int) RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM a';"}
    directory = write(tmp_path / "m", files)
    MigrationRunner(database_url, directory).migrate(target=1)
    execute(database_url, files["002_b.sql"])
    diag = MigrationDiagnostics(database_url, directory)
    result = diag.diagnose().filtered("low")
    assert [(i.code, i.version) for i in result.issues] == [("missing_tracking", 2)]
    evidence = result.issues[0].evidence
    assert evidence[0] == "file: 002_b.sql has no history row"
    assert evidence[1].startswith("catalog equals the state after 002: ")
    assert "its effect: column public.a.b: created" in evidence
    assert "its effect: function public.a_count(integer): created" in evidence
    # A table no migration names decides nothing about 002 and is drift; 002's own objects are not drift.
    execute(database_url, "CREATE TABLE by_hand (id int)")
    result = diag.diagnose().filtered("low")
    assert sorted((i.code, i.version) for i in result.issues) == [("missing_tracking", 2), ("schema_drift", None)]
    drift = result.of("schema_drift")[0].evidence
    assert "table public.by_hand: not from a migration" in drift
    assert not any("a.b" in line or "a_count" in line for line in drift)
    # A column added by hand to a migration's table is evidence: the catalog is no state now, so nothing is
    # proven, and poststack's reference (the snapshot after 001) accounts for every change, 002's included.
    execute(database_url, "ALTER TABLE a ADD COLUMN c int")
    result = diag.diagnose().filtered("low")
    assert [(i.code, i.version) for i in result.issues] == [("schema_drift", None)]
    drift = result.issues[0].evidence
    assert "column public.a.c: created outside poststack" in drift
    assert "column public.a.b: created outside poststack" in drift


def test_schema_mismatch_without_a_stored_reference(project, database_url):
    """A history written elsewhere (no snapshot of poststack's) that the catalog contradicts."""
    _, runner, diag = project
    runner.migrate(2)
    execute(database_url, "DELETE FROM poststack.schema_snapshot; DROP TABLE posts")
    result = diag.diagnose()
    assert [(i.code, i.version, i.severity) for i in result.issues] == [("schema_mismatch", 2, "high")]
    assert result.issues[0].evidence == [
        "history: the recorded state is the one after 002",
        "catalog equals the state after 001: the recorded migration(s) after it did not run"]
    assert diag.repair(result.issues, force=True).fixed == []  # never automatic
    assert [v for v, *_ in history(database_url)] == [1, 2]
    recovered = runner.recover()  # and recover proves nothing either
    assert recovered.recorded == [] and [(s.version, s.action) for s in recovered.steps] == [(3, "refused")]
    execute(database_url, FILES["002_posts.sql"])  # restored by hand: the recorded state again
    assert found(diag) == []


def test_a_table_of_no_migration_is_drift_even_without_a_stored_reference(project, database_url):
    _, _, diag = project
    execute(database_url, "CREATE TABLE by_hand (id int)")  # no history, so no snapshot of poststack's
    result = diag.diagnose()
    assert [(i.code, i.version) for i in result.issues] == [("schema_drift", None)]
    assert "table public.by_hand: not from a migration" in result.issues[0].evidence


def test_a_table_under_a_migrations_name_is_a_mismatch_where_poststack_has_no_reference(project, database_url):
    _, _, diag = project
    execute(database_url, "CREATE TABLE users (id bigint)")  # 001's table name, not 001's table
    result = diag.diagnose()
    assert [(i.code, i.version) for i in result.issues] == [("schema_mismatch", None)]
    assert result.issues[0].evidence[:2] == ["history: the recorded state is the one before any migration",
                                             "closest replayed state: before any migration (1 difference(s))"]
    assert "table public.users: not in the state" in result.issues[0].evidence


def test_repair_dry_run_changes_nothing(project, database_url):
    directory, runner, diag = project
    runner.migrate()
    (directory / "001_users.sql").write_text("-- cosmetic\n" + FILES["001_users.sql"])
    (directory / "002_posts.sql").unlink()
    (directory / "003_tags.sql").write_text("CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);\n")
    result = diag.diagnose()
    assert sorted(i.code for i in result.issues) == ["checksum_mismatch", "cosmetic_change", "missing_file"]

    def state() -> tuple:
        files = sorted((p.name, p.read_bytes()) for p in directory.iterdir())
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT * FROM poststack.migrations ORDER BY version").fetchall()
            audit_count = conn.execute("SELECT count(*) FROM poststack.audit_log").fetchone()
            tables = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                                  "ORDER BY 1").fetchall()
        return files, rows, audit_count, tables

    before = state()
    planned = diag.repair(result.issues, force=True, dry_run=True)
    assert sorted(a.action for a in planned.fixed) == ["rechecksum", "rechecksum", "restore_file"]
    assert planned.dry_run and state() == before
    assert sorted(i.code for i in diag.diagnose().issues) == ["checksum_mismatch", "cosmetic_change", "missing_file"]
