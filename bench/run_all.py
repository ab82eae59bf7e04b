"""Run every benchmark in bench/ and write one Markdown report, bench/RESULTS.md, with the targets checked.

Each benchmark runs as its own process (its own server, its own imports), one after the other so they never
compete for the two cores. Benchmarks that accept ``--markdown PATH`` (and ``--json PATH``) contribute tables;
any other script in the list contributes its printed output verbatim, so a benchmark written without these
helpers still lands in the report. A benchmark that fails is reported as failed; the others still run.

    /work/venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# name -> (arguments for a full run, arguments for --quick). Order: cheapest first, throughput last.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "embedded_start": ([], ["--repeat", "1", "--runs", "5"]),
    "cli_latency": ([], ["--runs", "5"]),
    "migrate_throughput": ([], ["--n", "100", "--repeat", "1"]),
    "fixture_cost": ([], ["-n", "10"]),
    "diagnose_scale": ([], ["--sizes", "100,1000", "--runs", "3"]),
    "verify_scale": ([], ["--n", "100"]),
    "generated_rollback_scale": ([], ["--sizes", "20,80"]),
}


@dataclass
class Outcome:
    name: str
    markdown: str
    tables: list[dict[str, Any]]
    seconds: float
    load: str
    revision: str


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def supports(script: Path, flag: str) -> bool:
    """Whether a benchmark takes ``flag`` (read from its --help; a script without argparse just runs)."""
    try:
        result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and flag in result.stdout


def run_one(name: str, extra: list[str], scratch: Path) -> Outcome:
    script = BENCH_DIR / f"{name}.py"
    md_path, json_path = scratch / f"{name}.md", scratch / f"{name}.json"
    argv = [sys.executable, str(script), *extra]
    takes_markdown = supports(script, "--markdown")
    if takes_markdown:
        argv += ["--markdown", str(md_path)]
        if supports(script, "--json"):
            argv += ["--json", str(json_path)]
    print(f"== {name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    load, revision = load_average(), git_revision()
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    seconds = time.perf_counter() - start
    sys.stdout.write(result.stdout)
    load = f"{load} before, {load_average()} after"
    if result.returncode != 0:
        body = f"## {name}\n\n**failed** (exit {result.returncode}); output:\n\n```\n{result.stdout.strip()}\n```\n"
        return Outcome(name, body, [], seconds, load, revision)
    if takes_markdown and md_path.exists():
        body = md_path.read_text()
    else:
        body = f"## {name}\n\n```\n{result.stdout.strip()}\n```\n"
    tables = json.loads(json_path.read_text()) if json_path.exists() else []
    return Outcome(name, body, tables, seconds, load, revision)


def _row(tables: list[dict[str, Any]], title_start: str, contender: str) -> dict[str, Any] | None:
    for table in tables:
        if str(table["title"]).startswith(title_start):
            for row in table["rows"]:
                if row["name"] == contender:
                    return row
    return None


def _paired(values: list[float], base: list[float]) -> float | None:
    """Median of per-round ratios (the same statistic the tables show)."""
    if not values or len(values) != len(base):
        return None
    return statistics.median(v / b for v, b in zip(values, base, strict=True) if b > 0)


def target_checks(outcomes: list[Outcome]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target the issues set, from the benchmarks' JSON rows.

    The verdict follows the wall-time ratio, which is what the targets are about; when the CPU ratio (the
    steadier measure on a loaded machine) falls on the other side of the line, it says "unclear" instead.
    """
    tables = [t for o in outcomes for t in o.tables]
    checks: list[tuple[str, str, str]] = []

    def ratio_check(label: str, title: str, left: str, right: str, limit: float) -> None:
        a, b = _row(tables, title, left), _row(tables, title, right)
        if a is None or b is None:
            return
        wall = _paired(a["walls"], b["walls"])
        cpu = _paired(a["cpus"], b["cpus"])
        if wall is None:
            return
        measured = f"{wall:.2f}x wall ({a['seconds'] * 1000:.0f} vs {b['seconds'] * 1000:.0f} ms)"
        if cpu is not None:
            measured += f", {cpu:.2f}x CPU"
        verdict = "met" if wall <= limit else "**missed**"
        if cpu is not None and (cpu <= limit) != (wall <= limit):
            verdict = "unclear (wall and CPU disagree: rerun on a quieter machine)"
        checks.append((label, measured, verdict))

    for table in tables:
        title = str(table["title"])
        if title.startswith("migrate throughput"):
            n = title.rsplit("= ", 1)[-1]
            ratio_check(f"N={n}: poststack (API) <= 1.05x the limit", title, "poststack (API)", "limit", 1.05)
            ratio_check(f"N={n}: poststack (API) <= 1.10x the limit (issue 15, N=1,000)", title, "poststack (API)",
                        "limit", 1.10)
            ratio_check(f"N={n}: poststack (CLI) <= 1.25x the limit (issue 15, N=100)", title, "poststack (CLI)",
                        "limit", 1.25)
            for mode in ("API", "CLI"):
                for peer in ("yoyo", "dbmate"):
                    ratio_check(f"N={n}: poststack ({mode}) faster than {peer} ({mode})", title,
                                f"poststack ({mode})", f"{peer} ({mode})", 1.0)
    for table in tables:
        title = str(table["title"])
        if title.startswith("verify against migrate"):
            ratio_check(f"{title.split(', ', 1)[1]}: verify <= 15x migrate (issue 15)", title, "poststack verify",
                        "poststack migrate", 15.0)
    noop = _row(tables, "no-op migrate", "poststack db migrate")
    if noop is not None:
        checks.append(("no-op `poststack db migrate` under 100 ms median", f"{noop['seconds'] * 1000:.0f} ms",
                       "met" if noop["seconds"] < 0.1 else "**missed**"))
    ratio_check("no-op migrate at or below `dbmate migrate`", "no-op migrate", "poststack db migrate",
                "dbmate migrate", 1.0)
    ratio_check("no-op migrate <= 1.3x `python -c 'import psycopg'` (issue 15)", "no-op migrate",
                "poststack db migrate", "python -c 'import psycopg'", 1.3)
    ratio_check("migration-status at or below `dbmate status`", "status", "poststack db migration-status",
                "dbmate status", 1.0)
    return checks


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    dirty = " (uncommitted changes in the tree)" if git("status", "--porcelain", "--", "src") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{dirty}"


def report(outcomes: list[Outcome], quick: bool, revision: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# poststack benchmark results", "",
        f"Generated by `bench/run_all.py{' --quick' if quick else ''}` on {now}, commit {revision}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores ({platform.machine()}).",
        "Times are wall clock; ratios are against the baseline named in each table, measured in the same run "
        "on the same server. See bench/README.md for what each ratio means.", "",
        "## Targets", "", "| target | measured | verdict |", "|---|---|---|",
    ]
    checks = target_checks(outcomes)
    lines += [f"| {t} | {m} | {v} |" for t, m, v in checks] or ["| (no benchmark with targets ran) | | |"]
    lines += ["", "| benchmark | commit at its start | wall time | load average (1/5/15 min) |", "|---|---|---:|---|"]
    lines += [f"| {o.name} | {o.revision} | {o.seconds:.0f} s | {o.load} |" for o in outcomes]
    lines.append("")
    lines += [o.markdown for o in outcomes]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and N=100 only: a smoke run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these of {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="report path")
    args = parser.parse_args(argv)
    unknown = set(args.only or []) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    outcomes = []
    revision = git_revision()
    with tempfile.TemporaryDirectory(prefix="poststack-bench-") as scratch:
        for name, (full, quick) in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            if not (BENCH_DIR / f"{name}.py").exists():
                print(f"== {name}: not present, skipped", file=sys.stderr)
                continue
            outcomes.append(run_one(name, quick if args.quick else full, Path(scratch)))
    end_revision = git_revision()
    if end_revision != revision:  # others commit while a 20-minute run goes on: say which code was measured
        revision = f"{revision} at the start, {end_revision} at the end (benchmarks import src as they start)"
    args.output.write_text(report(outcomes, args.quick, revision))
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if any("**failed**" in o.markdown for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
