"""``db adopt --from TOOL`` on a real PostgreSQL, each tool's history built by that tool's own conventions
(yoyo: by yoyo itself). After adopting, ``migrate`` is a no-op, ``diagnose`` is clean and ``verify`` passes.
"""

from __future__ import annotations

import psycopg
import pytest
from adopt_support import (
    DBMATE_DDL,
    DIESEL_DDL,
    GOLANG_MIGRATE_DDL,
    SQITCH_DDL,
    execute,
    flyway_history,
    run_as_tool,
    write_tree,
)

from poststack.db.history import History
from poststack.source.files import load_migrations
from poststack.testing import CLITestRunner

USERS = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n"
EMAIL_IDX = "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"


@pytest.fixture
def dirs(tmp_path):
    """(tool's directory, poststack's directory)."""
    return tmp_path / "tool", tmp_path / "poststack"


def adopt(url, target, tool, source, *extra):
    cli = CLITestRunner(url, target)
    return cli, cli.run_command("adopt", ["--from", tool, "--source", str(source), "--format", "json", *extra])


def history(url):
    with psycopg.connect(url) as conn:
        return [(r.version_text, r.source) for r in History().rows(conn)]


def audited(url):
    with psycopg.connect(url) as conn:
        return [(e[4], e[5], e[6]) for e in reversed(History().audit_entries(conn))]


def assert_round_trip(cli):
    migrate = cli.run_command("migrate")
    assert migrate.exit_code == 0 and "Nothing to apply" in migrate.stdout, migrate.stdout + migrate.stderr
    diagnose = cli.run_command("diagnose", ["--format", "json"])
    assert diagnose.exit_code == 0 and diagnose.json["issues"] == [], diagnose.stdout
    verify = cli.run_command("verify")
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_dbmate_layout_and_table(database_url, dirs):
    source, target = dirs
    write_tree(source, {
        "20240101000000_users.sql": f"-- migrate:up\n{USERS}\n-- migrate:down\nDROP TABLE users;\n",
        "20240102000000_email_idx.sql": f"-- migrate:up transaction:false\n{EMAIL_IDX}\n"
                                        "-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY users_email_idx;\n",
        "20240103000000_nothing.sql": "-- migrate:up\n\n-- migrate:down\n",
        "20240104000000_orders.sql": "-- migrate:up\nCREATE TABLE orders (id bigint);\n"
                                     "-- migrate:down\nDROP TABLE orders;\n",
    })
    run_as_tool(database_url, [USERS, EMAIL_IDX, DBMATE_DDL, "INSERT INTO schema_migrations VALUES "
                               "('20240101000000'), ('20240102000000'), ('20240103000000')"])
    cli, result = adopt(database_url, target, "dbmate", source)
    assert result.exit_code == 0, result.stdout + result.stderr
    data = result.json
    assert data["numbering"] == "kept" and data["table"] == "public.schema_migrations"
    assert [f["filename"] for f in data["files"]] == ["20240101000000_users.sql", "20240102000000_email_idx.sql",
                                                       "20240103000000_nothing.sql", "20240104000000_orders.sql"]
    assert data["recorded"] == ["20240101000000", "20240102000000", "20240103000000"]
    loaded = load_migrations(target).by_version()
    assert loaded[20240102000000].no_transaction and not loaded[20240101000000].no_transaction
    assert "poststack:no-transaction" in loaded[20240102000000].rollback.text
    assert history(database_url) == [("20240101000000", "adopt"), ("20240102000000", "adopt"),
                                     ("20240103000000", "adopt")]
    assert audited(database_url) == [("adopt", "adopt", 20240101000000), ("adopt", "adopt", 20240102000000),
                                     ("adopt", "adopt", 20240103000000)]
    # The one dbmate never ran is pending, and migrate applies exactly it.
    migrate = cli.run_command("migrate")
    assert migrate.exit_code == 0 and "20240104000000" in migrate.stdout
    assert_round_trip(cli)


def test_dbmate_multi_statement_no_transaction_is_reported(dirs, database_url):
    source, target = dirs
    write_tree(source, {"1_two.sql": "-- migrate:up transaction:false\nCREATE TABLE a (id int);\n"
                                     "CREATE TABLE b (id int);\n-- migrate:down\nDROP TABLE a, b;\n"})
    _, result = adopt(database_url, target, "dbmate", source, "--dry-run")
    assert result.exit_code == 0
    kinds = [(n["kind"], n["path"]) for n in result.json["notes"]]
    assert ("changed_semantics", "1_two.sql") in kinds
    assert not target.exists()  # a dry run writes nothing


def test_golang_migrate_dirty_version_is_reported_never_adopted(database_url, dirs):
    source, target = dirs
    write_tree(source, {
        "000001_users.up.sql": f"BEGIN;\n{USERS}COMMIT;\n", "000001_users.down.sql": "DROP TABLE users;\n",
        "000002_email_idx.up.sql": EMAIL_IDX, "000002_email_idx.down.sql": "DROP INDEX users_email_idx;\n",
        "000003_orders.up.sql": "CREATE TABLE orders (id bigint);\nCREATE TABLE order_lines (id bigint);\n",
        "000003_orders.down.sql": "DROP TABLE order_lines, orders;\n",
        "README.md": "not a migration",
    })
    # golang-migrate sets dirty before running a file and clears it after: 3 failed part way.
    run_as_tool(database_url, [f"BEGIN;\n{USERS}COMMIT;\n", EMAIL_IDX, "CREATE TABLE orders (id bigint)",
                               GOLANG_MIGRATE_DDL, "INSERT INTO schema_migrations VALUES (3, true)"])
    _, result = adopt(database_url, target, "golang-migrate", source)
    assert result.exit_code == 1, result.stdout + result.stderr
    steps = {s["tool_version"]: s["action"] for s in result.json["history"]}
    assert steps == {"000001": "adopt", "000002": "adopt", "000003": "dirty"}
    assert result.json["refused"] == ["000003"]
    dirty = result.json["history"][2]
    assert dirty["status"] == "partial" and "not done: table public.order_lines: not created" in dirty["evidence"]
    assert history(database_url) == [("000001", "adopt"), ("000002", "adopt")]
    loaded = load_migrations(target).by_version()
    assert "BEGIN" not in loaded[1].sql and "COMMIT" not in loaded[1].sql  # the wrapper poststack replaces
    assert loaded[2].no_transaction  # CONCURRENTLY: golang-migrate ran it outside a transaction
    assert not loaded[3].no_transaction


def test_refused_claim_records_nothing_and_shows_the_evidence(database_url, dirs):
    source, target = dirs
    write_tree(source, {"1_users.up.sql": USERS, "2_orders.up.sql": "CREATE TABLE orders (id bigint);\n"})
    run_as_tool(database_url, [USERS, GOLANG_MIGRATE_DDL, "INSERT INTO schema_migrations VALUES (2, false)"])
    cli, result = adopt(database_url, target, "golang-migrate", source)
    assert result.exit_code == 1
    steps = {s["tool_version"]: (s["action"], s["status"]) for s in result.json["history"]}
    assert steps == {"1": ("blocked", "proven"), "2": ("refused", "absent")}
    refused = next(s for s in result.json["history"] if s["action"] == "refused")
    assert "table public.orders: missing" in refused["evidence"]
    with psycopg.connect(database_url) as conn:  # refused: not even the history schema was created
        assert conn.execute("SELECT to_regnamespace('poststack')").fetchone() == (None,)
    assert (target / "2_orders.sql").is_file()  # the files are written all the same
    text = cli.run_command("adopt", ["--from", "golang-migrate", "--source", str(source), "--dry-run"])
    assert "Not adopted 2" in text.stdout and "table public.orders: missing" in text.stdout


def test_flyway_versions_are_renumbered_and_repeatables_reported(database_url, dirs):
    source, target = dirs
    write_tree(source, {
        "V1__users.sql": USERS, "U1__users.sql": "DROP TABLE users;\n",
        "V1.1__email_idx.sql": "CREATE INDEX users_email_idx ON users (email);\n",
        "U1.1__email_idx.sql": "DROP INDEX users_email_idx;\n",
        "sub/V2__seed.sql": "INSERT INTO users VALUES (1, 'a@example.com');\n",
        "U2__seed.sql": "DELETE FROM users WHERE id = 1;\n",
        "R__users_view.sql": "CREATE OR REPLACE VIEW users_view AS SELECT id FROM users;\n",
        "V10__orders.sql": "CREATE TABLE orders (id bigint);\n", "U10__orders.sql": "DROP TABLE orders;\n",
    })
    run_as_tool(database_url, [USERS, "CREATE INDEX users_email_idx ON users (email)",
                               "INSERT INTO users VALUES (1, 'a@example.com')"])
    flyway_history(database_url, source, [("1", "users", "SQL", "V1__users.sql", True),
                                          ("1.1", "email idx", "SQL", "V1.1__email_idx.sql", True),
                                          ("2", "seed", "SQL", "sub/V2__seed.sql", True),
                                          ("10", "orders", "SQL", "V10__orders.sql", False)])
    cli, result = adopt(database_url, target, "flyway", source)
    data = result.json
    assert result.exit_code == 1  # R__ was not carried, 10 failed in Flyway
    assert data["numbering"] == "renumbered"
    assert [f["filename"] for f in data["files"]] == ["001_1__users.sql", "002_1.1__email_idx.sql",
                                                       "003_2__seed.sql", "004_10__orders.sql"]
    assert {(n["kind"], n["path"]) for n in data["notes"]} >= {("not_carried", "R__users_view.sql")}
    assert {s["tool_version"]: s["action"] for s in data["history"]} == {
        "1": "adopt", "1.1": "adopt", "2": "adopt", "10": "dirty"}
    assert history(database_url) == [("001", "adopt"), ("002", "adopt"), ("003", "adopt")]
    with psycopg.connect(database_url) as conn:
        assert History().row(conn, 1).applied_by == "deployer"
    assert cli.run_command("migrate").exit_code == 0  # applies 004, which Flyway failed to
    assert_round_trip(cli)


def test_flyway_file_edited_after_it_was_applied_is_refused(database_url, dirs):
    source, target = dirs
    write_tree(source, {"V1__users.sql": USERS, "V2__orders.sql": "CREATE TABLE orders (id bigint);\n"})
    run_as_tool(database_url, [USERS, "CREATE TABLE orders (id bigint)"])
    flyway_history(database_url, source, [("1", "users", "SQL", "V1__users.sql", True),
                                          ("2", "orders", "SQL", "V2__orders.sql", True)])
    (source / "V2__orders.sql").write_text("CREATE TABLE orders (id bigint, note text);\n")
    _, result = adopt(database_url, target, "flyway", source)
    assert result.exit_code == 1
    assert [(s["tool_version"], s["action"]) for s in result.json["history"]] == [("1", "blocked"), ("2", "refused")]
    assert "not the file Flyway applied" in result.json["history"][1]["reason"]
    assert history(database_url) == []


def test_diesel_initial_setup_forces_renumbering_and_metadata_is_carried(database_url, dirs):
    source, target = dirs
    setup = "CREATE OR REPLACE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS VOID AS $$\nBEGIN\n" \
            "    RETURN;\nEND;\n$$ LANGUAGE plpgsql;\n"
    write_tree(source, {
        "00000000000000_diesel_initial_setup/up.sql": setup,
        "00000000000000_diesel_initial_setup/down.sql":
            "DROP FUNCTION IF EXISTS diesel_manage_updated_at(_tbl regclass);\n",
        "2024-01-01-120000_users/up.sql": USERS, "2024-01-01-120000_users/down.sql": "DROP TABLE users;\n",
        "2024-01-02-120000_email_idx/up.sql": EMAIL_IDX,
        "2024-01-02-120000_email_idx/down.sql": "DROP INDEX CONCURRENTLY users_email_idx;\n",
        "2024-01-02-120000_email_idx/metadata.toml": "run_in_transaction = false\n",
        "2024-01-03-120000_empty/up.sql": "-- nothing to do\n", "2024-01-03-120000_empty/down.sql": "",
    })
    run_as_tool(database_url, [setup, USERS, EMAIL_IDX, DIESEL_DDL, "INSERT INTO __diesel_schema_migrations "
                               "(version) VALUES ('00000000000000'), ('20240101120000'), ('20240102120000'), "
                               "('20240103120000')"])
    cli, result = adopt(database_url, target, "diesel", source)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert [f["filename"] for f in result.json["files"]] == [
        "001_00000000000000__diesel_initial_setup.sql", "002_20240101120000__users.sql",
        "003_20240102120000__email_idx.sql", "004_20240103120000__empty.sql"]
    loaded = load_migrations(target).by_version()
    assert loaded[3].no_transaction and "no-transaction" in loaded[3].rollback.text
    assert "no-op" in loaded[4].sql and loaded[4].rollback is not None
    assert [v for v, _ in history(database_url)] == ["001", "002", "003", "004"]
    assert_round_trip(cli)


def test_yoyo_applied_by_yoyo_itself(database_url, dirs):
    from yoyo import get_backend, read_migrations

    source, target = dirs
    write_tree(source, {
        "0001.users.sql": USERS, "0001.users.rollback.sql": "DROP TABLE users;\n",
        "0002.email-idx.sql": f"-- depends: 0001.users\n-- transactional: false\n{EMAIL_IDX}",
        "0002.email-idx.rollback.sql": "-- transactional: false\nDROP INDEX CONCURRENTLY users_email_idx;\n",
    })
    backend = get_backend(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations(str(source))))
    backend.connection.close()
    write_tree(source, {  # written after yoyo ran: pending
        "0003.orders.sql": "CREATE TABLE orders (id bigint);\n", "0003.orders.rollback.sql": "DROP TABLE orders;\n",
        "0004.backfill.py": "from yoyo import step\nsteps = [step('SELECT 1')]\n",
    })
    cli, result = adopt(database_url, target, "yoyo", source)
    assert result.exit_code == 1  # the Python migration is not carried
    assert [n["path"] for n in result.json["notes"] if n["kind"] == "not_carried"] == ["0004.backfill.py"]
    assert [f["filename"] for f in result.json["files"]] == ["001_0001.users.sql", "002_0002.email-idx.sql",
                                                              "003_0003.orders.sql"]
    assert result.json["recorded"] == ["001", "002"]
    assert load_migrations(target).by_version()[2].no_transaction
    assert cli.run_command("migrate").exit_code == 0
    assert_round_trip(cli)
    # yoyo's tables stay, and dropping them later is not drift
    execute(database_url, "DROP TABLE _yoyo_migration, _yoyo_log, _yoyo_version, yoyo_lock")
    assert cli.run_command("diagnose").exit_code == 0


def test_sqitch_plan_and_registry(database_url, dirs):
    source, target = dirs
    write_tree(source, {
        "sqitch.plan": "%syntax-version=1.0.0\n%project=shop\n\n"
                       "users 2024-01-01T10:00:00Z Ann <ann@example.com> # users\n"
                       "orders [users] 2024-01-02T10:00:00Z Ann <ann@example.com> # orders\n"
                       "@v1.0 2024-01-03T10:00:00Z Ann <ann@example.com> # release\n",
        "deploy/users.sql": f"-- Deploy shop:users to pg\n\nBEGIN;\n\n{USERS}\nCOMMIT;\n",
        "revert/users.sql": "BEGIN;\nDROP TABLE users;\nCOMMIT;\n",
        "verify/users.sql": "SELECT id FROM users WHERE false;\n",
        "deploy/orders.sql": "BEGIN;\nCREATE TABLE orders (id bigint, user_id bigint REFERENCES users);\nCOMMIT;\n",
        "revert/orders.sql": "BEGIN;\nDROP TABLE orders;\nCOMMIT;\n",
    })
    run_as_tool(database_url, [USERS, SQITCH_DDL, "INSERT INTO sqitch.projects VALUES ('shop', NULL, now(), 'Ann', "
                               "'ann@example.com')", "INSERT INTO sqitch.changes (change_id, change, project, "
                               "committer_name, committer_email, planned_at, planner_name, planner_email) VALUES "
                               "('a1', 'users', 'shop', 'Ann', 'ann@example.com', '2024-01-01T10:00:00Z', 'Ann', "
                               "'ann@example.com')"])
    cli, result = adopt(database_url, target, "sqitch", source)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert [f["filename"] for f in result.json["files"]] == ["001_users.sql", "002_orders.sql"]
    assert {s["tool_version"]: s["action"] for s in result.json["history"]} == {"users": "adopt", "orders": "pending"}
    loaded = load_migrations(target).by_version()
    assert "BEGIN" not in loaded[1].sql and "BEGIN" not in loaded[1].rollback.text
    assert cli.run_command("migrate").exit_code == 0
    assert_round_trip(cli)
    execute(database_url, "DROP SCHEMA sqitch CASCADE")  # the whole registry is sqitch's: never drift
    assert cli.run_command("diagnose").exit_code == 0
    execute(database_url, "CREATE TABLE hand_made (id int)")  # ...but the rest of the database still is
    assert cli.run_command("diagnose", ["--format", "json"]).json["issues"][0]["code"] == "schema_drift"


def test_existing_poststack_file_is_never_overwritten(database_url, dirs):
    source, target = dirs
    write_tree(source, {"1_users.up.sql": USERS})
    write_tree(target, {"1_users.sql": "CREATE TABLE something_else (id int);\n"})
    _, result = adopt(database_url, target, "golang-migrate", source)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "1_users.sql exists with other content" in result.stderr
    assert (target / "1_users.sql").read_text() == "CREATE TABLE something_else (id int);\n"
    assert history(database_url) == []


def test_second_adopt_is_idempotent(database_url, dirs):
    source, target = dirs
    write_tree(source, {"1_users.sql": f"-- migrate:up\n{USERS}-- migrate:down\nDROP TABLE users;\n"})
    run_as_tool(database_url, [USERS, DBMATE_DDL, "INSERT INTO schema_migrations VALUES ('1')"])
    adopt(database_url, target, "dbmate", source)
    _, again = adopt(database_url, target, "dbmate", source)
    assert again.exit_code == 0
    assert [f["action"] for f in again.json["files"]] == ["unchanged"]
    assert [s["action"] for s in again.json["history"]] == ["already_recorded"]
    assert history(database_url) == [("1", "adopt")]


def test_history_from_an_older_poststack_accepts_adopt_rows(database_url, dirs):
    source, target = dirs
    write_tree(source, {"1_users.sql": f"-- migrate:up\n{USERS}"})
    run_as_tool(database_url, [USERS, DBMATE_DDL, "INSERT INTO schema_migrations VALUES ('1')"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        History().ensure(conn)
        conn.execute("ALTER TABLE poststack.migrations DROP CONSTRAINT migrations_source_check, ADD CONSTRAINT "
                     "migrations_source_check CHECK (source IN ('migrate', 'recover', 'repair', 'baseline', 'import'))")
        conn.execute("COMMENT ON TABLE poststack.migrations IS 'poststack history layout 1'")  # as it wrote it
    _, result = adopt(database_url, target, "dbmate", source)
    assert result.exit_code == 0, result.stderr
    assert history(database_url) == [("1", "adopt")]


def test_same_directory_and_unknown_layout_are_bad_usage(database_url, dirs, tmp_path):
    source, _ = dirs
    write_tree(source, {"1_users.up.sql": USERS})
    _, same = adopt(database_url, source, "golang-migrate", source)
    assert same.exit_code == 2 and "also the poststack migrations directory" in same.stderr
    execute(database_url, "CREATE TABLE schema_migrations (name text)")
    _, wrong = adopt(database_url, tmp_path / "out", "golang-migrate", source)
    assert wrong.exit_code == 2 and "not a golang-migrate history table" in wrong.stderr
    assert not (tmp_path / "out").exists()
    with psycopg.connect(database_url) as conn:  # bad input: the database is as it was
        assert conn.execute("SELECT to_regnamespace('poststack')").fetchone() == (None,)


def test_dry_run_changes_neither_files_nor_database(database_url, dirs):
    source, target = dirs
    write_tree(source, {"1_users.sql": f"-- migrate:up\n{USERS}"})
    run_as_tool(database_url, [USERS, DBMATE_DDL, "INSERT INTO schema_migrations VALUES ('1')"])
    cli, result = adopt(database_url, target, "dbmate", source, "--dry-run")
    assert result.exit_code == 0 and result.json["dry_run"] and result.json["recorded"] == ["1"]
    assert not target.exists()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regnamespace('poststack')").fetchone() == (None,)
    help_text = cli.run_command("adopt", ["--help"]).stdout
    assert all(tool in help_text for tool in ("flyway", "golang-migrate", "dbmate", "diesel", "yoyo", "sqitch"))
