"""Lint rules on the parse tree, without a database: each rule has a case it must flag and a safe twin it must
not, findings carry file, line, rule and alternative, and per-file lint-ignore comments work."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poststack.cli.context import CliContext
from poststack.cli.verify_commands import lint
from poststack.config import Settings, load_settings
from poststack.errors import MigrationFileError, UsageError
from poststack.lint import RULES, enabled_rules, lint_migrations, lint_sql
from poststack.lint.rules import DEFAULT_RULES

LOCK = "SET lock_timeout = '5s';\n"
NO_TX = "-- poststack:no-transaction\n"

# rule -> (SQL it must flag, the safer SQL it must not flag); both start with SET lock_timeout so that only
# the rule under test can fire (missing-lock-timeout has its own cases).
CASES = {
    "index-not-concurrent": (
        LOCK + "CREATE INDEX users_email_idx ON users (email);",
        LOCK + "CREATE TABLE users (email text);\nCREATE INDEX users_email_idx ON users (email);",
    ),
    "concurrently-in-transaction": (
        LOCK + "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
        "-- poststack:no-transaction\n" + LOCK + "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
    ),
    "volatile-default": (
        LOCK + "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        LOCK + "ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now();",
    ),
    "set-not-null": (
        LOCK + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        LOCK + "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
               "ALTER TABLE users VALIDATE CONSTRAINT email_nn;\n"
               "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
    ),
    "constraint-not-valid": (
        LOCK + "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        LOCK + "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) "
               "NOT VALID;",
    ),
    "column-type-change": (
        LOCK + "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
        LOCK + "CREATE TABLE users (age int);\nALTER TABLE users ALTER COLUMN age TYPE bigint;",
    ),
    "rename-column": (
        LOCK + "ALTER TABLE users RENAME COLUMN name TO full_name;",
        LOCK + "ALTER TABLE users RENAME CONSTRAINT users_a TO users_b;",
    ),
    "rename-table": (
        LOCK + "ALTER TABLE users RENAME TO people;",
        LOCK + "ALTER INDEX users_pkey RENAME TO people_pkey;",
    ),
    "drop-column": (
        LOCK + "ALTER TABLE users DROP COLUMN legacy;",
        LOCK + "CREATE TABLE staging (legacy int, keep int);\nALTER TABLE staging DROP COLUMN legacy;",
    ),
    "drop-table": (
        LOCK + "DROP TABLE app.legacy_users;",
        LOCK + "CREATE TABLE app.scratch (a int);\nDROP TABLE app.scratch;",
    ),
    "missing-lock-timeout": (
        "ALTER TABLE users ADD COLUMN nickname text;",
        "SET LOCAL lock_timeout TO '2s';\nALTER TABLE users ADD COLUMN nickname text;",
    ),
    "missing-statement-timeout": (
        LOCK + "ALTER TABLE users ADD COLUMN nickname text;",
        LOCK + "SET statement_timeout = '1min';\nALTER TABLE users ADD COLUMN nickname text;",
    ),
    "constraint-builds-index": (
        LOCK + "ALTER TABLE users ADD CONSTRAINT users_pk PRIMARY KEY (id);",
        LOCK + "ALTER TABLE users ADD CONSTRAINT users_pk PRIMARY KEY USING INDEX users_pk_idx;",
    ),
    "drop-index-not-concurrent": (
        LOCK + "DROP INDEX users_email_idx;",
        NO_TX + LOCK + "DROP INDEX CONCURRENTLY users_email_idx;",
    ),
    "reindex-not-concurrent": (
        "REINDEX INDEX users_email_idx;",
        NO_TX + "REINDEX INDEX CONCURRENTLY users_email_idx;",
    ),
    "detach-partition-not-concurrent": (
        LOCK + "ALTER TABLE events DETACH PARTITION events_2020;",
        NO_TX + LOCK + "ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;",
    ),
    "refresh-matview-not-concurrent": (
        LOCK + "REFRESH MATERIALIZED VIEW daily_stats;",
        LOCK + "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_stats;",
    ),
    "rewrites-table": (
        LOCK + "CLUSTER users USING users_pkey;",
        LOCK + "CREATE TABLE t (a int PRIMARY KEY);\nCLUSTER t USING t_pkey;",
    ),
    "write-without-where": (
        "UPDATE users SET active = true;",
        "UPDATE users SET active = true WHERE id BETWEEN 1 AND 1000;",
    ),
    "domain-constraint": (
        "CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');",
        "CREATE DOMAIN email AS text;",
    ),
    "not-null-without-default": (
        LOCK + "ALTER TABLE users ADD COLUMN tier text NOT NULL;",
        LOCK + "ALTER TABLE users ADD COLUMN tier text NOT NULL DEFAULT 'free';",
    ),
    "enum-value-used-in-transaction": (
        "ALTER TYPE mood ADD VALUE 'meh';\nUPDATE users SET mood = 'meh' WHERE id = 1;",
        "ALTER TYPE mood ADD VALUE 'meh';\nUPDATE users SET mood = 'ok' WHERE id = 1;",
    ),
    "transaction-nesting": (
        LOCK + "CREATE TABLE t (a int);\nCOMMIT;",
        LOCK + "SAVEPOINT s;\nCREATE TABLE t (a int);\nRELEASE SAVEPOINT s;",
    ),
    "identifier-too-long": (
        "CREATE TABLE " + "a" * 64 + " (id bigint);",
        "CREATE TABLE " + "a" * 63 + " (id bigint);",
    ),
    "drop-not-null": (
        LOCK + "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
        LOCK + "CREATE TABLE t (a int NOT NULL);\nALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
    ),
    "truncate-cascade": (
        LOCK + "TRUNCATE users CASCADE;",
        LOCK + "TRUNCATE users;",
    ),
    "drop-schema": (
        "DROP SCHEMA legacy CASCADE;",
        "DROP VIEW legacy.report;",
    ),
    "drop-database": (
        "DROP DATABASE old_app;",
        "DROP VIEW old_app_report;",
    ),
    "drop-sequence": (
        "DROP SEQUENCE order_numbers;",
        "CREATE SEQUENCE scratch_numbers;\nDROP SEQUENCE scratch_numbers;",
    ),
    "drop-extension": (
        "DROP EXTENSION hstore;",
        "CREATE EXTENSION IF NOT EXISTS hstore;",
    ),
    "char-type": (
        "CREATE TABLE app.t (code char(3));",
        "CREATE TABLE app.t (code text);",
    ),
    "varchar-length": (
        "CREATE TABLE app.t (name varchar(50));",
        "CREATE TABLE app.t (name text);",
    ),
    "timestamp-without-time-zone": (
        "CREATE TABLE app.t (at timestamp);",
        "CREATE TABLE app.t (at timestamptz);",
    ),
    "serial-column": (
        "CREATE TABLE app.t (id bigserial PRIMARY KEY);",
        "CREATE TABLE app.t (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);",
    ),
    "int-primary-key": (
        "CREATE TABLE app.t (id int PRIMARY KEY, n int);",
        "CREATE TABLE app.t (id bigint PRIMARY KEY, n int);",
    ),
    "unqualified-name": (
        "CREATE TABLE t (id bigint);",
        "CREATE TABLE app.t (id bigint);",
    ),
}
OPT_IN = sorted(set(RULES) - DEFAULT_RULES)


def rules_found(sql, **kwargs):
    return [f.rule for f in lint_sql(sql, "001_x.sql", **kwargs).findings]


def test_every_rule_that_flags_sql_has_cases():
    assert set(CASES) == set(RULES) - {"syntax-error", "unknown-rule"}


@pytest.mark.parametrize("rule", list(CASES))
def test_the_rule_flags_the_risky_form(rule):
    risky, _ = CASES[rule]
    assert rules_found(risky, enabled=enabled_rules([rule])) == [rule]


@pytest.mark.parametrize("rule", list(CASES))
def test_the_rule_accepts_the_safe_form(rule):
    _, safe = CASES[rule]
    assert rules_found(safe, enabled=enabled_rules([rule])) == []


@pytest.mark.parametrize("rule", OPT_IN)
def test_opt_in_rules_are_off_by_default(rule):
    risky, _ = CASES[rule]
    assert rule not in rules_found(risky)
    assert not RULES[rule].default


def test_every_rule_has_a_severity_category_and_rationale():
    for rule in RULES.values():
        assert rule.severity in ("error", "warning", "note") and rule.rationale and rule.alternative
    assert {"missing-statement-timeout", "char-type", "unqualified-name"} <= set(OPT_IN)


def test_a_finding_names_file_line_rule_and_the_safer_alternative():
    sql = "-- Description: add an index\nSET lock_timeout = '5s';\n\nCREATE INDEX idx ON users (email);\n"
    (finding,) = lint_sql(sql, "migrations/004_idx.sql", version=4).findings
    assert (finding.file, finding.line, finding.rule, finding.version) == ("migrations/004_idx.sql", 4,
                                                                          "index-not-concurrent", 4)
    assert "idx" in finding.message and "users" in finding.message
    assert finding.alternative == RULES["index-not-concurrent"].alternative
    assert finding.describe().startswith("migrations/004_idx.sql:4: index-not-concurrent: ")


@pytest.mark.parametrize(("default", "flagged"), [
    ("random()", True), ("clock_timestamp()", True), ("nextval('s')", True),
    ("my_volatile_function()", True),  # unknown functions are volatile unless declared otherwise
    ("now()", False), ("CURRENT_TIMESTAMP", False), ("0", False), ("'x'::text", False), ("lower('X')", False),
])
def test_volatile_defaults_are_told_apart_from_stable_ones(default, flagged):
    found = rules_found(LOCK + f"ALTER TABLE t ADD COLUMN c text DEFAULT {default};")
    assert found == (["volatile-default"] if flagged else [])


@pytest.mark.parametrize("column", ["id bigserial", "n int GENERATED ALWAYS AS IDENTITY",
                                    "total int GENERATED ALWAYS AS (a + b) STORED"])
def test_columns_that_fill_every_row_rewrite_the_table(column):
    assert rules_found(LOCK + f"ALTER TABLE t ADD COLUMN {column};") == ["volatile-default"]


def test_check_constraints_also_need_not_valid():
    assert rules_found(LOCK + "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);") == ["constraint-not-valid"]
    assert rules_found(LOCK + "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;") == []


def test_a_not_null_check_validated_in_an_earlier_migration_makes_set_not_null_safe(tmp_path):
    (tmp_path / "001_check.sql").write_text(
        LOCK + "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;")
    (tmp_path / "002_validate.sql").write_text(LOCK + "ALTER TABLE users VALIDATE CONSTRAINT email_nn;")
    (tmp_path / "003_not_null.sql").write_text(LOCK + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
                                                      "ALTER TABLE users ALTER COLUMN name SET NOT NULL;")
    report = lint_migrations(tmp_path)
    assert [(f.version, f.rule, f.line) for f in report.findings] == [(3, "set-not-null", 3)]
    assert "users.name" in report.findings[0].message


def test_a_check_that_was_never_validated_does_not_make_set_not_null_safe():
    sql = (LOCK + "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    assert rules_found(sql) == ["set-not-null"]


def test_lock_timeout_must_come_before_the_first_strong_lock_and_be_non_zero():
    late = "ALTER TABLE users ADD COLUMN a text;\nSET lock_timeout = '5s';\nALTER TABLE users ADD COLUMN b text;"
    assert rules_found(late) == ["missing-lock-timeout"]
    (finding,) = lint_sql(late, "x.sql").findings
    assert finding.line == 1
    assert rules_found("SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN a text;") == ["missing-lock-timeout"]
    by_function = "SELECT set_config('lock_timeout', '3s', false);\nALTER TABLE users ADD COLUMN a text;"
    assert rules_found(by_function) == []


def test_statements_that_take_no_strong_lock_need_no_lock_timeout():
    weak = ("CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int;\n"
            "ALTER TABLE users VALIDATE CONSTRAINT c;\nINSERT INTO users VALUES (1);\nSELECT 1;")
    assert rules_found(weak) == []


def test_sql_inside_strings_and_comments_is_not_linted():
    sql = (LOCK + "-- DROP TABLE users;\n"
           "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT 'ALTER TABLE users DROP COLUMN a' $$;\n"
           "COMMENT ON TABLE t IS 'DROP TABLE t';")
    assert rules_found(sql) == []


def test_lint_ignore_silences_the_named_rules_for_the_file_only():
    sql = ("-- poststack:lint-ignore drop-column, missing-lock-timeout\n"
           "ALTER TABLE users DROP COLUMN legacy;\nALTER TABLE users ALTER COLUMN age TYPE bigint;")
    result = lint_sql(sql, "x.sql")
    assert [f.rule for f in result.findings] == ["column-type-change"]
    assert result.ignored == 2
    assert rules_found("-- poststack:lint-ignore all\nDROP TABLE users;") == []


def test_an_unknown_rule_in_lint_ignore_is_a_finding_not_a_silent_no_op():
    result = lint_sql(LOCK + "-- poststack:lint-ignore drop-tabel\nDROP TABLE users;", "x.sql")
    assert [(f.rule, f.line) for f in result.findings] == [("unknown-rule", 2), ("drop-table", 3)]
    assert "drop-tabel" in next(f.message for f in result.findings if f.rule == "unknown-rule")


def test_a_file_that_does_not_parse_is_a_finding_with_its_line():
    (finding,) = lint_sql("SELECT 1;\nALTER TABLE users ADD COLUMN;\n", "x.sql").findings
    assert (finding.rule, finding.line) == ("syntax-error", 2)


def test_the_directory_report_and_its_errors(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "CREATE TABLE t (a int);")
    (tmp_path / "001_a.rollback.sql").write_text("DROP TABLE t;")  # drops what the migration created
    report = lint_migrations(tmp_path)
    assert report.ok and report.files == 1 and report.rollbacks == 1 and report.findings == []
    with pytest.raises(MigrationFileError, match="does not exist"):
        lint_migrations(tmp_path / "missing")


# -- the command (no database: no URL is resolved, no server is started) -----------------------------------
def run_lint(directory, *args):
    return CliRunner().invoke(lint, list(args), obj=CliContext(Settings(migrations_path=Path(directory))))


def test_lint_command_prints_findings_and_exits_1(tmp_path):
    (tmp_path / "001_a.sql").write_text("ALTER TABLE users DROP COLUMN legacy;")
    result = run_lint(tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path / '001_a.sql'}:1: drop-column: drops column users.legacy" in result.output
    assert ":1: missing-lock-timeout:" in result.output
    assert result.output.endswith("Linted 1 migration(s): 2 finding(s).\n")


def test_lint_command_json_and_clean_exit(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);")
    result = run_lint(tmp_path, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {"directory": str(tmp_path), "ok": True, "files": 1, "ignored": 0,
                                         "findings": [], "rollbacks": 0}
    listed = run_lint(tmp_path, "--rules", "--format", "json")
    rules = {r["id"]: r for r in json.loads(listed.output)["rules"]}
    assert set(rules) == set(RULES)
    assert rules["concurrently-in-transaction"]["severity"] == "error"
    assert rules["index-not-concurrent"] == {**rules["index-not-concurrent"], "severity": "warning", "default": True}
    assert rules["char-type"]["default"] is False


# -- rollback files ---------------------------------------------------------------------------------------
def test_a_concurrent_index_in_a_transactional_rollback_is_flagged(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "DROP INDEX IF EXISTS users_email_idx;")
    (tmp_path / "001_a.rollback.sql").write_text("CREATE INDEX CONCURRENTLY users_email_idx ON users (email);")
    report = lint_migrations(tmp_path, enabled=enabled_rules(disable=["drop-index-not-concurrent"]))
    (finding,) = report.findings
    assert (finding.rule, finding.rollback, finding.line, finding.version) == ("concurrently-in-transaction",
                                                                                True, 1, 1)
    assert finding.file.endswith("001_a.rollback.sql")


def test_a_rollback_marked_no_transaction_may_use_concurrently(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "SELECT 1;")
    (tmp_path / "001_a.rollback.sql").write_text(NO_TX + "CREATE INDEX CONCURRENTLY i ON users (email);")
    assert lint_migrations(tmp_path).findings == []


def test_rollbacks_get_lock_and_failure_rules_but_not_destructive_ones(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "ALTER TABLE users ADD COLUMN nick text;")
    (tmp_path / "001_a.rollback.sql").write_text("ALTER TABLE users DROP COLUMN nick;\nDROP TABLE legacy;")
    rules = sorted(f.rule for f in lint_migrations(tmp_path).findings)
    assert rules == ["missing-lock-timeout"]  # drop-column and drop-table do not apply to a rollback


# -- enabling and disabling rules -------------------------------------------------------------------------
def test_enable_and_disable_change_the_rule_set_and_unknown_ids_are_usage_errors():
    sql = "CREATE TABLE t (code char(3));"
    assert rules_found(sql) == []
    assert rules_found(sql, enabled=enabled_rules(["char-type"])) == ["char-type"]
    assert rules_found(LOCK + "DROP TABLE users;", enabled=enabled_rules(disable=["drop-table"])) == []
    assert set(enabled_rules(["all"])) == set(RULES)
    with pytest.raises(UsageError, match="--enable char-typo: no such lint rule"):
        enabled_rules(["char-typo"])


def test_enable_option_and_pyproject_keys(tmp_path, monkeypatch):
    for variable in ("DATABASE_URL", "POSTSTACK_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "001_a.sql").write_text("CREATE TABLE t (at timestamp, code char(2));")
    result = run_lint(tmp_path / "m", "--enable", "timestamp-without-time-zone")
    assert result.exit_code == 1 and "timestamp-without-time-zone" in result.output and "char-type" not in result.output
    (tmp_path / "pyproject.toml").write_text('[tool.poststack]\nlint_enable = ["char-type"]\n')
    settings = load_settings(cwd=tmp_path, migrations_path=tmp_path / "m", database_url="")
    assert settings.lint_enable == ("char-type",)
    result = CliRunner().invoke(lint, ["--disable", "char-type"], obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(lint, ["--enable", "nope"], obj=CliContext(settings))
    assert bad.exit_code != 0 and isinstance(bad.exception, UsageError)


# -- transaction control in no-transaction files ------------------------------------------------------------
def test_a_begin_left_open_in_a_no_transaction_file_is_flagged_and_a_closed_one_is_not():
    opened = NO_TX + "BEGIN;\nUPDATE t SET a = 1 WHERE id = 1;\n"
    (finding,) = lint_sql(opened, "x.sql").findings
    assert (finding.rule, finding.line) == ("transaction-nesting", 2)
    assert rules_found(opened + "COMMIT;\n") == []


def test_a_table_created_earlier_in_the_same_file_is_never_existing():
    sql = (LOCK + "CREATE TABLE app.t (id int, email text);\nCREATE INDEX t_email ON app.t (email);\n"
           "ALTER TABLE app.t ADD CONSTRAINT t_pk PRIMARY KEY (id);\nALTER TABLE app.t ADD COLUMN n int NOT NULL;\n"
           "ALTER TABLE t ALTER COLUMN email SET NOT NULL;\nDROP INDEX t_email;\nUPDATE app.t SET n = 1;")
    assert rules_found(sql) == []
    assert rules_found(sql.replace("CREATE TABLE app.t", "CREATE TABLE app.other")) != []
