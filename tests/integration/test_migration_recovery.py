"""``recover`` on a real PostgreSQL: records exactly what the catalog proves, refuses mixed evidence.

Situations are created for real: migration SQL run by psycopg without tracking (as another tool would have),
half-applied files, a seed-layout legacy history table. The proof is the catalog being exactly the replayed
state after a version (``poststack.engine.replay``/``poststack.engine.judgement``): anything else records nothing.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from poststack.catalog.snapshot import snapshot
from poststack.db.history import History
from poststack.db.lock import lock_key, try_lock
from poststack.errors import LockTimeout, MigrationFailed, MigrationFileError
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing import CLITestRunner
from poststack.testing.db_helper import DbHelper

ACCOUNTS = "CREATE TABLE accounts (id bigint PRIMARY KEY, login text NOT NULL);\n"
SESSIONS = ("CREATE TABLE sessions (token uuid PRIMARY KEY, account_id bigint REFERENCES accounts (id));\n"
            "CREATE INDEX sessions_account_idx ON sessions (account_id);\n"
            "CREATE FUNCTION expire_sessions() RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;\n")
FILES = {
    "001_accounts.sql": ACCOUNTS,
    "001_accounts.rollback.sql": "DROP TABLE accounts;\n",
    "002_sessions.sql": SESSIONS,
    "003_audit.sql": "CREATE SCHEMA audit;\nCREATE TABLE audit.logins (account_id bigint, at timestamptz);\n",
    "004_email.sql": "ALTER TABLE accounts ADD COLUMN email text;\n"
                     "CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email));\n",
}


@pytest.fixture
def project(make_migrations, database_url):
    """(runner, helper, directory) for FILES on a fresh database."""
    directory = make_migrations(FILES)
    with DbHelper(database_url, directory) as helper:
        yield MigrationRunner(database_url, directory), helper, directory


def recorded(helper):
    return [(r.version, r.source) for r in helper.history_rows()]


def audit(helper):
    return [(row[4], row[5], row[6]) for row in reversed(History().audit_entries(helper.conn))]


def actions(result):
    return [(s.version, s.action) for s in result.steps]


def test_untracked_applied_files_are_recorded_exactly(project):
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.apply_untracked(2)
    result = runner.recover()
    assert actions(result) == [(1, "record"), (2, "record"), (3, "pending"), (4, "pending")]
    assert result.exit_code == 0 and not result.dry_run
    assert recorded(helper) == [(1, "recover"), (2, "recover")]
    files = load_migrations(runner.migrations_path).by_version()
    row = helper.history_rows()[0]
    assert (row.checksum, row.semantic_checksum, row.sql, row.rollback_sql) == (
        files[1].checksum, files[1].semantic_checksum, ACCOUNTS, "DROP TABLE accounts;\n")
    assert audit(helper) == [("recover", "recover", 1), ("recover", "recover", 2)]
    proof = result.steps[1]
    assert proof.status == "proven" and proof.reason.startswith("catalog equals the state after 002: ")
    assert proof.reason.endswith(" objects compared") and proof.evidence[0] == proof.reason
    assert proof.evidence[1:] == ["its effect: table public.sessions: created",  # its index included
                                  "its effect: function public.expire_sessions(): created"]
    assert [s.status for s in result.steps[2:]] == ["pending", "pending"]
    newest = History().audit_entries(helper.conn)[0]
    assert newest[6] == 2 and newest[9].startswith("catalog equals the state after 002: ")  # the proof, audited
    # The rest is really pending: migrate applies it on top of the recovered history.
    assert [s.version for s in runner.migrate().steps] == [3, 4]


def test_fresh_database_with_pending_migrations_records_nothing(project):
    runner, helper, _ = project
    result = runner.recover()
    assert actions(result) == [(1, "pending"), (2, "pending"), (3, "pending"), (4, "pending")]
    assert result.exit_code == 0 and result.recorded == []
    assert recorded(helper) == [] and audit(helper) == []


def test_nothing_to_do_when_everything_is_tracked(project):
    runner, helper, _ = project
    runner.migrate()
    result = runner.recover()
    assert result.steps == [] and result.exit_code == 0
    assert audit(helper) == []


def test_half_applied_migration_is_never_recorded_and_the_report_names_what_is_missing(project):
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.execute(SESSIONS.splitlines()[0])  # only the table of 002: no index, no function
    result = runner.recover()
    # 002 touches none of 001's objects, on which the catalog is 001's state: 001 is proven, 002 refused.
    assert actions(result) == [(1, "record"), (2, "refused"), (3, "blocked"), (4, "blocked")]
    assert result.exit_code == 1
    assert recorded(helper) == [(1, "recover")]
    assert result.steps[0].status == "proven"
    assert result.steps[0].reason == ("the catalog equals the state after 001 on every object it and its "
                                      "predecessors change; 002 after it is half applied and touches none of them")
    refused = result.refused[0]
    assert refused.status == "partial"
    assert refused.reason == ("partially applied: the catalog lies between the states after 001 and after 002")
    assert refused.evidence == ["done: table public.sessions: created",
                                "not done: index public.sessions_account_idx: not created",
                                "not done: function public.expire_sessions(): not created"]
    assert [s.reason for s in result.steps[2:]] == ["not examined: refused at 002"] * 2
    # Finished by hand, the catalog is the state after 002: proven.
    helper.execute("\n".join(SESSIONS.splitlines()[1:]))
    assert actions(runner.recover())[:1] == [(2, "record")]


def test_later_migration_present_after_an_absent_one_is_refused_not_guessed(project):
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.apply_untracked(3)  # 002 never ran, 003 did: the catalog is no state of the sequence
    result = runner.recover()
    assert actions(result) == [(1, "refused"), (2, "blocked"), (3, "blocked"), (4, "blocked")]
    refused = result.refused[0]
    assert refused.status == "mismatch"
    assert refused.reason == ("the catalog equals no replayed state; the closest is the state after 001 "
                              "(2 difference(s))")
    assert refused.evidence == ["schema audit: not in the state", "table audit.logins: not in the state"]
    assert recorded(helper) == [] and result.exit_code == 1


def test_a_table_of_no_migration_decides_nothing_and_is_named_apart(project):
    """An object no migration touches cannot tell one state from another: 001 and 002 are still proven by
    everything the migrations do, and the evidence names the stranger (diagnose reports it as drift)."""
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.apply_untracked(2)
    helper.execute("CREATE TABLE by_hand (id int)")
    result = runner.recover()
    assert actions(result) == [(1, "record"), (2, "record"), (3, "pending"), (4, "pending")]
    assert result.steps[1].evidence[1] == ("1 difference(s) on objects no migration touches (not evidence either "
                                           "way; see diagnose): table public.by_hand: not from a migration")
    assert recorded(helper) == [(1, "recover"), (2, "recover")]


def test_a_table_made_by_hand_under_a_migrations_name_is_evidence_against_it(project):
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.execute("CREATE TABLE sessions (token uuid)")  # not 002's sessions table
    result = runner.recover()
    assert actions(result) == [(1, "refused"), (2, "blocked"), (3, "blocked"), (4, "blocked")]
    assert result.refused[0].status == "mismatch" and result.exit_code == 1
    assert "the closest is the state after 001 (1 difference(s))" in result.refused[0].reason
    assert result.refused[0].evidence == ["table public.sessions: not in the state"]
    assert recorded(helper) == []


def test_a_catalog_closest_to_the_recorded_state_is_still_refused(project):
    """No state matches: the differences are shown, even when no migration seems to have run."""
    runner, helper, _ = project
    helper.execute("CREATE TABLE accounts (id int)")  # 001's table name, not 001's table
    result = runner.recover()
    assert actions(result) == [(1, "refused"), (2, "blocked"), (3, "blocked"), (4, "blocked")]
    assert result.refused[0].status == "mismatch" and result.exit_code == 1
    assert "the closest is the state before any migration (1 difference(s))" in result.refused[0].reason
    assert result.refused[0].evidence == ["table public.accounts: not in the state"]
    assert recorded(helper) == []


def test_a_file_edited_after_it_was_applied_by_hand_is_not_proven(project):
    runner, helper, directory = project
    helper.apply_untracked(1)
    (directory / "001_accounts.sql").write_text(ACCOUNTS.replace("login text", "login varchar(80)"))
    result = runner.recover()
    assert actions(result) == [(1, "refused"), (2, "blocked"), (3, "blocked"), (4, "blocked")]
    assert result.refused[0].evidence == ["column public.accounts.login: type changed from character varying(80) "
                                          "to text"]
    assert recorded(helper) == []


def test_unfinished_history_row_blocks_recover(make_migrations, database_url):
    directory = make_migrations({
        "001_t.sql": "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);\n",
        "002_t_unique.sql": "-- poststack:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n",
        "003_u.sql": "CREATE TABLE u (a int);\n"})
    runner = MigrationRunner(database_url, directory)
    with pytest.raises(MigrationFailed):
        runner.migrate()  # 002 fails on the duplicate: a failed row and an INVALID index
    with DbHelper(database_url, directory) as helper:
        helper.apply_untracked(3)
        result = runner.recover()
        assert actions(result) == [(3, "blocked")] and result.exit_code == 0
        assert "migration 002 is failed" in result.steps[0].reason
        assert [(r.version, r.status) for r in helper.history_rows()] == [(1, "applied"), (2, "failed")]


def test_dry_run_changes_nothing(project):
    runner, helper, _ = project
    helper.apply_untracked(1)
    helper.apply_untracked(2)
    before = snapshot(helper.conn, exclude_schemas=())
    assert not History().exists(helper.conn)
    result = runner.recover(dry_run=True)
    assert result.dry_run and actions(result) == [(1, "record"), (2, "record"), (3, "pending"), (4, "pending")]
    assert snapshot(helper.conn, exclude_schemas=()) == before
    assert not History().exists(helper.conn)  # not even the history tables were created
    # And with a history present, its rows and the audit log are untouched too.
    runner.recover()
    rows, entries = helper.history_rows(), audit(helper)
    helper.execute("DELETE FROM poststack.migrations WHERE version = 2")
    rows = [r for r in rows if r.version != 2]
    assert [s.action for s in runner.recover(dry_run=True).steps] == ["record", "pending", "pending"]
    assert helper.history_rows() == rows and audit(helper) == entries


def test_insert_only_migration_needs_force_and_force_says_so(make_migrations, database_url):
    directory = make_migrations({"001_t.sql": "CREATE TABLE t (a int);",
                                 "002_seed.sql": "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);",
                                 "003_u.sql": "CREATE TABLE u (a int);"})
    runner = MigrationRunner(database_url, directory)
    with DbHelper(database_url, directory) as helper:
        for version in (1, 2):
            helper.apply_untracked(version)
        # The states after 001 and 002 are equal: whether 002 ran, schema cannot tell.
        result = runner.recover()
        assert actions(result) == [(1, "record"), (2, "pending"), (3, "pending")] and result.exit_code == 0
        assert [s.status for s in result.steps] == ["proven", "undecidable", "pending"]
        assert "--force" in result.steps[1].reason
        assert "so do the states after 002 (no schema change between them)" in result.steps[1].evidence[0]
        assert recorded(helper) == [(1, "recover")]
        forced = runner.recover(force=True)
        assert actions(forced) == [(2, "record_forced"), (3, "pending")]
        assert "--force" in forced.steps[0].reason and forced.steps[0].status == "undecidable"
        assert recorded(helper) == [(1, "recover"), (2, "recover")]
        assert [a for a in audit(helper) if a[2] == 2] == [("recover", "recover_forced", 2)]


def test_a_later_schema_change_proves_the_data_migration_before_it(make_migrations, database_url):
    directory = make_migrations({"001_t.sql": "CREATE TABLE t (a int);",
                                 "002_seed.sql": "INSERT INTO t VALUES (1);",
                                 "003_u.sql": "CREATE TABLE u (a int);"})
    runner = MigrationRunner(database_url, directory)
    with DbHelper(database_url, directory) as helper:
        for version in (1, 2, 3):
            helper.apply_untracked(version)
        result = runner.recover()  # the catalog is the state after 003, which comes after 002
        assert actions(result) == [(1, "record"), (2, "record"), (3, "record")]
        assert {s.status for s in result.steps} == {"proven"}
        assert recorded(helper) == [(1, "recover"), (2, "recover"), (3, "recover")]


def test_force_records_nothing_on_a_fresh_database(make_migrations, database_url):
    directory = make_migrations({"001_t.sql": "CREATE TABLE t (a int);", "002_seed.sql": "INSERT INTO t VALUES (1);"})
    result = MigrationRunner(database_url, directory).recover(force=True)
    assert actions(result) == [(1, "pending"), (2, "pending")] and result.recorded == []


def test_unparsable_untracked_file_is_a_file_error(make_migrations, database_url):
    directory = make_migrations({"001_bad.sql": "CREATE TABLE (;"})
    with pytest.raises(MigrationFileError, match=r"001_bad\.sql:1: "):
        MigrationRunner(database_url, directory).recover()


def test_a_migration_that_fails_to_replay_is_never_recorded(make_migrations, database_url):
    directory = make_migrations({"001_t.sql": "CREATE TABLE t (a int);",
                                 "002_bad.sql": "ALTER TABLE nowhere ADD COLUMN b int;"})  # parses, cannot run
    runner = MigrationRunner(database_url, directory)
    assert actions(runner.recover(dry_run=True)) == [(1, "pending"), (2, "pending")]
    with DbHelper(database_url, directory) as helper:
        helper.execute("CREATE TABLE t (a bigint)")  # no known state: the states the failure hides are named
        result = runner.recover()
        assert actions(result) == [(1, "refused"), (2, "blocked")] and result.exit_code == 1
        reason = result.refused[0].reason
        assert "states after position 1 are unknown: " in reason
        assert "002_bad.sql" in reason and '"nowhere" does not exist' in reason
        assert result.refused[0].evidence == ["column public.t.a: type changed from integer to bigint"]
        assert recorded(helper) == []
        helper.execute("DROP TABLE t")
        helper.apply_untracked(1)
        assert actions(runner.recover()) == [(1, "record"), (2, "pending")]  # 002 itself is never proven


LEGACY_DDL = """CREATE TABLE public.schema_migrations (
    version VARCHAR(255) PRIMARY KEY, description TEXT,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, execution_time_ms INTEGER,
    checksum VARCHAR(64) NOT NULL, applied_by VARCHAR(255))"""


def seed_checksum(path):
    return hashlib.sha256(path.read_text(encoding="utf-8").encode("utf-8")).hexdigest()


def add_legacy_row(helper, directory, version_text, checksum=None):
    path = next(directory.glob(f"{version_text}_*.sql"))
    helper.execute("INSERT INTO public.schema_migrations VALUES (%s, %s, '2020-01-02 03:04:05', 42, %s, 'deployer')",
                   [version_text, f"legacy {version_text}", checksum or seed_checksum(path)])


def test_legacy_history_is_imported_after_catalog_verification(project):
    runner, helper, directory = project
    helper.execute(LEGACY_DDL)
    for version in (1, 2):
        helper.apply_untracked(version)
    add_legacy_row(helper, directory, "001")
    add_legacy_row(helper, directory, "002")
    result = runner.recover()
    assert result.legacy_table == "public.schema_migrations"
    assert actions(result) == [(1, "import"), (2, "import"), (3, "pending"), (4, "pending")]
    assert recorded(helper) == [(1, "import"), (2, "import")]
    row = helper.history_rows()[1]
    assert (row.applied_by, row.execution_ms, row.description) == ("deployer", 42, "legacy 002")
    assert row.applied_at.strftime("%Y-%m-%d %H:%M:%S") == "2020-01-02 03:04:05"
    assert audit(helper) == [("recover", "import", 1), ("recover", "import", 2)]
    assert runner.status().changed == []  # checksums match the files
    # A second run finds everything already imported and changes nothing.
    again = runner.recover()
    assert actions(again)[:2] == [(1, "already_recorded"), (2, "already_recorded")] and again.exit_code == 0
    assert len(audit(helper)) == 2


def test_legacy_row_whose_objects_are_absent_refuses_the_whole_import(project):
    runner, helper, directory = project
    helper.execute(LEGACY_DDL)
    helper.apply_untracked(1)
    add_legacy_row(helper, directory, "001")
    add_legacy_row(helper, directory, "002")  # claimed, but 002 never ran
    result = runner.recover()
    assert actions(result) == [(1, "blocked"), (2, "refused"), (3, "pending"), (4, "pending")]
    assert result.refused[0].reason.startswith("public.schema_migrations says it was applied, but ")
    assert "catalog equals the state after 001" in result.refused[0].reason
    assert "legacy version 002 is not proven" in result.steps[0].reason
    assert result.exit_code == 1
    assert recorded(helper) == []


def test_legacy_row_of_a_changed_file_is_imported_with_its_own_checksum(project):
    runner, helper, directory = project
    helper.execute(LEGACY_DDL)
    helper.apply_untracked(1)
    add_legacy_row(helper, directory, "001", checksum="0" * 64)  # applied from another text than today's file
    result = runner.recover()  # the legacy row knows no SQL: the file is replayed, and its state is the catalog
    assert actions(result)[0] == (1, "import") and result.steps[0].status == "proven"
    assert helper.history_rows()[0].checksum == "0" * 64  # the import keeps the legacy checksum...
    assert [c.kind for c in runner.status().changed] == ["checksum_mismatch"]  # ...so the change stays visible


@pytest.fixture
def cli(make_migrations, database_url):
    directory = make_migrations(FILES)
    with DbHelper(database_url, directory) as helper:
        yield CLITestRunner(database_url, directory), helper


def test_cli_json_and_exit_codes(cli):
    runner, helper = cli
    helper.apply_untracked(1)
    helper.execute(SESSIONS.splitlines()[0])
    dry = runner.run_command("recover", ["--dry-run", "--format", "json"])
    assert dry.exit_code == 1, dry
    assert dry.json["dry_run"] is True and dry.json["recorded"] == ["001"] and dry.json["refused"] == ["002"]
    step = dry.json["steps"][1]
    assert step["action"] == "refused" and step["status"] == "partial"
    assert "not done: index public.sessions_account_idx: not created" in step["evidence"]
    assert recorded(helper) == []
    table = runner.run_command("recover")
    assert table.exit_code == 1, table
    assert "Refused 002 sessions" in table.stdout
    assert "not done: function public.expire_sessions(): not created" in table.stdout
    assert recorded(helper) == [(1, "recover")]
    helper.execute("\n".join(SESSIONS.splitlines()[1:]))  # finished by hand: now proven, exit 0
    done = runner.run_command("recover", ["--format", "json"])
    assert done.exit_code == 0, done
    assert done.json["recorded"] == ["002"] and recorded(helper) == [(1, "recover"), (2, "recover")]


def test_cli_nothing_to_do_exits_zero_and_bad_files_exit_two(cli, make_migrations, database_url):
    runner, _ = cli
    assert runner.run_command("recover").exit_code == 0
    bad = CLITestRunner(database_url, make_migrations({"001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 2;"}))
    result = bad.run_command("recover")
    assert result.exit_code == 2 and "duplicate migration version 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_recover_waits_for_the_migration_lock_and_records_nothing_without_it(project, database_url):
    runner, helper, directory = project
    helper.apply_untracked(1)
    with psycopg.connect(database_url, autocommit=True) as other:
        assert try_lock(other, lock_key("poststack"))
        with pytest.raises(LockTimeout, match="held by pid"):
            MigrationRunner(database_url, directory, lock_timeout=0.2).recover()
        assert actions(runner.recover(dry_run=True))[0] == (1, "record")  # reading needs no lock
    assert not History().exists(helper.conn)
    assert actions(runner.recover())[0] == (1, "record")
    assert recorded(helper) == [(1, "recover")]


def test_shipped_unified_project_scenario(scenario, database_url):
    directory = scenario("unified_project")
    runner = MigrationRunner(database_url, directory)
    with DbHelper(database_url, directory) as helper:
        helper.apply_untracked(1)
        helper.apply_untracked(2)
        assert actions(runner.recover()) == [(1, "record"), (2, "record"), (3, "pending"), (4, "pending")]
        assert [s.version for s in runner.migrate().steps] == [3, 4]
        assert helper.applied_versions() == [1, 2, 3, 4]
        assert runner.recover().steps == []
