"""Per-test cost of a fresh database at the head of the migrations: poststack against pytest-postgresql.

Every approach runs on the same server with the same migrations, interleaved iteration by iteration so that
load from other processes falls on all of them alike. A "test" here is what a fixture does around a test:
make the database, open one connection, close it, drop the database. Numbers are printed, never asserted.

    python bench/fixture_cost.py [-n 40] [--migrations DIR] [--database-url URL]

Approaches:
  poststack        migrated_database_url: CREATE DATABASE ... TEMPLATE from a template migrated once per
                   session (poststack.testing.TemplateCache), over one long-lived maintenance connection
  pgpg-load        pytest-postgresql's DatabaseJanitor creating a database per test and loading the schema
                   into it (janitor.init() + janitor.load(sql) + janitor.drop())
  pgpg-template    pytest-postgresql 10's own `postgresql` fixture path: a template loaded once
                   (as_template=True), then per test a janitor cloning it (init, connect, drop)
  poststack-migrate  no template: MigrationRunner.migrate() on a fresh database per test (for reference)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pytest_postgresql.janitor import DatabaseJanitor

from poststack.schema_migration import MigrationRunner
from poststack.source.files import load_migrations
from poststack.testing import DatabaseFactory, TemplateCache, scenario
from poststack.testing import server as test_server


def janitor(server: test_server.TestServer, dbname: str, **kwargs) -> DatabaseJanitor:
    params = conninfo_to_dict(server.url)
    return DatabaseJanitor(user=params.get("user", "postgres"), host=params.get("host", "localhost"),
                           port=params.get("port", 5432), password=params.get("password"), dbname=dbname,
                           maintenance_dbname=params.get("dbname", "postgres"), **kwargs)


def schema_file(migrations: Path, into: Path) -> Path:
    """The migrations' SQL in order, as one file: what a pytest-postgresql user would load."""
    text = "\n".join(m.sql for m in load_migrations(migrations))
    path = into / "schema.sql"
    path.write_text(text)
    return path


def touch(url_or_kwargs: str | dict) -> None:
    """What a test does at the least: connect once."""
    conn = psycopg.connect(url_or_kwargs) if isinstance(url_or_kwargs, str) else psycopg.connect(**url_or_kwargs)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=40, help="iterations per approach")
    parser.add_argument("--migrations", type=Path, default=None, help="migrations directory (default: basic)")
    parser.add_argument("--database-url", default=None, help="an existing server (default: embedded)")
    parser.add_argument("--strategy", choices=["auto", "WAL_LOG", "FILE_COPY"], default="auto",
                        help="CREATE DATABASE strategy for poststack's clones (auto: what the plugin uses)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="poststack-bench-"))
    migrations = args.migrations or scenario("basic", work / "migrations")
    if args.database_url:
        server = test_server.external(args.database_url)
    else:
        fast = test_server.fast_data_dir(work)
        server = test_server.start_embedded_at(fast) if fast else test_server.start_embedded(work / "server")
    print(f"server: {server}; migrations: {migrations} ({len(load_migrations(migrations))} files); n={args.n}")

    databases = DatabaseFactory(server)
    if args.strategy != "auto":
        databases.strategy = args.strategy
    print(f"poststack clone strategy: {databases.strategy or 'server default'}")
    templates = TemplateCache(server, databases)
    start = time.perf_counter()
    templates.template_for(migrations)
    print(f"poststack template build (once per session): {(time.perf_counter() - start) * 1000:.1f} ms")

    sql_file = schema_file(migrations, work)
    pgpg_template = "pgpg_bench_tmpl"
    start = time.perf_counter()
    base = janitor(server, pgpg_template, as_template=True)
    base.init()
    base.load(sql_file)
    print(f"pytest-postgresql template load (once per session): {(time.perf_counter() - start) * 1000:.1f} ms")

    counter = iter(range(10**9))

    def poststack_clone() -> None:
        name = templates.clone(migrations)
        touch(server.database_url(name))
        databases.drop(name)

    def pgpg_load() -> None:
        j = janitor(server, f"pgpg_load_{next(counter)}")
        j.init()
        j.load(sql_file)
        touch(server.database_url(j.dbname))
        j.drop()

    def pgpg_clone() -> None:
        j = janitor(server, f"pgpg_clone_{next(counter)}", template_dbname=pgpg_template)
        j.init()
        touch(server.database_url(j.dbname))
        j.drop()

    def poststack_migrate() -> None:
        with databases.scratch() as url:
            MigrationRunner(url, migrations).migrate()
            touch(url)

    approaches: dict[str, Callable[[], None]] = {
        "poststack": poststack_clone, "pgpg-load": pgpg_load, "pgpg-template": pgpg_clone,
        "poststack-migrate": poststack_migrate}
    for run in approaches.values():  # warm-up: first connections, catalog caches, imports
        run()
    timings: dict[str, list[float]] = {name: [] for name in approaches}
    for _ in range(args.n):
        for name, run in approaches.items():
            start = time.perf_counter()
            run()
            timings[name].append((time.perf_counter() - start) * 1000)

    print(f"\n{'approach':<18} {'mean ms':>9} {'median ms':>10} {'p90 ms':>8}")
    for name, values in timings.items():
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
        print(f"{name:<18} {statistics.fmean(values):9.1f} {statistics.median(values):10.1f} {p90:8.1f}")
    print("\nper-test cost of poststack relative to each approach (target against pgpg-load: <= 0.5x)")
    for baseline in ("pgpg-load", "pgpg-template", "poststack-migrate"):
        median = statistics.median(timings["poststack"]) / statistics.median(timings[baseline])
        mean = statistics.fmean(timings["poststack"]) / statistics.fmean(timings[baseline])
        print(f"poststack / {baseline:<18} = {median:.2f}x median, {mean:.2f}x mean")

    base.drop()
    templates.close()
    databases.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
