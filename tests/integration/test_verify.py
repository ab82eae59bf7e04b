"""``poststack db verify`` and its library: rollbacks proven on a scratch database, forgotten objects named,
failures reported, locks read from pg_locks, and the target database left alone."""

import pytest
from psycopg.conninfo import conninfo_to_dict

from poststack.db.connection import connect
from poststack.engine.verify import (
    ScratchDatabaseError,
    Verifier,
    scratch_database,
    verify_migration,
    verify_migrations,
)
from poststack.errors import UsageError
from poststack.source.files import load_migrations
from poststack.testing import CLITestRunner

BASE = {
    "001_users.sql": """
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, m mood);
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE INDEX users_name_idx ON users (name);
    """,
    "001_users.rollback.sql": "DROP FUNCTION touch(); DROP TABLE users; DROP TYPE mood;",
}

# (migration, rollback that forgets something, the line verify must print about it)
FORGETFUL = {
    "index": ("CREATE INDEX users_m_idx ON users (m);\nALTER TABLE users ADD COLUMN age int;",
              "ALTER TABLE users DROP COLUMN age;",
              "index public.users_m_idx: left behind by rollback"),
    "default": ("ALTER TABLE users ADD COLUMN age int;\nALTER TABLE users ALTER COLUMN name SET DEFAULT 'x';",
                "ALTER TABLE users DROP COLUMN age;",
                "column public.users.name: default changed from NULL to 'x'::text"),
    "enum label": ("ALTER TYPE mood ADD VALUE 'meh';\nALTER TABLE users ADD COLUMN age int;",
                   "ALTER TABLE users DROP COLUMN age;",
                   "type public.mood: labels changed from [sad, happy] to [sad, happy, meh]"),
    "trigger": ("ALTER TABLE users ADD COLUMN age int;\n"
                "CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();",
                "ALTER TABLE users DROP COLUMN age;",
                "trigger public.users.users_touch: left behind by rollback"),
    "comment": ("ALTER TABLE users ADD COLUMN nick text;\nCOMMENT ON TABLE users IS 'people';",
                "ALTER TABLE users DROP COLUMN nick;",
                "comment on table public.users: left behind by rollback"),
    "recreated differently": ("DROP INDEX users_name_idx;",
                              "CREATE INDEX users_name_idx ON users (lower(name));",
                              "index public.users_name_idx: definition changed from CREATE INDEX users_name_idx "
                              "ON public.users USING btree (name) to CREATE INDEX users_name_idx "
                              "ON public.users USING btree (lower(name))"),
}


@pytest.fixture
def target_url(database_url):
    """The database verify is pointed at; it must never be changed by verify."""
    return database_url


def databases_owned_by(url: str, role: str) -> set[str]:
    # By owner, not by listing the server: other xdist workers create and drop databases concurrently.
    with connect(url, autocommit=True) as conn:
        return {name for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datdba = to_regrole(%s)", [role]).fetchall()}


@pytest.mark.parametrize("forgotten", list(FORGETFUL))
def test_a_rollback_that_forgets_something_fails_and_names_it(forgotten, make_migrations, target_url):
    up, down, expected = FORGETFUL[forgotten]
    directory = make_migrations({**BASE, "002_change.sql": up, "002_change.rollback.sql": down})
    report = verify_migrations(target_url, directory)
    first, second = report.migrations
    assert first.status == "passed"
    assert second.status == "failed", second
    assert second.differences == [expected]
    assert not report.ok


def test_correct_rollbacks_pass_and_the_target_database_is_untouched(make_migrations, target_url, role_url):
    directory = make_migrations({
        **BASE,
        "002_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users (id));\n"
                          "COMMENT ON TABLE orders IS 'orders';",
        "002_orders.rollback.sql": "DROP TABLE orders;",
    })
    deployer = role_url("CREATEDB")  # its scratch databases are the only ones it owns
    role = conninfo_to_dict(deployer)["user"]
    report = verify_migrations(deployer, directory)
    assert [(m.version_text, m.status) for m in report.migrations] == [("001", "passed"), ("002", "passed")]
    assert report.ok
    assert databases_owned_by(target_url, role) == set()  # the scratch database was dropped
    with connect(target_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace <> ALL(ARRAY["
                            "'pg_catalog'::regnamespace, 'information_schema'::regnamespace, "
                            "'pg_toast'::regnamespace])").fetchone() == (0,)
        assert conn.execute("SELECT to_regnamespace('poststack')").fetchone() == (None,)


def test_a_failing_rollback_is_reported_and_later_migrations_are_still_verified(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_bad.sql": "CREATE TABLE t2 (a int);",
        "002_bad.rollback.sql": "DROP TABLE t2;\nDROP TABLE no_such_table;",
        "003_after.sql": "ALTER TABLE t2 ADD COLUMN b int;",
        "003_after.rollback.sql": "ALTER TABLE t2 DROP COLUMN b;",
    })
    report = verify_migrations(target_url, directory)
    bad, after = report.migrations[1:]
    assert (bad.status, bad.phase) == ("error", "rollback")
    assert "002_bad.rollback.sql" in bad.error and 'table "no_such_table" does not exist' in bad.error
    assert after.status == "passed"  # the failed rollback left 002 applied: 003 still had its schema


def test_a_broken_rollback_does_not_hide_the_verdicts_on_later_migrations(make_migrations, target_url):
    up, down, _ = FORGETFUL["index"]
    directory = make_migrations({
        **BASE,
        "002_change.sql": up, "002_change.rollback.sql": down,
        "003_more.sql": "ALTER TABLE users ADD COLUMN email text;",
        "003_more.rollback.sql": "ALTER TABLE users DROP COLUMN email;",
    })
    report = verify_migrations(target_url, directory)
    change, more = report.migrations[1:]
    # the leftover index makes the re-apply fail: reported, and 003 is verified on a rebuilt scratch schema
    assert change.status == "failed" and change.phase == "reapply" and "already exists" in change.error
    assert more.status == "passed"


def test_a_rollback_that_drops_too_much_is_named_and_later_migrations_see_the_right_schema(
        make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_tags.sql": "CREATE TABLE tags (name text);",
        "002_tags.rollback.sql": "DROP TABLE tags;\nDROP INDEX users_name_idx;",
        "003_more.sql": "DROP INDEX users_name_idx;",
        "003_more.rollback.sql": "CREATE INDEX users_name_idx ON users (name);",
    })
    tags, more = verify_migrations(target_url, directory).migrations[1:]
    assert (tags.status, tags.differences) == ("failed", ["index public.users_name_idx: missing after rollback"])
    assert more.status == "passed"  # verified on a rebuilt schema that has users_name_idx, as production has


def test_a_migration_that_fails_to_apply_is_an_error_and_its_successors_are_skipped(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_typo.sql": "ALTER TABLE users ADD COLUMN x int;\nALTER TABLE userz ADD COLUMN y int;",
        "002_typo.rollback.sql": "ALTER TABLE users DROP COLUMN x;",
        "003_next.sql": "SELECT 1;",
        "003_next.rollback.sql": "SELECT 1;",
    })
    report = verify_migrations(target_url, directory)
    typo, following = report.migrations[1:]
    assert (typo.status, typo.phase) == ("error", "apply")
    assert "002_typo.sql:2" in typo.error and 'relation "userz" does not exist' in typo.error
    assert following.status == "skipped" and "migration 002 failed" in following.reason


def test_a_migration_without_rollback_is_unverifiable_not_passed(make_migrations, target_url):
    directory = make_migrations({**BASE, "002_forever.sql": "ALTER TABLE users ADD COLUMN z int;"})
    report = verify_migrations(target_url, directory)
    forever = report.migrations[1]
    assert forever.status == "unverifiable" and "002_forever.rollback.sql" in forever.reason
    assert not report.ok
    assert verify_migrations(target_url, directory, allow_unverifiable=True).ok


def test_the_lock_report_names_the_mode_each_relation_got(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_locks.sql": "SET lock_timeout = '5s';\n"
                         "CREATE INDEX users_m_idx ON users (m);\n"
                         "CREATE TABLE audit (id int);\n"
                         "ALTER TABLE users ADD COLUMN age int;\n",
        "002_locks.rollback.sql": "ALTER TABLE users DROP COLUMN age; DROP TABLE audit; DROP INDEX users_m_idx;",
        "003_drop.sql": "DROP TABLE audit;",
        "003_drop.rollback.sql": "CREATE TABLE audit (id int);",
    })
    report = verify_migrations(target_url, directory)
    locks = report.migrations[1].locks
    by_relation = {lock.relation: lock for lock in locks}
    users = by_relation["public.users"]
    assert (users.mode, users.line, users.new_relation) == ("AccessExclusiveLock", 4, False)
    assert by_relation["public.audit"].new_relation and by_relation["public.users_m_idx"].new_relation
    assert not [lock for lock in locks if lock.relation.startswith(("pg_catalog.", "poststack."))]
    dropped = report.migrations[2].locks  # a dropped relation is still named
    assert [(lock.relation, lock.mode, lock.new_relation) for lock in dropped] == [
        ("public.audit", "AccessExclusiveLock", False)]


def test_a_non_transactional_migration_is_verified_without_a_lock_report(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_concurrently.sql": "-- poststack:no-transaction\nCREATE INDEX CONCURRENTLY users_m_idx ON users (m);",
        "002_concurrently.rollback.sql": "-- poststack:no-transaction\nDROP INDEX CONCURRENTLY users_m_idx;",
    })
    report = verify_migrations(target_url, directory)
    result = report.migrations[1]
    assert result.status == "passed" and result.locks == [] and result.locks_observed is False


def test_from_and_to_choose_what_is_verified_on_the_schema_before_it(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_a.sql": "ALTER TABLE users ADD COLUMN a int;", "002_a.rollback.sql": "ALTER TABLE users DROP a;",
        "003_b.sql": "ALTER TABLE users ADD COLUMN b int;", "003_b.rollback.sql": "ALTER TABLE users DROP b;",
    })
    report = verify_migrations(target_url, directory, from_version=2, to_version=2)
    assert [(m.version, m.status) for m in report.migrations] == [(2, "passed")]
    with pytest.raises(UsageError, match="--from 7: no migration file has version 7"):
        verify_migrations(target_url, directory, from_version=7)
    with pytest.raises(UsageError, match="--from 3 is after --to 2"):
        verify_migrations(target_url, directory, from_version=3, to_version=2)


def test_the_verifier_brings_earlier_migrations_up_when_asked_for_one(make_migrations, target_url):
    directory = make_migrations({
        **BASE,
        "002_a.sql": "ALTER TABLE users ADD COLUMN a int;", "002_a.rollback.sql": "ALTER TABLE users DROP a;",
    })
    migrations = load_migrations(directory)
    with scratch_database(target_url) as scratch, Verifier(scratch, migrations) as verifier:
        result = verifier.verify(migrations.get(2))
        assert result.status == "passed"
        assert verifier.applied_versions() == {1, 2}


def test_one_migration_verified_on_its_own_says_what_its_rollback_left(make_migrations, target_url):
    up, down, expected = FORGETFUL["trigger"]
    directory = make_migrations({**BASE, "002_change.sql": up, "002_change.rollback.sql": down})
    migrations = load_migrations(directory)
    result = verify_migration(target_url, migrations, 2)
    assert result.status == "failed"
    assert result.describe().splitlines()[:2] == [f"migration 002 ({directory / '002_change.sql'}): failed",
                                                  f"  {expected}"]
    assert verify_migration(target_url, migrations, 1).passed
    with pytest.raises(UsageError, match="no migration file has version 9"):
        verify_migration(target_url, migrations, 9)


def test_a_role_without_createdb_gets_a_one_line_error(role_url):
    url = role_url("NOCREATEDB")
    role = conninfo_to_dict(url)["user"]
    with (pytest.raises(ScratchDatabaseError, match=f"role '{role}' .* may not create databases") as info,
          scratch_database(url)):
        pass
    assert info.value.exit_code == 3


# -- the command -------------------------------------------------------------------------------------------
def test_verify_command_exit_codes_and_json(make_migrations, target_url):
    good = make_migrations({**BASE})
    ok = CLITestRunner(target_url, good).run_command("verify", ["--format", "json"])
    assert ok.exit_code == 0, ok.stderr
    assert ok.json["ok"] is True and ok.json["summary"]["passed"] == 1
    assert ok.json["migrations"][0]["locks"][0].keys() == {"relation", "mode", "line", "new_relation"}

    up, down, expected = FORGETFUL["comment"]
    assert expected == "comment on table public.users: left behind by rollback"
    bad = make_migrations({**BASE, "002_change.sql": up, "002_change.rollback.sql": down})
    failed = CLITestRunner(target_url, bad).run_command("verify")
    assert failed.exit_code == 1
    assert expected in failed.stdout
    usage = CLITestRunner(target_url, bad).run_command("verify", ["--to", "x"])
    assert usage.exit_code == 2 and "--to" in usage.stderr
