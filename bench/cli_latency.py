"""CLI latency: a no-op migrate and a status listing on 50 applied files, each as a whole process.

This is what a deploy script or a developer feels on every invocation: interpreter or binary start-up, imports,
connecting, reading the files and the history. poststack, dbmate and yoyo-migrations each get their own database
(same server, same 50 files, all applied beforehand); the commands are then run round-robin in a rotated order
and the median of ``--runs`` is shown. Baselines: ``dbmate migrate`` / ``dbmate status`` (the issue's target is
"at or below dbmate"); ``python -c pass`` and ``poststack --version`` show the floor any Python CLI pays.

    /work/venv/bin/python bench/cli_latency.py [--runs 20] [--files 50] [--markdown PATH]

Targets (issues 2 and 6): no-op ``poststack db migrate`` under 100 ms median, and at or below dbmate; issue 15:
at most 1.3x ``python -c "import psycopg"`` measured side by side (the row is in the same table).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


@dataclass(frozen=True)
class Command:
    name: str
    argv: list[str]
    env: dict[str, str]
    note: str = ""


def prepare(factory: object, files: int) -> tuple[Path, dict[str, str]]:
    """A project directory with ``files`` migrations, and a database per tool with all of them applied."""
    project = common.temp_dir("cli")
    dirs = common.generate_migrations(files, project)
    urls = {tool: common.temp_database(factory, tool) for tool in ("poststack", "yoyo", "dbmate")}
    env = common.clean_env()
    common.run_quiet([common.venv_program("poststack"), "--database-url", urls["poststack"], "--migrations-path",
                      str(dirs.poststack), "-q", "db", "migrate"], env=env)
    common.run_quiet([common.venv_program("yoyo"), "apply", "--batch", "--no-config-file", "--database",
                      common.yoyo_url(urls["yoyo"]), str(dirs.yoyo)], env=env)
    binary = common.dbmate_binary()
    if binary:
        common.run_quiet([binary, "--url", common.dbmate_url(urls["dbmate"]), "--migrations-dir", str(dirs.dbmate),
                          "--no-dump-schema", "migrate"], env=env)
    return project, urls


def commands(project: Path, urls: dict[str, str]) -> tuple[list[Command], list[Command]]:
    """(no-op migrate commands, status commands), each tool configured the way its docs suggest."""
    poststack = common.venv_program("poststack")
    yoyo = common.venv_program("yoyo")
    ps_env = common.clean_env(DATABASE_URL=urls["poststack"])  # run from the project dir: ./migrations
    plain = common.clean_env()
    yoyo_args = ["--no-config-file", "--database", common.yoyo_url(urls["yoyo"]), str(project / "yoyo")]
    migrate = [
        Command("python -c pass", [sys.executable, "-c", "pass"], plain, "interpreter floor"),
        Command("python -c 'import psycopg'", [sys.executable, "-c", "import psycopg"], plain,
                "floor of any psycopg program (issue 15: no-op migrate <= 1.3x this)"),
        Command("python -c 'import psycopg, click'", [sys.executable, "-c", "import psycopg, click"], plain,
                "floor of any psycopg + click CLI"),
        Command("poststack --version", [poststack, "--version"], plain, "CLI floor: imports, no database"),
        Command("poststack db migrate", [poststack, "--migrations-path", str(project / "poststack"), "db",
                                         "migrate"], ps_env, "no-op"),
        Command("yoyo apply", [yoyo, "apply", "--batch", *yoyo_args], plain, "no-op"),
    ]
    status = [
        Command("poststack db migration-status", [poststack, "--migrations-path", str(project / "poststack"),
                                                  "db", "migration-status"], ps_env, "rich table"),
        Command("poststack db migration-status --format json",
                [poststack, "--migrations-path", str(project / "poststack"), "db", "migration-status",
                 "--format", "json"], ps_env, ""),
        Command("yoyo list", [yoyo, "list", *yoyo_args], plain, ""),
    ]
    binary = common.dbmate_binary()
    if binary:
        dbmate_env = common.clean_env(DATABASE_URL=common.dbmate_url(urls["dbmate"]))
        dirs = ["--migrations-dir", str(project / "dbmate")]
        migrate += [
            Command("dbmate migrate", [binary, *dirs, "--no-dump-schema", "migrate"], dbmate_env, "no-op"),
            Command("dbmate up", [binary, *dirs, "--no-dump-schema", "up"], dbmate_env,
                    "no-op; also checks the database exists"),
        ]
        status.append(Command("dbmate status", [binary, *dirs, "status"], dbmate_env, ""))
    return migrate, status


def measure(title: str, baseline: str, chosen: list[Command], runs: int, cwd: Path) -> common.Table:
    times: dict[str, list[common.Sample]] = {c.name: [] for c in chosen}
    for command in chosen:  # one untimed run each: page cache, bytecode caches
        common.run_quiet(command.argv, command.env, cwd)
    for run_no in range(runs):
        shift = run_no % len(chosen)
        for command in chosen[shift:] + chosen[:shift]:
            times[command.name].append(common.time_process(command.argv, command.env, cwd))
    table = common.Table(title, baseline if baseline in times else chosen[0].name)
    for command in chosen:
        table.add(command.name, times[command.name], command.note)
    table.notes.append(f"median of {runs} runs each, interleaved")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (median shown; default 20)")
    parser.add_argument("--files", type=int, default=50, help="applied migrations (default 50)")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    before = common.load_average()
    with common.bench_server() as (server, factory):
        project, urls = prepare(factory, args.files)
        migrate, status = commands(project, urls)
        tables = [
            measure(f"no-op migrate, {args.files} applied files (whole process)", "dbmate migrate", migrate,
                    args.runs, project),
            measure(f"status, {args.files} applied files (whole process)", "dbmate status", status, args.runs,
                    project),
        ]
    for table in tables:
        table.notes += [f"server: {server}", f"{before} before, {common.load_average()} after"]
    common.emit(tables, args, "## CLI latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
