"""diagnose at scale: 100, 1,000 and 5,000 applied migrations, against migration-status on the same database.

Each size gets its own database on one embedded PostgreSQL; every migration creates a table with a primary
key and has a rollback, so the schema grows with the history (the drift snapshot has real work to do). The
baseline is ``MigrationRunner.status()`` on the same database in the same process: both read the files
and the history; diagnose adds the lock report, invalid indexes, the evidence for pending migrations (none
here) and the schema-drift comparison. Medians of ``--runs`` interleaved runs; numbers are printed, never
asserted.

    /work/venv/bin/python bench/diagnose_scale.py [--sizes 100,1000,5000] [--runs 5]

Target (issue 4): diagnose < 2x status at every size, and time per migration roughly flat (linear growth).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from poststack.catalog.drift import detect_drift
from poststack.catalog.presence import count_queries
from poststack.migration_diagnostics import MigrationDiagnostics
from poststack.schema_migration import MigrationRunner
from poststack.testing.server import TestServer, create_database, drop_database, start_embedded


def write_migrations(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(count)))
    for i in range(1, count + 1):
        stem = f"{i:0{width}d}_table_{i}"
        (directory / f"{stem}.sql").write_text(
            f"-- Description: table {i}\nCREATE TABLE t_{i} (id bigint PRIMARY KEY, name text NOT NULL);\n")
        (directory / f"{stem}.rollback.sql").write_text(f"DROP TABLE t_{i};\n")


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(server: TestServer, root: Path, size: int, runs: int) -> tuple[float, float, float, int]:
    directory = root / f"m{size}"
    write_migrations(directory, size)
    name = create_database(server, "bench_diag")
    try:
        url = server.database_url(name)
        runner = MigrationRunner(url, directory)
        runner.migrate()
        diag = MigrationDiagnostics(url, directory)
        result = diag.diagnose()  # warm-up, and a check that the database really is clean
        assert result.filtered("low").issues == [], result.issues[:3]
        with count_queries() as counter:
            diag.diagnose()
        samples: dict[str, list[float]] = {"status": [], "diagnose": [], "drift": []}
        with diag.connection() as conn:
            for _ in range(runs):  # interleaved, so that load on the shared machine hits all three alike
                samples["status"].append(timed(runner.status))
                samples["diagnose"].append(timed(diag.diagnose))
                # the schema-drift comparison alone: snapshot query, stored snapshot, diff
                samples["drift"].append(timed(lambda: detect_drift(conn, "poststack")))
        status, diagnose, drift_only = (statistics.median(samples[k]) for k in ("status", "diagnose", "drift"))
        return status, diagnose, drift_only, counter.count
    finally:
        drop_database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated numbers of applied migrations")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command and size (median shown)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="poststack-bench-diag-") as tmp:
        root = Path(tmp)
        server = start_embedded(root / "server")
        print(f"server: {server}; runs per measurement: {args.runs} (median)")
        print(f"{'applied':>8} {'status ms':>10} {'diagnose ms':>12} {'ratio':>6} {'drift ms':>9} "
              f"{'ratio w/o drift':>16} {'status us/mig':>14} {'diagnose us/mig':>16} {'queries':>8}")
        for size in sizes:
            status, diagnose, drift_only, queries = measure(server, root, size, args.runs)
            print(f"{size:>8} {status * 1000:>10.1f} {diagnose * 1000:>12.1f} {diagnose / status:>6.2f} "
                  f"{drift_only * 1000:>9.1f} {(diagnose - drift_only) / status:>16.2f} "
                  f"{status / size * 1e6:>14.1f} {diagnose / size * 1e6:>16.1f} {queries:>8}")
        print("ratio = diagnose / status on the same database (target < 2). drift ms = the schema-drift "
              "comparison alone (snapshot query + stored snapshot + diff), timed separately; 'ratio w/o drift' "
              "subtracts it. queries = evidence/catalog queries per diagnose (set-based: independent of size).")


if __name__ == "__main__":
    main()
