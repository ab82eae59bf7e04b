"""Per-migration cost of the generated ``rollback_restores_schema`` tests as a directory grows.

Each generated rollback test used to migrate an empty database up to its migration, so n migrations cost
about n²/2 migrations in all (40 took 12.3 s, 80 took 31.0 s). Now each test clones the checkpoint template
below its migration (``poststack.testing.templates.CHECKPOINT_EVERY``) and applies fewer than that many
migrations first, so the cost per migration should not grow with n. Target (issue 13): the per-migration
cost at 320 migrations is at most 1.3x the cost at 40.

Runs ``pytest --poststack-migrations DIR -k rollback_restores_schema`` in a subprocess for each size on one
server (embedded PostgreSQL 18, or POSTSTACK_TEST_DATABASE_URL), reads every test's duration (setup, call
and teardown, so template builds count) from a JUnit XML report, and prints the per-migration cost and the
ratio to the smallest size. The session's server start is outside the measured tests.

    python bench/generated_rollback_scale.py [--sizes 40,320] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path


def write_migrations(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for i in range(1, count + 1):
        (directory / f"{i:04d}_t{i}.sql").write_text(
            f"CREATE TABLE t{i} (id int PRIMARY KEY, v text NOT NULL DEFAULT '');\n"
            f"CREATE INDEX t{i}_v_idx ON t{i} (v);")
        (directory / f"{i:04d}_t{i}.rollback.sql").write_text(f"DROP TABLE t{i};")


def measure(count: int, workdir: Path) -> tuple[float, int]:
    """Sum of the rollback tests' durations (seconds) and how many passed."""
    project = workdir / f"n{count}"
    write_migrations(project / "migrations", count)
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    report = project / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                    "--poststack-migrations=migrations", "--poststack-no-lint", "-k", "rollback_restores_schema",
                    f"--junitxml={report}"], cwd=project, check=False, capture_output=True, text=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    cases = ET.parse(report).getroot().iter("testcase")
    total, passed = 0.0, 0
    for case in cases:
        total += float(case.get("time", 0))
        passed += not any(child.tag in ("failure", "error", "skipped") for child in case)
    return total, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,320", help="comma-separated migration counts")
    parser.add_argument("--runs", type=int, default=1, help="runs per size (the median is reported)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    per_migration: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="pst-bench-rollback-") as tmp:
        for size in sizes:
            costs = []
            for run in range(args.runs):
                total, passed = measure(size, Path(tmp) / f"run{run}")
                if passed != size:
                    raise SystemExit(f"{size} migrations: only {passed} rollback tests passed")
                costs.append(total / size)
            per_migration[size] = statistics.median(costs)
    base = per_migration[sizes[0]]
    print("| migrations | per migration (ms) | relative to the smallest |")
    print("|---|---|---|")
    for size in sizes:
        print(f"| {size} | {per_migration[size] * 1000:.1f} | {per_migration[size] / base:.2f}x |")
    print(f"\ntarget: at {sizes[-1]} at most 1.3x the cost at {sizes[0]}: "
          f"{'met' if per_migration[sizes[-1]] / base <= 1.3 else 'missed'} "
          f"({per_migration[sizes[-1]] / base:.2f}x)")


if __name__ == "__main__":
    main()
