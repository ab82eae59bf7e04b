"""Evidence from PostgreSQL itself: recover, diagnose and mark judge the catalog against replayed states.

Each example of the issue that broke the hand-written model is reproduced for real: the migrations are run by
poststack or by hand (as psql would), and the verdict must follow from what PostgreSQL did, including the
names it chose, renames and drops.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from poststack.db.history import History
from poststack.engine.replay import chain_keys, replay
from poststack.errors import MigrationFailed
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing.db_helper import DbHelper


@pytest.fixture
def project(make_migrations, database_url):
    """Factory: files -> (runner, diagnostics, helper) on the test's fresh database."""
    helpers = []

    def make(files):
        directory = make_migrations(files)
        helper = DbHelper(database_url, directory)
        helpers.append(helper)
        return MigrationRunner(database_url, directory), MigrationDiagnostics(database_url, directory), helper

    yield make
    for helper in helpers:
        helper.close()


def issues(diagnostics):
    return sorted((i.code, i.version) for i in diagnostics.diagnose().issues if i.code != "rollback_missing")


def actions(result):
    return [(s.version, s.action) for s in result.steps]


def test_half_applied_migration_whose_missing_table_a_later_migration_drops_is_refused(project):
    runner, diag, helper = project({"001_ab.sql": "CREATE TABLE a (id int); CREATE TABLE b (id int);",
                                    "002_c.sql": "CREATE TABLE c (id int);",
                                    "003_drop_b.sql": "DROP TABLE b;"})
    helper.execute("CREATE TABLE a (id int)")  # by hand: only the first statement of 001
    result = runner.recover()
    assert actions(result) == [(1, "refused"), (2, "blocked"), (3, "blocked")]
    assert "not done: table public.b: not created" in result.steps[0].evidence
    assert helper.history_rows() == []
    assert issues(diag) == [("partially_applied", 1)]


def test_catalog_equal_to_a_later_state_records_both_and_says_what_schema_cannot_tell(project):
    runner, _, helper = project({"001_ab.sql": "CREATE TABLE a (id int); CREATE TABLE b (id int);",
                                 "002_drop_b.sql": "DROP TABLE b;"})
    helper.execute("CREATE TABLE a (id int)")  # equals the state after 002 exactly
    result = runner.recover()
    assert actions(result) == [(1, "record"), (2, "record")]
    assert "catalog equals the state after 002" in result.steps[0].reason
    assert [r.version for r in helper.history_rows()] == [1, 2]


@pytest.mark.parametrize("pending", [
    # an implicit primary key name, dropped and re-added under the same name
    "ALTER TABLE t ADD COLUMN k int NOT NULL DEFAULT 0; ALTER TABLE t DROP CONSTRAINT t_pkey; "
    "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY (id, k);",
    # an implicit foreign key name
    "CREATE TABLE c (id int, t_id int REFERENCES t (id)); ALTER TABLE c DROP CONSTRAINT c_t_id_fkey; "
    "ALTER TABLE c ADD CONSTRAINT c_t_id_fkey FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE CASCADE;",
])
def test_pending_migration_reusing_implicit_names_is_pending_not_partial(project, pending):
    runner, diag, _helper = project({"001_t.sql": "CREATE TABLE t (id int PRIMARY KEY);", "002_k.sql": pending})
    runner.migrate(target=1)
    assert issues(diag) == []
    assert actions(runner.recover()) == [(2, "pending")]
    runner.migrate()
    assert issues(diag) == []


def test_renames_reusing_column_names_are_judged_by_state(project):
    runner, diag, helper = project({
        "001_u.sql": "CREATE TABLE u (id int, inbox text, description text);",
        "002_rename.sql": "ALTER TABLE u RENAME TO person;",
        "003_shared.sql": "ALTER TABLE person ADD COLUMN shared_inbox text;",
        "004_swap.sql": "ALTER TABLE person DROP COLUMN inbox; ALTER TABLE person RENAME COLUMN shared_inbox TO inbox;",
        "005_sidebar.sql": "ALTER TABLE person RENAME COLUMN description TO sidebar; "
                           "ALTER TABLE person ADD COLUMN description text;",
        "006_back.sql": "ALTER TABLE person DROP COLUMN sidebar;",
    })
    runner.migrate(target=3)
    assert issues(diag) == []
    for version in (4, 5):
        helper.apply_untracked(version)
    assert issues(diag) == [("missing_tracking", 4), ("missing_tracking", 5)]
    assert actions(runner.recover()) == [(4, "record"), (5, "record"), (6, "pending")]
    runner.migrate()
    assert issues(diag) == []


def test_server_chosen_index_name_applied_by_hand_is_recovered(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (tok text); CREATE INDEX t_tok_idx ON t (tok);",
                                    "002_drop.sql": "DROP INDEX t_tok_idx;",
                                    "003_unique.sql": "CREATE UNIQUE INDEX ON t (tok);"})
    runner.migrate(target=1)
    helper.apply_untracked(2)
    helper.apply_untracked(3)  # the server names it t_tok_idx again
    assert issues(diag) == [("missing_tracking", 2), ("missing_tracking", 3)]
    assert actions(runner.recover()) == [(2, "record"), (3, "record")]
    assert runner.migrate().steps == []
    assert issues(diag) == []


def test_data_only_migrations_are_undecidable_and_force_names_them(project):
    runner, _diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);",
                                    "002_data.sql": "INSERT INTO t VALUES (1);",
                                    "003_u.sql": "CREATE TABLE u (id int);"})
    helper.apply_untracked(1)
    result = runner.recover(dry_run=True)
    assert actions(result) == [(1, "record"), (2, "pending"), (3, "pending")]
    assert result.steps[1].status == "undecidable" and "cannot show whether it ran" in result.steps[1].reason
    forced = runner.recover(force=True)
    assert actions(forced) == [(1, "record"), (2, "record_forced"), (3, "pending")]
    assert "without proof" in forced.steps[1].reason
    assert [(r.version, r.source) for r in helper.history_rows()] == [(1, "recover"), (2, "recover")]


def test_history_claiming_an_absent_migration_is_a_schema_mismatch(project):
    _runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);"})
    helper.track_only(1)
    found = diag.diagnose().of("schema_mismatch")
    assert [(i.version, i.severity) for i in found] == [(1, "high")]
    assert any("equals the state before any migration" in line for line in found[0].evidence)


def test_objects_dropped_by_hand_after_recover_are_a_mismatch_not_silence(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);", "002_u.sql": "CREATE TABLE u (id int);"})
    helper.apply_untracked(1)
    runner.recover()
    helper.execute("DROP TABLE t")
    found = diag.diagnose().of("schema_drift")
    assert [i.version for i in found] == [None] and "table public.t: dropped outside poststack" in found[0].evidence


def test_fresh_database_records_nothing_and_has_no_issue(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);", "002_d.sql": "INSERT INTO t VALUES (1);"})
    assert issues(diag) == []
    assert actions(runner.recover()) == [(1, "pending"), (2, "pending")]
    assert helper.history_rows() == []


def test_states_are_cached_by_the_chain_of_checksums(project, tmp_path, database_url):
    runner, _, _ = project({"001_t.sql": "CREATE TABLE t (id int);", "002_u.sql": "CREATE TABLE u (id int);"})
    steps = list(load_migrations(runner.migrations_path))
    first = replay(database_url, steps, cache=tmp_path)
    again = replay(database_url, steps, cache=tmp_path)
    assert first.replayed == 2 and again.replayed == 0 and again.states == first.states
    with psycopg.connect(database_url) as conn:
        major = conn.info.server_version // 10000
    assert {p.stem for p in tmp_path.glob("*.json")} == set(chain_keys(steps, major))


def test_a_role_created_by_a_migration_neither_breaks_the_replay_nor_stays(project, database_url):
    role = "pst_replay_role_probe"
    runner, _diag, helper = project({"001_r.sql": f"CREATE ROLE {role}; CREATE TABLE t (id int);",
                                    "002_g.sql": f"GRANT SELECT ON t TO {role};"})
    steps = list(load_migrations(runner.migrations_path))
    replay(database_url, steps, cache=False)
    assert helper.fetch_value("SELECT count(*) FROM pg_roles WHERE rolname = %s", [role]) == 0


def test_diagnose_during_a_migrate_never_reports_a_finding(project):
    files = {f"{v:03d}_t{v}.sql": f"CREATE TABLE t{v} (id int); SELECT pg_sleep(0.02);" for v in range(1, 26)}
    runner, diag, _helper = project(files)
    runner.migrate(target=1)
    diag.diagnose()  # warm the replay cache, so the race below is not a race against the replay
    found: list[tuple[str, int | None]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            found.extend((i.code, i.version) for i in diag.diagnose().issues
                         if i.code in ("missing_tracking", "partially_applied", "schema_mismatch", "schema_drift"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        runner.migrate()
    finally:
        done.set()
        watcher.join()
    assert found == []


def test_mark_records_and_unrecords_when_the_states_agree(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);", "002_d.sql": "INSERT INTO t VALUES (1);",
                                    "003_u.sql": "CREATE TABLE u (id int);"})
    helper.apply_untracked(1)
    helper.apply_untracked(2)
    result = runner.mark(2, through=True, reason="applied by hand during the outage")
    assert result.written and result.consistent and [s.version for s in result.changes] == [1, 2]
    assert [(r.version, r.source) for r in helper.history_rows()] == [(1, "mark"), (2, "mark")]
    entries = History().audit_entries(helper.conn)
    assert {(e[4], e[5], e[6]) for e in entries} == {("mark", "mark_applied", 1), ("mark", "mark_applied", 2)}
    assert all("applied by hand during the outage" in e[9] for e in entries)
    assert issues(diag) == []
    refused = runner.mark(3)  # u does not exist: the history would lie
    assert refused.refused and not refused.written and any("table public.u" in e for e in refused.evidence)
    assert [r.version for r in helper.history_rows()] == [1, 2]
    assert runner.mark(2, applied=False).written  # 002 changed no schema: unrecording it is consistent
    assert [r.version for r in helper.history_rows()] == [1]


def test_mark_force_writes_against_the_evidence_and_audits_it(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);"})
    dry = runner.mark(1, dry_run=True)
    assert dry.refused and helper.history_rows() == []
    forced = runner.mark(1, force=True, reason="restored from backup later")
    assert forced.written and not forced.consistent
    assert "forced against the evidence" in History().audit_entries(helper.conn)[0][9]
    assert [i.code for i in diag.diagnose().of("schema_mismatch")] == ["schema_mismatch"]


def test_mark_cli_json_and_exit_codes(project):
    from poststack.testing import CLITestRunner

    runner, _, helper = project({"001_t.sql": "CREATE TABLE t (id int);"})
    cli = CLITestRunner(runner.database_url, runner.migrations_path)
    refused = cli.run_command("mark", ["001", "--format", "json"])
    assert refused.exit_code == 1 and refused.json["refused"] is True and refused.json["written"] is False
    helper.apply_untracked(1)
    done = cli.run_command("mark", ["1"])
    assert done.exit_code == 0 and "Marked 1 version(s)." in done.stdout
    bad = cli.run_command("mark", ["7"])
    assert bad.exit_code == 2 and "no migration file has version 7" in bad.stderr


def test_a_file_stopped_before_its_data_only_tail_is_not_recorded_as_complete(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int PRIMARY KEY, c text);",
                                    "002_drop.sql": "ALTER TABLE t DROP COLUMN c;\nINSERT INTO t (id) VALUES (1);"})
    helper.apply_untracked(1)
    helper.execute("ALTER TABLE t DROP COLUMN c")  # by hand, 002 stopped before its INSERT
    result = runner.recover()
    assert actions(result) == [(1, "record"), (2, "pending")]
    assert result.steps[1].status == "undecidable" and "ran to its end" in result.steps[1].reason
    tracking = diag.diagnose().of("missing_tracking")
    assert [(i.version, i.fix) for i in tracking] == [(2, "if it did: poststack db mark 002")]


def test_a_staging_table_left_by_a_half_applied_file_is_evidence_not_drift(project):
    load = ("CREATE TABLE staging (id int);\nINSERT INTO t SELECT id FROM staging;\nDROP TABLE staging;\n"
            "ALTER TABLE t ADD COLUMN loaded boolean;")
    runner, _, helper = project({"001_t.sql": "CREATE TABLE t (id int);", "002_load.sql": load})
    runner.migrate(target=1)
    helper.execute("CREATE TABLE staging (id int)")  # 002 stopped after its first statement
    helper.execute("CREATE TABLE hand_made (id int)")  # no migration names it: drift, not evidence
    result = runner.recover()
    assert [a for _, a in actions(result)] == ["refused"]
    assert "table public.staging: not in the state" in result.steps[0].evidence
    assert not any("hand_made" in line for line in result.steps[0].evidence)
    assert [r.version for r in helper.history_rows()] == [1]


def test_a_cached_state_is_never_taken_for_another_text(postgres_server, tmp_path, monkeypatch):
    """repair --force keeps the SQL that ran but takes the file's checksum: a state replayed from that row
    must not be reused for the file's (different) text on another database of the same project."""
    from poststack.testing.server import create_database, drop_database

    monkeypatch.setenv("POSTSTACK_REPLAY_CACHE", str(tmp_path / "cache"))
    directory = tmp_path / "m"
    directory.mkdir()
    old, new = ("CREATE TABLE t1 (id int, knob int DEFAULT 0);\n", "CREATE TABLE t1 (id int, knob int DEFAULT 1);\n")
    (directory / "001_t1.sql").write_text(old)
    (directory / "002_t2.sql").write_text("CREATE TABLE t2 (id int);\n")
    names = [create_database(postgres_server, "pa"), create_database(postgres_server, "pb")]
    production, staging = (postgres_server.database_url(n) for n in names)
    try:
        MigrationRunner(production, directory).migrate(target=1)
        (directory / "001_t1.sql").write_text(new)
        diag = MigrationDiagnostics(production, directory)
        diag.repair(diag.diagnose().issues, force=True)  # rechecksum: row.sql old, row.checksum new
        with psycopg.connect(production, autocommit=True) as conn:
            conn.execute("CREATE TABLE t2 (id int)")
        diag.diagnose()  # replays [row 001, file 002]
        with psycopg.connect(staging, autocommit=True) as conn:
            conn.execute(old)  # the OLD text ran here; the file says DEFAULT 1
        result = MigrationRunner(staging, directory).recover(dry_run=True)
        assert [(s.version, s.action) for s in result.steps] == [(1, "refused"), (2, "blocked")]
    finally:
        for name in names:
            drop_database(postgres_server, name)


def test_a_cosmetic_edit_after_an_accepted_change_keeps_the_sql_that_ran(project):
    runner, diag, helper = project({"001_t1.sql": "CREATE TABLE t1 (id int, knob int DEFAULT 0);\n",
                                    "002_t2.sql": "CREATE TABLE t2 (id int);\n"})
    runner.migrate(target=1)
    path = runner.migrations_path / "001_t1.sql"
    path.write_text("CREATE TABLE t1 (id int, knob int DEFAULT 1);\n")
    diag.repair(diag.diagnose().issues, force=True)  # the change of meaning accepted: the old text stays
    path.write_text("-- a comment\nCREATE TABLE t1 (id int, knob int DEFAULT 1);\n")
    diag.repair(diag.diagnose().issues)
    assert "DEFAULT 0" in helper.history_rows()[0].sql  # still what ran
    helper.apply_untracked(2)
    assert ("missing_tracking", 2) in issues(diag)  # the replay of the history is still the catalog


def test_the_legacy_history_table_is_history_not_drift(project):
    _runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);", "002_u.sql": "CREATE TABLE u (id int);"})
    helper.execute("CREATE TABLE public.schema_migrations (version text PRIMARY KEY, checksum text)")
    helper.apply_untracked(1)
    assert issues(diag) == [("missing_tracking", 1)]


def test_the_replay_drops_only_the_roles_its_migrations_create(postgres_server):
    """Roles are server-wide: one another session creates while a replay runs must survive it."""
    from poststack.engine.replay import _scratch

    ours, theirs = "pst_replay_ours_probe", "pst_replay_theirs_probe"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        try:
            with _scratch(postgres_server.url, {ours}) as url:
                with psycopg.connect(url, autocommit=True) as scratch:
                    scratch.execute(f"CREATE ROLE {ours}")
                admin.execute(f"CREATE ROLE {theirs}")  # meanwhile, elsewhere on the server
            names = {r for (r,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s)",
                                                 [ours, theirs])}
            assert names == {theirs}
        finally:
            admin.execute(f"DROP ROLE IF EXISTS {theirs}")
            admin.execute(f"DROP ROLE IF EXISTS {ours}")


def test_recover_and_mark_that_record_nothing_leave_the_database_as_it_was(project):
    runner, _, helper = project({"001_t.sql": "CREATE TABLE t (id int);"})
    assert runner.recover().recorded == []
    assert runner.mark(1).refused
    assert helper.fetch_value("SELECT to_regnamespace('poststack') IS NULL")


def test_repair_marks_a_crashed_run_applied_only_when_the_states_confirm_its_text(project):
    from poststack.errors import MigrationFailed

    runner, diag, helper = project({"001_t1.sql": "CREATE TABLE t1 (id int);",
                                    "002_t2.sql": "-- poststack:no-transaction\n"
                                                  "CREATE TABLE t2 (id int, knob int DEFAULT 1);\n"})
    runner.migrate(target=1)
    helper.execute("CREATE TABLE t2 (id int, knob int DEFAULT 0)")  # an older text, run by hand
    with pytest.raises(MigrationFailed):
        runner.migrate()  # 002's row is now 'failed', and a table of its name exists
    result = diag.repair(diag.diagnose().issues, force=True)
    assert [r.status for r in helper.history_rows()] == ["applied", "failed"]
    assert any("do not confirm" in s.reason for s in result.skipped)


def test_a_replay_that_fails_is_remembered_for_that_server(project, tmp_path, database_url):
    runner, _, _ = project({"001_t.sql": "CREATE TABLE t (id int);",
                            "002_ext.sql": "CREATE EXTENSION poststack_no_such_extension;",
                            "003_u.sql": "CREATE TABLE u (id int);"})
    steps = list(load_migrations(runner.migrations_path))
    first = replay(database_url, steps, cache=tmp_path)
    again = replay(database_url, steps, cache=tmp_path)
    assert (first.failed_at, again.failed_at) == (2, 2) and first.failure == again.failure
    assert "002_ext.sql:1" in first.failure and (first.replayed, again.replayed) == (1, 0)


def test_repair_passes_on_why_recover_declined_an_issue_diagnose_found(project):
    runner, diag, helper = project({"001_t.sql": "CREATE TABLE t (id int);"})
    helper.execute("CREATE TABLE t (id int)")  # by hand: provably 001
    found = diag.diagnose().issues
    assert [(i.code, i.version, i.auto_fixable) for i in found if i.code == "missing_tracking"] == [
        ("missing_tracking", 1, True)]
    # Before repair acts, the file gains a data-only tail: no catalog state can prove the new text ran.
    (runner.migrations_path / "001_t.sql").write_text("CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n")
    result = diag.repair(found)
    assert result.fixed == [] and helper.history_rows() == []
    [skipped] = [s for s in result.skipped if s.code == "missing_tracking"]
    assert skipped.reason.startswith("recover did not record it: undecidable")  # recover's own words
    assert "poststack db mark 001" in skipped.reason


def test_a_failed_row_whose_file_and_a_later_one_were_run_by_hand_is_marked_applied(project):
    """Found by the state machine: the catalog is the state after a later pending migration, which proves
    the failed one's whole text ran; repair used to accept only the state right after it, and refused."""
    runner, diag, helper = project({
        "001_t1.sql": "CREATE TABLE t1 (id int);",
        "002_t2.sql": "CREATE TABLE t2 (id int);",
        "003_t3.sql": "-- poststack:no-transaction\nCREATE TABLE t3 (id int);\n"
                      "CREATE INDEX CONCURRENTLY t3_id ON t3 (id);\n",
        "004_v4.sql": "CREATE VIEW v4 AS SELECT 1 AS one;",
    })
    runner.migrate(1)
    helper.apply_untracked(3)
    helper.apply_untracked(4)
    with pytest.raises(MigrationFailed, match="already exists"):
        runner.migrate()  # applies 002, then meets 003's table: a failed row, 0 statements done
    assert issues(diag) == [("failed_migration", 3)]
    result = diag.repair(diag.diagnose().issues)
    assert [(a.version, a.action) for a in result.fixed] == [(3, "mark_applied")], result.skipped
    assert any("pending migration(s) 004 ran too" in line for line in result.fixed[0].details), result.fixed[0].details
    assert [(r.version, r.status, r.source) for r in helper.history_rows()] == [
        (1, "applied", "migrate"), (2, "applied", "migrate"), (3, "applied", "repair")]


def test_a_pending_file_run_by_hand_before_a_migrate_is_not_hidden_by_the_snapshot_it_took(project):
    """migrate snapshots the catalog as it is: a later file run by hand beforehand is in that snapshot, and
    diagnose's cheap path (catalog == stored snapshot) said nothing, although migrate then failed on it."""
    runner, diag, helper = project({"001_t1.sql": "CREATE TABLE t1 (id int);",
                                    "002_t2.sql": "CREATE TABLE t2 (id int);",
                                    "003_v3.sql": "CREATE VIEW v3 AS SELECT 1 AS one;"})
    helper.apply_untracked(3)  # a DBA's hotfix, ahead of the deploy
    runner.migrate(2)  # records its snapshot with v3 in it
    assert issues(diag) == [("missing_tracking", 3)]
    assert [(s.version, s.action) for s in runner.recover().recorded] == [(3, "record")]
    assert issues(diag) == []
