"""Shared helpers for the benchmarks: one server per run, scratch databases, generated migrations, timing, tables.

Every benchmark compares contenders inside one process run on one PostgreSQL server and prints ratios against a
baseline measured in that same run, because absolute times on a shared two-core machine say little. Nothing here
asserts: a benchmark reports, a human (or the lead) judges.
"""

from __future__ import annotations

import atexit
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

# Re-exported: the benchmarks use common.Table and friends; they live in tables.py to keep files small.
from tables import Row as Row
from tables import Table as Table
from tables import add_common_arguments as add_common_arguments
from tables import emit as emit
from tables import median as median
from tables import paired_ratio as paired_ratio
from tables import spread as spread

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
VENV_BIN = Path(sys.executable).parent
# Set this to run every comparison against a server you started (e.g. the Debian PostgreSQL 15) instead of a
# fresh embedded one; the URL must allow CREATE DATABASE.
SERVER_URL_ENV = "POSTSTACK_BENCH_DATABASE_URL"
_TMPFS = Path("/dev/shm")


# -- places ------------------------------------------------------------------------------------------------
def temp_root() -> Path:
    """Where scratch files go: tmpfs when present, so disk flushes of other jobs do not leak into timings."""
    if _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK):
        stat = os.statvfs(_TMPFS)
        if stat.f_bavail * stat.f_frsize > (1 << 30):
            return _TMPFS
    return Path(tempfile.gettempdir())


def temp_dir(prefix: str) -> Path:
    """A temporary directory removed when the process exits (after the embedded server, registered later)."""
    path = Path(tempfile.mkdtemp(prefix=f"poststack-bench-{prefix}-", dir=temp_root()))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# -- the server ----------------------------------------------------------------------------------------------
@contextmanager
def bench_server() -> Iterator[tuple[object, object]]:
    """Yield ``(TestServer, DatabaseFactory)`` for one embedded server (or the one ``SERVER_URL_ENV`` names).

    The embedded server is started in a temporary directory with fsync off (as the test suite runs it) and is
    stopped and deleted when the process exits; each contender then gets a fresh database of this one server.
    """
    from poststack.testing.server import DatabaseFactory, external, start_embedded

    url = os.environ.get(SERVER_URL_ENV)
    server = external(url) if url else start_embedded(temp_dir("server"))
    if not url:
        quiet_autovacuum(server.url)
    watch_server(server.url)
    factory = DatabaseFactory(server)
    try:
        yield server, factory
    finally:
        factory.close()


def quiet_autovacuum(url: str) -> None:
    """Turn autovacuum off on our own throwaway server: it analyses every table a run creates while the run
    goes on, so a slower contender would also be charged more of that background CPU."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")


def temp_database(factory: object, prefix: str) -> str:
    """A database of the bench server for the rest of the run (the server is deleted at exit); its URL."""
    name = factory.create(prefix)  # type: ignore[attr-defined]
    return factory.server.database_url(name)  # type: ignore[attr-defined]


def socket_parts(url: str) -> tuple[str, str | None, str, str]:
    """(host or socket directory, port, user, database) of a libpq URL such as the embedded server's."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "/var/run/postgresql"
    port = query.get("port") or (str(parts.port) if parts.port else None)
    user = parts.username or query.get("user") or "postgres"
    return host, port, user, parts.path.lstrip("/") or "postgres"


def _password(url: str) -> str:
    password = urlsplit(url).password
    return f":{quote(password, safe='')}" if password else ""


def dbmate_url(url: str) -> str:
    """dbmate takes ``?socket=DIR`` for a Unix socket (documented in its README; verified by these benchmarks)."""
    host, port, user, database = socket_parts(url)
    port_q = f"&port={port}" if port else ""
    if host.startswith("/"):
        return f"postgres://{user}{_password(url)}@/{database}?socket={host}{port_q}&sslmode=disable"
    netloc = f"{host}:{port}" if port else host
    return f"postgres://{user}{_password(url)}@{netloc}/{database}?sslmode=disable"


def yoyo_url(url: str) -> str:
    """yoyo passes unknown query arguments to psycopg, so ``host=`` reaches libpq as the socket directory."""
    host, port, user, database = socket_parts(url)
    port_q = f"&port={port}" if port else ""
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}{_password(url)}@/{database}?host={host}{port_q}"
    netloc = f"{host}:{port}" if port else host
    return f"postgresql+psycopg://{user}{_password(url)}@{netloc}/{database}"


# -- the contenders' programs --------------------------------------------------------------------------------
def venv_program(name: str) -> str:
    """A console script of the venv this benchmark runs in (poststack, yoyo)."""
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} not found next to {sys.executable} or on PATH")
    return found


def dbmate_binary(install: bool = True) -> str | None:
    """The native dbmate binary from the npm package, installed into bench/.cache on first use.

    The package's ``.bin/dbmate`` is a Node wrapper that spawns the binary; timing it would charge dbmate for
    Node's start-up, so the binary is called directly.
    """
    binary = CACHE_DIR / "node_modules" / "@dbmate" / "linux-x64" / "bin" / "dbmate"
    if not binary.exists() and install and shutil.which("npm"):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE_DIR), "dbmate"],
                       check=False, capture_output=True, timeout=600)
    return str(binary) if binary.exists() else None


# -- generated migrations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MigrationDirs:
    """The same N migrations in each tool's layout; ``up`` holds the plain files the limit executes."""

    count: int
    poststack: Path
    yoyo: Path
    dbmate: Path

    @property
    def up_files(self) -> list[Path]:
        return sorted(p for p in self.poststack.glob("*.sql") if not p.name.endswith(".rollback.sql"))


def migration_sql(index: int, rows: int = 100, prefix: str = "bench") -> tuple[str, str]:
    """(up, down) of one small migration: a table, an index and a ``rows``-row insert written out as literals."""
    table = f"{prefix}_t{index:05d}"
    values = ",\n".join(f"    ({i}, 'item {index}-{i}', {i * 1.25:.2f})" for i in range(1, rows + 1))
    up = (f"CREATE TABLE {table} (\n    id integer PRIMARY KEY,\n    name text NOT NULL,\n"
          f"    amount numeric(12, 2) NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n"
          f"CREATE INDEX {table}_name_idx ON {table} (name);\n"
          f"INSERT INTO {table} (id, name, amount) VALUES\n{values};\n")
    return up, f"DROP TABLE {table};\n"


def generate_migrations(count: int, root: Path, rows: int = 100, prefix: str = "bench") -> MigrationDirs:
    """Write ``count`` migrations three ways: poststack/yoyo (``NNNNN_name.sql`` + ``.rollback.sql``) and dbmate
    (one file with ``-- migrate:up`` / ``-- migrate:down`` sections). The SQL executed is identical.

    A different ``prefix`` gives different file contents, so no contender can reuse anything a previous round
    cached in the process (poststack memoises parse results by text) or left in the server's caches."""
    dirs = MigrationDirs(count, root / "poststack", root / "yoyo", root / "dbmate")
    for path in (dirs.poststack, dirs.yoyo, dirs.dbmate):
        path.mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        up, down = migration_sql(index, rows, prefix)
        stem = f"{index:05d}_create_{prefix}_t{index:05d}"
        for directory in (dirs.poststack, dirs.yoyo):
            (directory / f"{stem}.sql").write_text(up)
            (directory / f"{stem}.rollback.sql").write_text(down)
        (dirs.dbmate / f"{stem}.sql").write_text(f"-- migrate:up\n{up}\n-- migrate:down\n{down}")
    return dirs


# -- timing --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One timed run: wall seconds, and the CPU seconds (user + system) it cost the client and the server.

    Wall time is what a user waits, but on a shared two-core machine it swings with other jobs' load by 2x and
    more between adjacent runs. CPU time swings far less, and with fsync off the work is CPU-bound, so the CPU
    ratio is the steadier measure of how much work a contender does; both are reported.
    """

    wall: float
    client_cpu: float
    server_cpu: float | None  # None when the server is not local (an external URL)

    @property
    def cpu(self) -> float:
        return self.client_cpu + (self.server_cpu or 0.0)


_watched_postmaster: int | None = None
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def watch_server(url: str) -> None:
    """Charge the CPU of this server's processes to every following sample (a local server only)."""
    global _watched_postmaster
    pidfile = Path(socket_parts(url)[0]) / "postmaster.pid"
    try:
        _watched_postmaster = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        _watched_postmaster = None


def _proc_stat(pid: int) -> tuple[int, list[int]] | None:
    """(parent pid, [utime, stime, cutime, cstime]) in clock ticks, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return int(fields[1]), [int(f) for f in fields[11:15]]


def server_cpu() -> float | None:
    """CPU seconds the watched server has used so far: the postmaster and its live children, plus what
    exited children used (the postmaster reaps them, so it lands in its cutime/cstime)."""
    if _watched_postmaster is None:
        return None
    own = _proc_stat(_watched_postmaster)
    if own is None:
        return None
    ticks = sum(own[1])
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            child = _proc_stat(int(entry.name))
            if child and child[0] == _watched_postmaster:
                ticks += child[1][0] + child[1][1]
    return ticks / _CLOCK_TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _client_cpu() -> float:
    return time.process_time() + _children_cpu()


def timed(action: Callable[[], object]) -> Sample:
    """Time one call. Client CPU is this process (all threads) plus the children it waited for, so an
    in-process contender and one that runs a CLI are charged alike."""
    server, client = server_cpu(), _client_cpu()
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    client = _client_cpu() - client
    after = _settled_server_cpu()
    return Sample(wall, client, after - server if after is not None and server is not None else None)


def _settled_server_cpu() -> float | None:
    """The server CPU once the contender's backends have been reaped: a closed connection's backend exits a
    few milliseconds later, and only then does its CPU reach the postmaster's cutime (untimed)."""
    reading = server_cpu()
    for _ in range(25):
        time.sleep(0.02)
        again = server_cpu()
        if again == reading:
            break
        reading = again
    return reading


def run_quiet(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run a process, discarding its output; a failure stops the benchmark with the program's own message."""
    result = subprocess.run(list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {argv[0]} exited {result.returncode}: {result.stderr.decode().strip()[-500:]}")


def time_process(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """Time a whole process (children are waited for one at a time, so the rusage delta is this one's)."""
    return timed(lambda: run_quiet(argv, env, cwd))


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no URL that would point a tool at another database, and bytecode
    caching on (in bench/.cache/pycache), so every Python CLI is timed as a pip-installed one runs (pip compiles
    bytecode at install) even when the caller sets PYTHONDONTWRITEBYTECODE, as this project's sandbox does;
    without it an editable poststack recompiles all its modules on every start (~50 ms here)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "POSTSTACK_DATABASE_URL", "POSTSTACK_MIGRATIONS_PATH",
                        "PYTHONDONTWRITEBYTECODE"}}
    env["PYTHONPYCACHEPREFIX"] = str(CACHE_DIR / "pycache")
    env.update(extra)
    return env
