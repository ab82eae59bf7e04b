"""Migrate throughput: N small migrations applied by the limit, poststack, yoyo-migrations and dbmate.

Every contender gets a fresh database of one server and the same SQL (create table + index + a 100-row insert per
file). The baseline, "limit", is what any tool must at least do: read each file and run it in its own transaction
on one connection, with no tracking. Ratios are against the limit measured in the same run; contenders run in a
rotated order in each round and the median round is shown, so load drifting over the run hits all of them alike.

    /work/venv/bin/python bench/migrate_throughput.py [--n 100 1000] [--repeat 3] [--markdown PATH]

Target (issue 2 and 6): poststack in-process <= 1.05x the limit, and faster than yoyo and dbmate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


def limit(url: str, dirs: common.MigrationDirs) -> None:
    """The floor: one connection, one transaction per file, no history, no lock, no parsing."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for path in dirs.up_files:
            with conn.transaction():
                conn.execute(path.read_bytes())


def poststack_api(url: str, dirs: common.MigrationDirs) -> None:
    from poststack.schema_migration import MigrationRunner

    result = MigrationRunner(url, dirs.poststack).migrate()
    if len(result.steps) != dirs.count:
        raise SystemExit(f"error: poststack applied {len(result.steps)} of {dirs.count} migrations")


def poststack_cli(url: str, dirs: common.MigrationDirs) -> None:
    common.run_quiet([common.venv_program("poststack"), "--database-url", url, "--migrations-path",
                      str(dirs.poststack), "-q", "db", "migrate"], env=common.clean_env())


def yoyo_api(url: str, dirs: common.MigrationDirs) -> None:
    from yoyo import get_backend, read_migrations

    backend = get_backend(common.yoyo_url(url))
    migrations = read_migrations(str(dirs.yoyo))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))
    backend.connection.close()


def yoyo_cli(url: str, dirs: common.MigrationDirs) -> None:
    common.run_quiet([common.venv_program("yoyo"), "apply", "--batch", "--no-config-file", "--database",
                      common.yoyo_url(url), str(dirs.yoyo)], env=common.clean_env())


def dbmate_cli(binary: str) -> Callable[[str, common.MigrationDirs], None]:
    def run(url: str, dirs: common.MigrationDirs) -> None:
        common.run_quiet([binary, "--url", common.dbmate_url(url), "--migrations-dir", str(dirs.dbmate),
                          "--no-dump-schema", "migrate"], env=common.clean_env())
    return run


Contender = tuple[str, Callable[[str, common.MigrationDirs], None], str]


def contenders(skip: set[str]) -> list[Contender]:
    found: list[Contender] = [
        ("limit", limit, "raw psycopg, no tracking"),
        ("poststack (API)", poststack_api, "MigrationRunner.migrate() in-process"),
        ("poststack (CLI)", poststack_cli, "whole process"),
        ("yoyo (API)", yoyo_api, "yoyo 9 in-process"),
        ("yoyo (CLI)", yoyo_cli, "whole process"),
    ]
    binary = None if "dbmate" in skip else common.dbmate_binary()
    if binary:
        found.append(("dbmate (CLI)", dbmate_cli(binary), "native binary, whole process"))
    return [c for c in found if c[0].split(" ")[0] not in skip]


def applied_tables(url: str) -> int:
    """How many benchmark tables exist: proof a contender did the work it was timed for."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'bench%\\_t%'")
        return int(row.fetchone()[0])  # type: ignore[index]


def warm_up(chosen: list[Contender], factory: object) -> None:
    """One untimed run of each contender on three files: imports, page cache and server caches get warm, so a
    contender is not charged for going first (an in-process import is a one-off the CLI rows already show)."""
    dirs = common.generate_migrations(3, common.temp_dir("warmup"), prefix="warmup")
    for _, run, _ in chosen:
        with factory.scratch("warm") as url:  # type: ignore[attr-defined]
            run(url, dirs)


def measure(count: int, repeat: int, chosen: list[Contender], server: object, factory: object) -> common.Table:
    times: dict[str, list[common.Sample]] = {name: [] for name, _, _ in chosen}
    for round_no in range(repeat):
        # New contents each round (shared by all contenders of the round): nothing memoised carries over.
        dirs = common.generate_migrations(count, common.temp_dir(f"n{count}r{round_no}"), prefix=f"bench{round_no}")
        shift = round_no % len(chosen)
        for name, run, _ in chosen[shift:] + chosen[:shift]:
            with factory.scratch("bench") as url:  # type: ignore[attr-defined]
                times[name].append(common.timed(lambda run=run, url=url, dirs=dirs: run(url, dirs)))
                made = applied_tables(url)
                if made != count:
                    raise SystemExit(f"error: {name} left {made} of {count} tables")
            print(f"  N={count} round {round_no + 1}/{repeat} {name}: {times[name][-1].wall:.2f} s", file=sys.stderr)
    table = common.Table(f"migrate throughput, N = {count}", "limit", unit="s")
    for name, _, note in chosen:
        table.add(name, times[name], note)
    table.notes.append(f"median of {repeat} round(s), ratios are medians of per-round ratios; each run on a fresh "
                       f"database of {server}; new file contents every round")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="migration counts (default 100 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per contender (median shown; default 3)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["poststack", "yoyo", "dbmate"],
                        help="contenders to leave out")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    before = common.load_average()
    chosen = contenders(set(args.skip))
    with common.bench_server() as (server, factory):
        warm_up(chosen, factory)
        tables = [measure(n, args.repeat, chosen, server, factory) for n in args.n]
    for table in tables:
        table.notes.append(f"{before} before, {common.load_average()} after")
    common.emit(tables, args, "## Migrate throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
