"""Histories built the way each tool builds them: its own table DDL (as the tool creates it on PostgreSQL)
and its rows, with the migration SQL run as the tool runs it (no poststack involved).

Used where the tool itself is not installable in the suite (Flyway, golang-migrate, diesel: JVM/Go/Rust
binaries; dbmate and sqitch run for real in bench/adopt_real_tools.py). yoyo runs for real in the suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg

FLYWAY_DDL = """
CREATE TABLE "public"."flyway_schema_history" (
    "installed_rank" INT NOT NULL, "version" VARCHAR(50), "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL, "script" VARCHAR(1000) NOT NULL, "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL, "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL, "success" BOOLEAN NOT NULL);
ALTER TABLE "public"."flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");
"""
GOLANG_MIGRATE_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, "
                      "dirty boolean NOT NULL)")
DBMATE_DDL = "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY)"
DIESEL_DDL = ("CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, "
              "run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)")
SQITCH_DDL = """
CREATE SCHEMA sqitch;
CREATE TABLE sqitch.projects (project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), creator_name TEXT NOT NULL, creator_email TEXT NOT NULL);
CREATE TABLE sqitch.changes (change_id TEXT PRIMARY KEY, script_hash TEXT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE, note TEXT NOT NULL DEFAULT '',
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), committer_name TEXT NOT NULL,
    committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL, planner_name TEXT NOT NULL,
    planner_email TEXT NOT NULL, UNIQUE(project, script_hash));
"""


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_as_tool(url: str, scripts: Sequence[str], *, single_query: bool = True) -> None:
    """Run each script as these tools do: one query string each, autocommit (the tool's own transaction, if
    any, is in the script or implicit)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for script in scripts:
            conn.execute(script.encode() if single_query else script)


def execute(url: str, *statements: tuple[str, Sequence[object]] | str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            if isinstance(statement, str):
                conn.execute(statement.encode())
            else:
                conn.execute(statement[0], statement[1])


def flyway_history(url: str, source: Path, rows: Sequence[tuple[str | None, str, str, str, bool]]) -> None:
    """(version, description, type, script, success) rows, installed_rank in order, as Flyway writes them
    (with the checksum of the script as it is in ``source``)."""
    from poststack.adopt.flyway import checksum

    execute(url, FLYWAY_DDL, *[("INSERT INTO flyway_schema_history (installed_rank, version, description, type, "
                                "script, checksum, installed_by, execution_time, success) "
                                "VALUES (%s, %s, %s, %s, %s, %s, 'deployer', 5, %s)",
                                [rank, *row[:4], checksum((source / row[3]).read_text()), row[4]])
                               for rank, row in enumerate(rows, start=1)])
