"""Issue 11's rows of the bad input catalog: URLs whose password cannot be parsed, URL files, Unicode digits,
pyproject.toml values of the wrong type, privileges, reserved history schemas.

Each row runs through the same harness as tests/integration/test_bad_input.py (one ``error:`` line naming what
is at fault, the documented exit code, no traceback, no password, the database unchanged) and is listed in
docs/errors.md. ``secret`` lists every fragment of a password that must not be printed: for a URL libpq
cannot parse, ``password_of`` knows no password, so the row names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_bad_input import DOCS, Bad, Case, environment, lock_held, pyproject, role, run_bad_row, url


def no_url(case: Case) -> None:
    case.url = None


def both(*setups: Callable[[Case], None]) -> Callable[[Case], None]:
    def setup(case: Case) -> None:
        for one in setups:
            one(case)
    return setup


def url_file(content: str, variable: str = "POSTSTACK_DATABASE_URL_FILE") -> Callable[[Case], None]:
    """The URL in a file named by the environment; no --database-url."""
    def setup(case: Case) -> None:
        path = case.path.with_name(f"{case.path.name}_url")
        path.write_text(content)
        case.env[variable] = str(path)
        case.url = None
    return setup


UNENCODED = "postgresql://app:p@ss:w/rd?#%x@127.0.0.1:1/app"

ROWS = [
    # -- item 2: a password in any URL shape is never printed --------------------------------------------
    Bad("url_unencoded_delimiters", ("migration-status",), 3, "invalid database URL postgresql://app:***@",
        setup=url(UNENCODED), secret=("p@ss:w/rd?#%x", "ss:w/rd", "#%x")),
    Bad("url_percent_in_password", ("migration-status",), 3, 'invalid percent-encoded token: "***"',
        setup=url("postgresql://app:100%@127.0.0.1:1/app"), secret=("100%",)),
    Bad("url_space_in_password", ("migration-status",), 3, "unexpected spaces found in \"***\"",
        setup=url("postgresql://app:my secret pw@127.0.0.1:1/app"), secret=("my secret pw", "secret pw")),
    Bad("url_not_postgresql", ("migration-status",), 3, "invalid database URL mysql://u:***@127.0.0.1/db",
        setup=both(no_url, environment(DATABASE_URL="mysql://u:MyS3cretpw@127.0.0.1/db")), secret=("MyS3cretpw",)),
    Bad("url_ipv6_typo", ("migration-status",), 3, 'looking for matching "]" in IPv6 host address',
        setup=url("postgresql://u:Ipv6S3cret@[::1/app"), secret=("Ipv6S3cret",)),
    Bad("url_percent_not_utf8", ("migration-status",), 3, "a percent-encoded value is not UTF-8",
        setup=url("postgresql://u:%cd%ffpw@127.0.0.1/app"), secret=("%cd%ffpw",)),
    Bad("verify_percent_not_utf8", ("verify",), 3, "a percent-encoded value is not UTF-8",
        setup=url("postgresql://u:%cd%ffpw@127.0.0.1/app"), secret=("%cd%ffpw",)),
    Bad("verify_ipv6_typo", ("verify",), 3, 'looking for matching "]"', setup=url("postgresql://u:V6s3cret@[::1/a"),
        secret=("V6s3cret",)),
    Bad("keywords_space_in_password", ("migration-status",), 3, "invalid database URL host=127.0.0.1 port=1 "
        "password=***", setup=url("host=127.0.0.1 port=1 password=my secret"), secret=("secret",)),
    Bad("pyproject_unparseable_url", ("migration-status",), 3, "invalid database URL postgresql://app:***@",
        setup=both(no_url, pyproject(f"[tool.poststack]\ndatabase_url = '{UNENCODED}'\n")),
        secret=("p@ss:w/rd?#%x", "#%x")),
    # -- item 3: the URL from a file -----------------------------------------------------------------------
    Bad("url_file_missing", ("migrate", "--database-url-file", "/nonexistent/poststack-url"), 2,
        "--database-url-file: /nonexistent/poststack-url is not a readable file", setup=no_url),
    Bad("url_file_and_url", ("migrate", "--database-url-file", "/nonexistent/poststack-url"), 2,
        "--database-url and --database-url-file contradict each other"),
    Bad("url_file_empty", ("migrate",), 2, "POSTSTACK_DATABASE_URL_FILE: ", setup=url_file("\n\n")),
    Bad("url_file_two_lines", ("migrate",), 2, "must hold one line: the database URL",
        setup=url_file("postgresql://a:Tw0Lines@127.0.0.1:1/x\nsecond line\n"), secret=("Tw0Lines",)),
    Bad("url_file_unreachable", ("migrate",), 3, "cannot connect to postgresql://deployer:***@127.0.0.1:1/app",
        setup=url_file("postgresql://deployer:F1le#secret@127.0.0.1:1/app\n"), secret=("F1le#secret",)),
    # -- item 5: versions are ASCII digits -----------------------------------------------------------------
    Bad("superscript_target", ("migrate", "--target", "²"), 2, "--target: '²' is not a version"),
    Bad("arabic_indic_target", ("migrate", "--target", "٣"), 2, "--target: '٣' is not a version"),
    Bad("superscript_rollback", ("rollback", "¹", "--confirm"), 2, "TARGET: '¹' is not a version", applied="002"),
    Bad("superscript_info", ("migration-info", "⁵"), 2, "VERSION: '⁵' is not a version"),
    Bad("superscript_verify_from", ("verify", "--from", "²"), 2, "--from: '²' is not a version"),
    Bad("superscript_verify_to", ("verify", "--to", "٢"), 2, "--to: '٢' is not a version"),
    Bad("arabic_indic_file", ("migrate",), 2, "٠٠٤_x.sql: not a valid migration file name",
        {"٠٠٤_x.sql": "CREATE TABLE x (id int);"}),
    Bad("superscript_file", ("migrate",), 2, "²_x.sql: not a valid migration file name", {"²_x.sql": "SELECT 1;"}),
    Bad("arabic_indic_lock_timeout", ("migrate", "--lock-timeout", "\u0661"), 2,
        "--lock-timeout: '\u0661' is not a number"),
    Bad("nan_lock_age", ("diagnose", "--lock-age", "nan"), 2, "--lock-age: 'nan' is not a number of seconds"),
    Bad("env_connect_timeout", ("migrate",), 2, "POSTSTACK_CONNECT_TIMEOUT: 'abc' is not a whole number of seconds",
        setup=environment(POSTSTACK_CONNECT_TIMEOUT="abc")),
    # -- item 5/6: pyproject.toml values of the wrong type -------------------------------------------------
    Bad("pyproject_lock_timeout_array", ("migrate",), 2,
        "[tool.poststack] lock_timeout must be a number of seconds, not array [1]",
        setup=pyproject("[tool.poststack]\nlock_timeout = [1]\n")),
    Bad("pyproject_lock_timeout_bool", ("migrate",), 2,
        "[tool.poststack] lock_timeout must be a number of seconds, not boolean True",
        setup=pyproject("[tool.poststack]\nlock_timeout = true\n")),
    Bad("pyproject_migrations_path_int", ("migrate",), 2, "[tool.poststack] migrations_path must be a string",
        setup=pyproject("[tool.poststack]\nmigrations_path = 5\n")),
    Bad("pyproject_database_url_int", ("migrate",), 2, "[tool.poststack] database_url must be a string",
        setup=pyproject("[tool.poststack]\ndatabase_url = 5\n")),
    Bad("pyproject_history_schema_table", ("migrate",), 2, "[tool.poststack] history_schema must be a string, not "
        "table", setup=pyproject("[tool.poststack]\nhistory_schema = {a = 1}\n")),
    Bad("pyproject_poststack_not_table", ("migrate",), 2, "[tool.poststack] must be a table, not string",
        setup=pyproject("[tool]\npoststack = 'x'\n")),
    Bad("pyproject_tool_not_table", ("migrate",), 2, "[tool.poststack] must be a table, not string",
        setup=pyproject("tool = 'x'\n")),
    # -- item 6: privileges and reserved schemas -----------------------------------------------------------
    Bad("history_schema_permission_denied", ("migration-status",), 3,
        "insufficient privilege: permission denied for schema poststack", applied="002", setup=role()),
    Bad("migrate_permission_denied", ("migrate",), 3, "insufficient privilege: permission denied for schema "
        "poststack", {"003_tags.sql": "CREATE TABLE tags (id int);"}, applied="002", setup=role()),
    Bad("clean_locks_superuser_holder", ("clean", "--locks", "--force", "--confirm"), 3,
        "insufficient privilege: ", applied="002", setup=both(lock_held, role())),
    Bad("fresh_history_first_migration_fails", ("migrate", "--history-schema", "other_history"), 5,
        'migration 001 failed: relation "users" already exists', applied="002"),
    Bad("schema_information_schema", ("migrate", "--history-schema", "information_schema"), 2,
        "'information_schema' is reserved: a system schema, left out by pg_dump"),
    Bad("schema_pg_toast", ("migrate", "--history-schema", "pg_toast"), 2, "'pg_toast' is reserved"),
    Bad("schema_pg_temp", ("migrate", "--history-schema", "pg_temp_3"), 2, "'pg_temp_3' is reserved"),
]


@pytest.mark.parametrize("bad", ROWS, ids=[row.id for row in ROWS])
def test_security_bad_input(bad: Bad, request, database_url, make_migrations) -> None:
    run_bad_row(bad, request, database_url, make_migrations)


def test_security_rows_are_documented() -> None:
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids))
    documented = Path(DOCS).read_text()
    assert [i for i in ids if f"`{i}`" not in documented] == []
