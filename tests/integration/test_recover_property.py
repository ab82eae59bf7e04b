"""Property: on random histories, recover never records a migration that is not fully applied, and records
every hand-applied one whose effect the schema shows.

Histories are generated with the traps that broke the hand-written model: implicit primary key, index and
foreign key names chosen by the server, tables and columns renamed (and names reused), drops that cascade,
and data-only migrations. A random prefix is migrated by poststack, a random further part is applied by hand
(whole files, then perhaps the first statements of one more file, as psql in autocommit would), and recover
runs. The oracle is independent of poststack's judgement: the states come from applying the same files on a
second database and snapshotting it after each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poststack.catalog.snapshot import snapshot
from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing.db_helper import DbHelper
from poststack.testing.server import create_database, drop_database

TABLES = [f"t{i}" for i in range(6)]
COLUMNS = [f"c{i}" for i in range(6)]


@dataclass
class Schema:
    """What the generator needs to write valid SQL: tables and their columns (not a model of the catalog)."""

    tables: dict[str, list[str]] = field(default_factory=dict)
    rows: int = 0


def _statement(draw: st.DrawFn, schema: Schema) -> str:
    free_tables = [t for t in TABLES if t not in schema.tables]
    kinds = ["create"] if free_tables else []
    if schema.tables:
        kinds += ["add_column", "rename_column", "rename_table", "index", "fk", "drop_table", "data", "drop_column"]
    kind = draw(st.sampled_from(kinds))
    if kind == "create":
        table = draw(st.sampled_from(free_tables))
        column = draw(st.sampled_from(COLUMNS))
        schema.tables[table] = [column]
        return f"CREATE TABLE {table} (id int PRIMARY KEY, {column} text)"
    table = draw(st.sampled_from(sorted(schema.tables)))
    columns = schema.tables[table]
    free_columns = [c for c in COLUMNS if c not in columns]
    if kind == "add_column" and free_columns:
        column = draw(st.sampled_from(free_columns))
        columns.append(column)
        return f"ALTER TABLE {table} ADD COLUMN {column} int NOT NULL DEFAULT {draw(st.integers(0, 3))}"
    if kind == "rename_column" and columns and free_columns:
        old, new = draw(st.sampled_from(columns)), draw(st.sampled_from(free_columns))
        columns[columns.index(old)] = new
        return f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"
    if kind == "drop_column" and columns:
        column = draw(st.sampled_from(columns))
        columns.remove(column)
        return f"ALTER TABLE {table} DROP COLUMN {column} CASCADE"
    if kind == "rename_table" and free_tables:
        new = draw(st.sampled_from(free_tables))
        schema.tables[new] = schema.tables.pop(table)  # its constraints and indexes keep their old names
        return f"ALTER TABLE {table} RENAME TO {new}"
    if kind == "index" and columns:
        return f"CREATE INDEX ON {table} ({draw(st.sampled_from(columns))})"  # the server picks the name
    if kind == "fk" and free_columns:
        other = draw(st.sampled_from(sorted(schema.tables)))
        column = draw(st.sampled_from(free_columns))
        columns.append(column)
        return f"ALTER TABLE {table} ADD COLUMN {column} int REFERENCES {other} (id)"  # implicit fkey name
    if kind == "drop_table":
        del schema.tables[table]  # CASCADE drops the foreign keys that point at it, not their columns
        return f"DROP TABLE {table} CASCADE"
    schema.rows += 1
    return f"INSERT INTO {table} (id) VALUES ({schema.rows}) ON CONFLICT DO NOTHING"


@st.composite
def histories(draw: st.DrawFn) -> list[list[str]]:
    schema = Schema()
    return [[_statement(draw, schema) for _ in range(draw(st.integers(1, 3)))]
            for _ in range(draw(st.integers(2, 6)))]


def _write(directory, history: list[list[str]]) -> None:
    for version, statements in enumerate(history, start=1):
        (directory / f"{version:03d}_m{version}.sql").write_text(";\n".join(statements) + ";\n")


def _states(server, directory) -> list[object]:
    """The oracle: snapshots after each file, applied by hand on a database of its own."""
    name = create_database(server, "pst_oracle")
    try:
        url = server.database_url(name)
        with DbHelper(url, directory) as helper:
            states = [snapshot(helper.conn, exclude_schemas=("poststack",))]
            for m in load_migrations(directory):
                helper.apply_untracked(m.version)
                states.append(snapshot(helper.conn, exclude_schemas=("poststack",)))
        return states
    finally:
        drop_database(server, name)


@pytest.mark.parametrize("examples", [pytest.param(12, id="default"),
                                      pytest.param(150, id="many", marks=pytest.mark.slow)])
def test_recover_records_exactly_the_fully_applied_schema_visible_migrations(examples, postgres_server,
                                                                            tmp_path_factory):
    @settings(max_examples=examples, deadline=None, derandomize=examples < 50,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(history=histories(), data=st.data())
    def check(history: list[list[str]], data: st.DataObject) -> None:
        directory = tmp_path_factory.mktemp("history")
        _write(directory, history)
        n = len(history)
        migrated = data.draw(st.integers(0, n - 1), label="migrated by poststack")
        by_hand = data.draw(st.integers(0, n - migrated), label="applied whole by hand")
        half = 0
        if migrated + by_hand < n and len(history[migrated + by_hand]) > 1:
            half = data.draw(st.integers(0, len(history[migrated + by_hand]) - 1), label="statements of one more")
        name = create_database(postgres_server, "pst_prop")
        try:
            url = postgres_server.database_url(name)
            runner = MigrationRunner(url, directory)
            if migrated:
                runner.migrate(target=migrated)
            with DbHelper(url, directory) as helper:
                for version in range(migrated + 1, migrated + by_hand + 1):
                    helper.apply_untracked(version)
                for statement in history[migrated + by_hand][:half] if half else []:
                    helper.execute(statement)
                result = runner.recover()
                recorded = sorted(s.version for s in result.recorded)
                fully = set(range(migrated + 1, migrated + by_hand + 1))
                assert set(recorded) <= fully, (recorded, result.steps)  # never what did not fully run
                history_rows = {r.version for r in helper.history_rows()}
                assert history_rows == set(range(1, migrated + 1)) | set(recorded)
            states = _states(postgres_server, directory)
            catalog = _catalog(url)
            matches = [p for p in range(migrated, n + 1) if states[p] == catalog]
            if matches:
                # recover records up to the first state equal to the catalog (later equal ones changed no
                # schema), less that last file when it ends in statements no catalog shows, which it names.
                expected = list(range(migrated + 1, matches[0] + 1))
                boundary = next((s for s in result.steps if s.version == matches[0]), None)
                if boundary is not None and boundary.status == "undecidable" and "ran to its end" in boundary.reason:
                    expected = expected[:-1]
                assert recorded == expected, (recorded, matches, result.steps)
            else:
                # half applied: refused; only files before it whose objects it does not touch are recorded
                assert recorded == list(range(migrated + 1, migrated + 1 + len(recorded))), result.steps
                assert any(s.action == "refused" for s in result.steps), result.steps
        finally:
            drop_database(postgres_server, name)

    check()


def _catalog(url: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        return snapshot(conn, exclude_schemas=("poststack",))
