"""Roles are server-wide: what a test run creates, it drops at the end, and says so.

A migration's ``CREATE ROLE`` runs once per server, not per database: the template build creates the role
for every later clone, and a role left over from one run makes the next run's ``CREATE ROLE`` fail. So:

- the roles that exist when a test run first touches the server are its *baseline* (kept in a file in the
  run's temporary directory, which every xdist worker of the run shares);
- the run's *candidates* are the roles that the migrations it tested create (``created_roles`` of every
  directory a ``migrations_dir`` fixture or the generated tests used); each process writes its own;
- every process of the run holds a shared advisory lock on a key of the run while it may use the server;
  the last one out (it gets the lock exclusively) drops every candidate not in the baseline, after its
  test databases and templates are gone, and writes a report of what it dropped and could not drop;
- the report is printed in pytest's terminal summary.

Roles that existed before the run are never touched, nor roles the migrations do not create (a test's own
``CREATE ROLE`` is the test's to drop), so another run on the same server keeps the roles it made.

``created_roles`` tells which roles a migration creates, from its parse tree (``CREATE ROLE/USER/GROUP`` at top
level, and literal ones inside ``DO`` blocks, the usual way to tolerate a role that already exists; not
roles named by dynamic SQL): the rollback checks compare exactly those, so what another test or xdist
worker does on the server at the same moment cannot change their verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack.db.connection import connect
from poststack.source.files import load_migrations
from poststack.source.sqltext import created_roles as created_roles  # the parse lives with the other SQL text work

BASELINE_FILE = "poststack-roles-baseline.json"
REPORT_FILE = "poststack-roles-report.json"
CANDIDATES_PREFIX = "poststack-roles-candidates-"


def server_roles(conn: psycopg.Connection[Any]) -> set[str]:
    return {name for (name,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'")}


@dataclass
class RoleReport:
    dropped: list[str] = field(default_factory=list)
    left_behind: dict[str, str] = field(default_factory=dict)  # role -> why it could not be dropped

    def lines(self) -> list[str]:
        out = []
        if self.dropped:
            out.append(f"poststack: dropped {len(self.dropped)} role(s) this test run created: "
                       + ", ".join(self.dropped))
        for role, why in sorted(self.left_behind.items()):
            out.append(f"poststack: role {role} was created by this test run and is left behind: {why}")
        return out


class RunRoles:
    """The role baseline and lease of one test run on one server (see the module docstring)."""

    def __init__(self, server_url: str, run_dir: Path) -> None:
        self.server_url = server_url
        self.run_dir = run_dir
        self.key = int.from_bytes(hashlib.sha256(b"poststack-run:" + str(run_dir).encode()).digest()[:8], "big",
                                  signed=True)
        self._conn: psycopg.Connection[Any] | None = None
        self.directories: set[Path] = set()

    def note_directory(self, directory: Path) -> None:
        """A migrations directory this process tested: the roles its migrations create are the run's."""
        self.directories.add(Path(directory).resolve())

    def _write_candidates(self) -> None:
        names: list[str] = []
        for directory in sorted(self.directories):
            try:
                names += created_roles(m.sql for m in load_migrations(directory))
            except Exception:  # a directory a test deleted or broke: its roles are not known
                continue
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (self.run_dir / f"{CANDIDATES_PREFIX}{worker}-{os.getpid()}.json").write_text(json.dumps(sorted(set(names))))

    def start(self) -> None:
        """Join the run: hold its lease, and record the baseline if this process is the first."""
        self._conn = connect(self.server_url, autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock_shared(%s)", [self.key])
        baseline = self.run_dir / BASELINE_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(baseline, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as out:
            json.dump(sorted(server_roles(self._conn)), out)

    def finish(self) -> RoleReport | None:
        """Leave the run; the last process out drops the run's roles and returns (and stores) the report."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        try:
            self._write_candidates()
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", [self.key])
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            if not (got and got[0]):
                return None  # another process of the run still works on the server
            try:
                report = self._drop_new_roles(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        except psycopg.OperationalError:
            return None  # the server is gone (a test stopped it): nothing can be dropped or reported
        finally:
            conn.close()
            self._conn = None
        (self.run_dir / REPORT_FILE).write_text(json.dumps({"dropped": report.dropped,
                                                            "left_behind": report.left_behind}))
        return report

    def _drop_new_roles(self, conn: psycopg.Connection[Any]) -> RoleReport:
        report = RoleReport()
        try:
            baseline = set(json.loads((self.run_dir / BASELINE_FILE).read_text()))
        except (OSError, ValueError):
            return report  # no baseline: nothing is known to be ours
        candidates: set[str] = set()
        for path in self.run_dir.glob(CANDIDATES_PREFIX + "*.json"):
            try:
                candidates.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        for role in sorted((server_roles(conn) & candidates) - baseline):
            try:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            except psycopg.Error as exc:
                detail = (exc.diag.message_primary or str(exc)).strip()
                if exc.diag.message_detail:
                    detail += " (" + exc.diag.message_detail.strip().replace("\n", "; ") + ")"
                report.left_behind[role] = detail
            else:
                report.dropped.append(role)
        return report


def stored_report(run_dir: Path) -> RoleReport | None:
    """The report the run's last process wrote (read by the xdist controller for its summary)."""
    try:
        data = json.loads((run_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return RoleReport(list(data.get("dropped", [])), dict(data.get("left_behind", {})))


def role_objects(conn: psycopg.Connection[Any], names: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Snapshot objects of kind ``role`` for those of ``names`` that exist: a rollback that forgets its
    ``DROP ROLE`` then differs from the state before the migration."""
    wanted = list(names)
    if not wanted:
        return {}
    found = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [wanted]).fetchall()
    return {"role": {str(name): {} for (name,) in found}} if found else {}
