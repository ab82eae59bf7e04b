"""Shared helpers for the benchmarks: one server per run, scratch databases, generated migrations, timing, tables.

Every benchmark compares contenders inside one process run on one PostgreSQL server and prints ratios against a
baseline measured in that same run, because absolute times on a shared two-core machine say little. Nothing here
asserts: a benchmark reports, a human (or the lead) judges.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

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
    factory = DatabaseFactory(server)
    try:
        yield server, factory
    finally:
        factory.close()


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


def migration_sql(index: int, rows: int = 100) -> tuple[str, str]:
    """(up, down) of one small migration: a table, an index and a ``rows``-row insert written out as literals."""
    table = f"bench_t{index:05d}"
    values = ",\n".join(f"    ({i}, 'item {index}-{i}', {i * 1.25:.2f})" for i in range(1, rows + 1))
    up = (f"CREATE TABLE {table} (\n    id integer PRIMARY KEY,\n    name text NOT NULL,\n"
          f"    amount numeric(12, 2) NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n"
          f"CREATE INDEX {table}_name_idx ON {table} (name);\n"
          f"INSERT INTO {table} (id, name, amount) VALUES\n{values};\n")
    return up, f"DROP TABLE {table};\n"


def generate_migrations(count: int, root: Path, rows: int = 100) -> MigrationDirs:
    """Write ``count`` migrations three ways: poststack/yoyo (``NNNNN_name.sql`` + ``.rollback.sql``) and dbmate
    (one file with ``-- migrate:up`` / ``-- migrate:down`` sections). The SQL executed is identical."""
    dirs = MigrationDirs(count, root / "poststack", root / "yoyo", root / "dbmate")
    for path in (dirs.poststack, dirs.yoyo, dirs.dbmate):
        path.mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        up, down = migration_sql(index, rows)
        stem = f"{index:05d}_create_bench_t{index:05d}"
        for directory in (dirs.poststack, dirs.yoyo):
            (directory / f"{stem}.sql").write_text(up)
            (directory / f"{stem}.rollback.sql").write_text(down)
        (dirs.dbmate / f"{stem}.sql").write_text(f"-- migrate:up\n{up}\n-- migrate:down\n{down}")
    return dirs


# -- timing --------------------------------------------------------------------------------------------------
def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_quiet(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run a process, discarding its output; a failure stops the benchmark with the program's own message."""
    result = subprocess.run(list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {argv[0]} exited {result.returncode}: {result.stderr.decode().strip()[-500:]}")


def time_process(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    run_quiet(argv, env, cwd)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min-max of repeated runs, so a reader can see whether a ratio is inside the noise."""
    if len(values) < 2:
        return ""
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes, without URLs that would point a tool at another database."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "POSTSTACK_DATABASE_URL", "POSTSTACK_MIGRATIONS_PATH"}}
    env.update(extra)
    return env


# -- results -------------------------------------------------------------------------------------------------
@dataclass
class Table:
    """One comparison: rows of (contender, seconds, ratio to the baseline, note)."""

    title: str
    baseline: str
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (name, seconds, note)
    notes: list[str] = field(default_factory=list)
    unit: str = "ms"

    def add(self, name: str, seconds: float, note: str = "") -> None:
        self.rows.append((name, seconds, note))

    def ratio(self, seconds: float) -> str:
        base = next((s for n, s, _ in self.rows if n == self.baseline), None)
        return f"{seconds / base:.2f}x" if base else "-"

    def _value(self, seconds: float) -> str:
        return f"{seconds:.2f} s" if self.unit == "s" else f"{seconds * 1000:.1f} ms"

    def text(self) -> str:
        width = max([len(n) for n, _, _ in self.rows] + [10])
        lines = [self.title, "-" * len(self.title)]
        for name, seconds, note in self.rows:
            lines.append(f"  {name:<{width}}  {self._value(seconds):>11}  {self.ratio(seconds):>7}  {note}".rstrip())
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", f"| contender | time | vs {self.baseline} | note |", "|---|---:|---:|---|"]
        lines += [f"| {name} | {self._value(seconds)} | {self.ratio(seconds)} | {note} |"
                  for name, seconds, note in self.rows]
        lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def emit(tables: Sequence[Table], args: argparse.Namespace, header: str = "") -> None:
    """Print the tables; ``--markdown PATH`` / ``--json PATH`` also write them for bench/run_all.py."""
    for table in tables:
        print(table.text(), "\n", flush=True)
    if args.markdown:
        body = (header + "\n\n" if header else "") + "\n".join(t.markdown() for t in tables)
        Path(args.markdown).write_text(body)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(t) for t in tables], indent=1))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write the raw rows as JSON to PATH")
