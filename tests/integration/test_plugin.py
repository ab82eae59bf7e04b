"""The plugin as a user meets it: a project with its own migrations, run by pytest in a subprocess; and the
pieces behind the fixtures (templates, database cleanup, the CLI runner, scenarios) on a real server."""

import json
import textwrap

import psycopg
import pytest

from poststack.errors import MigrationFailed, UsageError
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing import (
    SCENARIOS,
    CLITestRunner,
    CommandResult,
    DatabaseFactory,
    TemplateCache,
    apply_edits,
    assert_rollbacks_restore_schema,
    scenario_names,
    template_name,
)
from poststack.testing import scenario as copy_scenario

pytest_plugins = ["pytester"]

USER_MIGRATIONS = {
    "migrations/001_widgets.sql": "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);",
    "migrations/001_widgets.rollback.sql": "DROP TABLE widgets;",
    "migrations/002_widget_name_idx.sql": "CREATE INDEX widgets_name_idx ON widgets (name);",
    "migrations/002_widget_name_idx.rollback.sql": "DROP INDEX widgets_name_idx;",
}
USER_PYPROJECT = """
    [tool.poststack]
    migrations_path = "migrations"
"""
USER_TESTS = """
    import pytest

    from poststack.testing import assert_rollbacks_restore_schema


    def test_head_database_has_everything(migrated_database_url, db_helper):
        assert db_helper.table_exists("widgets") and db_helper.index_exists("widgets_name_idx")
        assert db_helper.applied_versions() == [1, 2]


    def test_every_rollback_restores_the_schema(migration_runner, db_helper):
        assert_rollbacks_restore_schema(migration_runner, db_helper)


    def test_cli(poststack_cli_runner):
        result = poststack_cli_runner.run_command("migrate", ["--format", "json"])
        assert result.exit_code == 0, result
        assert [step["version"] for step in result.json["applied"]] == [1, 2]


    def test_database_tests_are_marked(request, database_url):
        assert request.node.get_closest_marker("database") and request.node.get_closest_marker("integration")


    def test_without_a_database(request):
        assert request.node.get_closest_marker("database") is None


    @pytest.mark.slow
    def test_slow(migrated_database_url):
        pass
"""


@pytest.fixture
def user_project(pytester):
    for name, text in USER_MIGRATIONS.items():
        path = pytester.path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    pytester.makefile(".toml", pyproject=textwrap.dedent(USER_PYPROJECT))
    pytester.makepyfile(test_widgets=textwrap.dedent(USER_TESTS))
    return pytester


def test_user_project_sees_fixtures_and_markers_and_passes(user_project):
    result = user_project.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.fnmatch_lines(["*slow: run with --poststack-run-slow or -m slow*"])


def test_marker_expressions_select_slow_tests_and_tests_without_a_server(user_project):
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-m", "slow or not database", "-v")
    result.assert_outcomes(passed=2, deselected=4)
    result.stdout.fnmatch_lines(["*test_without_a_database PASSED*", "*test_slow PASSED*"])


def test_markers_are_registered(pytester):
    pytester.makeini("[pytest]\npoststack = true\n")
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.integration:*", "@pytest.mark.database:*", "@pytest.mark.slow:*"])


def test_failing_user_test_and_broken_migration_are_reported(user_project):
    user_project.makepyfile(test_failing="""
        def test_missing_table(migrated_database_url, db_helper):
            assert db_helper.table_exists("gadgets")
    """)
    user_project.makepyfile(test_broken="""
        import pytest

        @pytest.fixture
        def migrations_dir(make_migrations):
            return make_migrations({"001_ok.sql": "CREATE TABLE ok (id int);",
                                    "002_bad.sql": "CREATE TABLE bad (id int REFERENCES nowhere);"})

        def test_uses_broken_migrations(migrated_database_url):
            pass
    """)
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "test_failing.py", "test_broken.py")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_uses_broken_migrations*",
        "migrated_database_url: migrations in * cannot be applied: *002_bad.sql:1: migration 002 failed: "
        "relation \"nowhere\" does not exist",
        "*assert False*",
        "*table_exists('gadgets')*"])
    assert "During handling" not in result.stdout.str() and "templates.py" not in result.stdout.str()


def test_xdist_workers_share_one_server_and_one_template(user_project, tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(record))
    user_project.makepyfile(test_parallel="""
        import json, os, uuid
        from pathlib import Path
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_record(n, postgres_server, migrated_database_url, db_helper):
            facts = {"worker": os.environ.get("PYTEST_XDIST_WORKER"), "server": postgres_server.url,
                     "database": db_helper.fetch_value("SELECT current_database()"),
                     "built": db_helper.fetch_value("SELECT min(applied_at)::text FROM poststack.migrations")}
            Path(os.environ["RECORD_DIR"], uuid.uuid4().hex).write_text(json.dumps(facts))
    """)
    # --run-slow: the project's slow test runs too, on whichever worker gets it.
    result = user_project.runpytest_subprocess("-p", "xdist", "-n", "2", "-p", "no:cacheprovider", "--run-slow")
    result.assert_outcomes(passed=12)
    facts = [json.loads(p.read_text()) for p in record.iterdir()]
    assert {f["worker"] for f in facts} == {"gw0", "gw1"}
    assert len({f["server"] for f in facts}) == 1
    assert len({f["database"] for f in facts}) == 6
    assert len({f["built"] for f in facts}) == 1  # every clone comes from one template, migrated once


# -- templates and databases ---------------------------------------------------------------------------------
TWO_TABLES = {"001_a.sql": "CREATE TABLE a (id int);", "002_b.sql": "CREATE TABLE b (id int);"}


def database_names(server, like: str) -> set[str]:
    with psycopg.connect(server.url) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [like])}


def test_changed_file_means_a_new_template(poststack_templates, poststack_databases, make_migrations,
                                           db_helper):
    directory = make_migrations(TWO_TABLES)
    first = poststack_templates.template_for(directory)
    assert poststack_templates.template_for(directory) == first
    (directory / "002_b.sql").write_text("CREATE TABLE b (id int, label text);")
    second = poststack_templates.template_for(directory)
    assert second != first
    with poststack_databases.scratch(template=second) as url, psycopg.connect(url) as conn:
        columns = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute "
                                              "WHERE attrelid = 'b'::regclass AND attnum > 0 ORDER BY attnum")]
    assert columns == ["id", "label"]


def test_processes_share_a_template_and_the_last_one_out_drops_it(postgres_server, make_migrations):
    # Files no other test uses: the session's own template cache would hold their template otherwise.
    directory = make_migrations({"001_only_here.sql": "CREATE TABLE only_here (id int);"})
    worker_a, worker_b = TemplateCache(postgres_server), TemplateCache(postgres_server)
    name = worker_a.template_for(directory)
    assert worker_b.template_for(directory) == name
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", [name]).fetchone() == (
            False,)
    worker_a.close()
    assert database_names(postgres_server, name) == {name}  # b still holds it
    clone = worker_b.clone(directory)
    worker_b.databases.drop(clone)
    worker_b.close()
    assert database_names(postgres_server, name) == set()


def test_failed_template_build_names_the_file_and_leaves_nothing(postgres_server, make_migrations):
    directory = make_migrations({**TWO_TABLES, "003_bad.sql": "ALTER TABLE nowhere ADD COLUMN x int;"})
    cache = TemplateCache(postgres_server)
    try:
        with pytest.raises(MigrationFailed, match=r"003_bad\.sql.*\"nowhere\" does not exist"):
            cache.template_for(directory)
        with pytest.raises(MigrationFailed, match=r"003_bad\.sql"):  # remembered, not rebuilt per test
            cache.template_for(directory)
    finally:
        cache.close()
    from poststack.testing import migrations_fingerprint

    assert database_names(postgres_server, template_name(migrations_fingerprint(directory)) + "%") == set()


def test_clones_do_not_share_data(poststack_templates, poststack_databases, make_migrations):
    template = poststack_templates.template_for(make_migrations(TWO_TABLES))
    with poststack_databases.scratch(template=template) as one, poststack_databases.scratch(template=template) as two:
        with psycopg.connect(one) as conn:
            conn.execute("INSERT INTO a VALUES (1)")
        with psycopg.connect(two) as conn:
            assert conn.execute("SELECT count(*) FROM a").fetchone() == (0,)


def test_scratch_database_is_dropped_on_failure_with_connections_open(postgres_server):
    factory = DatabaseFactory(postgres_server)
    with pytest.raises(RuntimeError), factory.scratch(prefix="pst_fail") as url:
        left_open = psycopg.connect(url)
        name = left_open.info.dbname
        raise RuntimeError("the test failed")
    factory.close()
    assert database_names(postgres_server, name) == set()
    with pytest.raises(psycopg.OperationalError):  # its backend was terminated by DROP ... WITH (FORCE)
        left_open.execute("SELECT 1")
    left_open.close()


def test_rollback_check_names_the_rollback_that_forgets_something(make_migrations, database_url, db_helper):
    directory = make_migrations({
        "001_t.sql": "CREATE TABLE t (id int, v int);", "001_t.rollback.sql": "DROP TABLE t;",
        "002_f.sql": "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                     "CREATE INDEX t_v_idx ON t (v);",
        "002_f.rollback.sql": "DROP INDEX t_v_idx;"})
    with pytest.raises(AssertionError, match=r"rolling back 002_f\.sql did not restore the schema:\n"
                                             r"  function public\.f\(\): left behind by rollback"):
        assert_rollbacks_restore_schema(MigrationRunner(database_url, directory), db_helper)
    assert db_helper.applied_versions() == [1]  # it stopped at the first rollback that went wrong


# -- the CLI runner ----------------------------------------------------------------------------------------
def test_cli_runner_in_process_and_subprocess_agree(database_url, migrations_dir, cli_runner):
    real = CLITestRunner(database_url, migrations_dir, subprocess=True)
    for runner in (real, cli_runner):  # the subprocess first: it starts from an empty database
        bad = runner.run_command("migrate", ["--target", "99"])
        assert bad.exit_code == 2 and bad.stderr.startswith("error: --target 99") and "Traceback" not in bad.stderr
    up = real.run_command("migrate", ["--target", "002", "--format", "json"])
    assert up.exit_code == 0, up
    status_real = real.run_command("migration-status", ["--format", "json"]).json
    status_here = cli_runner.run_command("migration-status", ["--format", "json"]).json
    assert status_real == status_here and status_here["current_version"] == "002"
    assert status_here["lock"] is None


def test_cli_runner_moves_root_options_before_db(database_url, migrations_dir, db_helper):
    runner = CLITestRunner(database_url, migrations_dir)
    argv = runner.argv("migrate", ["--target", "1", "--history-schema", "deploy", "-q"])
    assert argv[4:] == ["--history-schema", "deploy", "-q", "db", "migrate", "--target", "1"]
    assert runner.run_command("migrate", ["--target", "1", "--history-schema", "deploy"]).exit_code == 0
    assert db_helper.table_exists("deploy.migrations") and not db_helper.schema_exists("poststack")


def test_json_is_none_unless_asked_and_loud_when_broken(cli_runner):
    plain = cli_runner.run_command("migration-status")
    assert plain.exit_code == 0 and plain.json is None
    assert cli_runner.run_command("migration-status", ["--format=json"]).json["current_version"] is None
    broken = CommandResult(["db", "migration-status", "--format", "json"], 0, "Applied 1 migration(s)", "")
    with pytest.raises(AssertionError, match="is not JSON"):
        _ = broken.json


# -- scenarios and the db helper ---------------------------------------------------------------------------
def test_every_documented_scenario_is_shipped_and_loads_cleanly():
    assert scenario_names() == sorted(SCENARIOS)
    for name in scenario_names():
        migrations = load_migrations(copy_scenario(name))
        assert migrations.problems == [] and len(migrations) >= 3, name
    with pytest.raises(UsageError, match=r"unknown scenario 'nope'.*basic"):
        copy_scenario("nope")


def test_checksum_mismatch_scenario_edits(scenario, database_url):
    directory = scenario("checksum_mismatch")
    runner = MigrationRunner(database_url, directory)
    runner.migrate()
    apply_edits(directory, "cosmetic_edits")
    assert [(c.version, c.kind) for c in runner.status().changed] == [(2, "cosmetic_change")]
    apply_edits(directory)
    assert [(c.version, c.kind) for c in runner.status().changed] == [(2, "checksum_mismatch")]


@pytest.mark.parametrize("migrations_dir", ["complex"], indirect=["migrations_dir"])
def test_db_helper_sees_complex_objects(migrated_database_url, db_helper):
    assert db_helper.type_exists("shop.order_status") and not db_helper.type_exists("shop.orders")
    assert db_helper.function_exists("shop.touch_updated_at") and db_helper.function_exists("shop.customer_total")
    assert db_helper.trigger_exists("shop.orders", "orders_touch_updated_at")
    assert db_helper.view_exists("shop.open_orders") and db_helper.view_exists("shop.order_totals")
    assert not db_helper.table_exists("shop.open_orders")
    db_helper.execute("INSERT INTO shop.customers (email) VALUES ('c@example.org');"
                      "INSERT INTO shop.orders (customer_id, amount) VALUES (1, 10), (1, 5)")
    assert db_helper.fetch_value("SELECT shop.customer_total(%s)", [1]) == 15


@pytest.mark.parametrize("migrations_dir", ["unified_project"], indirect=["migrations_dir"])
def test_apply_untracked_and_track_only_make_history_and_schema_disagree(db_helper, migration_runner):
    db_helper.apply_untracked(1)
    db_helper.apply_untracked("002_create_sessions.sql")  # a version, a file name or a path
    assert db_helper.table_exists("sessions") and db_helper.function_exists("expire_sessions")
    assert db_helper.applied_versions() == []
    db_helper.track_only("003")
    assert db_helper.applied_versions() == [3] and not db_helper.schema_exists("audit")
    assert [m.version for m in migration_runner.status().pending] == [1, 2, 4]
