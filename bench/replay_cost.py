"""The cost of replayed states: a first replay (empty cache) and a cached one, against migrate of the same files.

A generated history of ``--size`` migrations (tables with keys and defaults, indexes with server-chosen names,
foreign keys, functions, views, renames, data-only files) is the workload. The unified-project situation is
set up on one embedded PostgreSQL: the first 40% migrated by poststack, the next 30% applied by hand, so
``diagnose`` cannot take the stored-snapshot fast path and must judge the catalog against replayed states.
Timed, medians of ``--runs``:

- migrate: every migration on a fresh database (the baseline: what applying the files costs anyway);
- diagnose, first replay: an empty replay cache each run;
- diagnose, cached: the states read from the cache.

    python bench/replay_cost.py [--size 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from poststack.engine.replay import CACHE_ENV
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.testing.db_helper import DbHelper
from poststack.testing.server import create_database, drop_database, start_embedded


def body(i: int) -> str:
    """One migration of a realistic mix; every fifth touches what an earlier one made."""
    kind = i % 6
    if kind == 0:
        return (f"CREATE TABLE t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, "
                f"created_at timestamptz NOT NULL DEFAULT now());\nCREATE INDEX ON t{i} (created_at);\n")
    base = i - kind
    if kind == 1:
        return f"ALTER TABLE t{base} ADD COLUMN ref_{i} bigint REFERENCES t{base} (id);\n"
    if kind == 2:
        return (f"CREATE FUNCTION f{i}(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN x + {i}; END $$;\n"
                f"CREATE VIEW v{i} AS SELECT id, name FROM t{base};\n")
    if kind == 3:
        return f"INSERT INTO t{base} (name) SELECT 'row ' || g FROM generate_series(1, 20) g;\n"
    if kind == 4:
        return f"ALTER TABLE t{base} RENAME COLUMN name TO title;\nCREATE UNIQUE INDEX ON t{base} (title, id);\n"
    return f"ALTER TABLE t{base} ALTER COLUMN title SET DEFAULT 'untitled';\nCOMMENT ON TABLE t{base} IS 'v{i}';\n"


def write(directory: Path, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(size):
        (directory / f"{i + 1:04d}_m{i}.sql").write_text(body(i))


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poststack-bench-replay-") as tmp:
        root = Path(tmp)
        server = start_embedded(root / "server")
        directory = root / "migrations"
        write(directory, args.size)
        cache = root / "cache"
        os.environ[CACHE_ENV] = str(cache)
        migrated, by_hand = args.size * 40 // 100, args.size * 70 // 100
        name = create_database(server, "bench_replay")
        url = server.database_url(name)
        MigrationRunner(url, directory).migrate(target=migrated)
        with DbHelper(url, directory) as helper:
            for version in range(migrated + 1, by_hand + 1):
                helper.apply_untracked(version)
        diag = MigrationDiagnostics(url, directory)
        samples: dict[str, list[float]] = {"migrate": [], "first": [], "cached": []}
        for _ in range(args.runs):
            fresh = create_database(server, "bench_migrate")
            samples["migrate"].append(timed(lambda: MigrationRunner(server.database_url(fresh), directory).migrate()))  # noqa: B023
            drop_database(server, fresh)
            shutil.rmtree(cache, ignore_errors=True)
            samples["first"].append(timed(diag.diagnose))
            samples["cached"].append(timed(diag.diagnose))
        found = {i.code for i in diag.diagnose().issues}
        drop_database(server, name)
    m, first, cached = (statistics.median(samples[k]) for k in ("migrate", "first", "cached"))
    print(f"server: {server}; {args.size} migrations, {migrated} migrated, {by_hand - migrated} applied by hand; "
          f"runs: {args.runs} (median); diagnose found: {sorted(found)}")
    print(f"{'':24} {'seconds':>8} {'x migrate':>10}")
    print(f"{'migrate (baseline)':24} {m:>8.2f} {1.0:>10.2f}")
    print(f"{'diagnose, first replay':24} {first:>8.2f} {first / m:>10.2f}")
    print(f"{'diagnose, cached':24} {cached:>8.2f} {cached / m:>10.2f}")


if __name__ == "__main__":
    main()
