"""Template databases at the head of a migrations directory, built once and cloned per test.

Migrating a fresh database for every test costs as much as the migrations; ``CREATE DATABASE ... TEMPLATE``
copies a migrated one in a fraction of that. The template's name is derived from what it contains (the
migration files' checksums, the history schema and the poststack version), so a changed file means a new
template and every process that needs the same migrations finds the same one: xdist workers and even
separate test runs on one external server share it safely through advisory locks on the server itself.

Locking protocol, per template, on a key derived from its name:
- a process that uses a template holds a *shared* advisory lock for as long as it may clone it;
- building happens under the *exclusive* lock, and the template only appears under its final name (by
  rename) once fully migrated, so a name that exists is a complete template;
- a finished process drops the template only if it can take the exclusive lock without waiting, that is
  when no other process still holds it shared. The last user out cleans up.
The template is closed to connections (``ALLOW_CONNECTIONS false``): a clone fails if anyone is connected to
its source, and nobody needs to be.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from poststack import __version__
from poststack.config import DEFAULT_SCHEMA
from poststack.db.connection import connect
from poststack.db.history import LAYOUT_VERSION
from poststack.errors import UsageError
from poststack.schema_migration import MigrationRunner
from poststack.source.files import MigrationSet, load_migrations
from poststack.testing.server import DatabaseFactory, TestServer

TEMPLATE_PREFIX = "pst_tpl_"
_POLL_SECONDS = 0.05
# Templates at an intermediate version are built from the nearest *checkpoint* below them: the state after
# every CHECKPOINT_EVERY-th migration, itself a template. A database at any version then costs at most
# CHECKPOINT_EVERY - 1 migrations on top of a clone, however long the history is.
CHECKPOINT_EVERY = 16


_LOADED: dict[Path, tuple[tuple[tuple[str, int, int], ...], MigrationSet]] = {}


def load_cached(migrations_dir: str | Path) -> MigrationSet:
    """``load_migrations``, read again only when a file in the directory changed (name, size, mtime).

    Each clone and each generated test needs the directory's migrations; at 320 files reading and hashing
    them every time cost a quarter of a generated rollback test."""
    directory = Path(migrations_dir).resolve()
    try:
        signature = tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                                 for e in os.scandir(directory) if e.is_file()))
    except OSError:
        return load_migrations(directory)  # let the loader say what is wrong with the directory
    cached = _LOADED.get(directory)
    if cached is None or cached[0] != signature:
        cached = (signature, load_migrations(migrations_dir))
        _LOADED[directory] = cached
    return cached[1]


def migrations_fingerprint(migrations_dir: str | Path, history_schema: str = DEFAULT_SCHEMA,
                           target: int | None = None) -> str:
    """A hash of everything that decides what a database migrated to ``target`` (default: the head) holds."""
    migrations = load_migrations(migrations_dir)
    migrations.raise_for_problems()
    return _fingerprint(migrations, history_schema, target)


def _fingerprint(migrations: MigrationSet, history_schema: str, target: int | None) -> str:
    digest = hashlib.sha256()
    for part in (__version__, str(LAYOUT_VERSION), history_schema):
        digest.update(part.encode() + b"\0")
    for m in migrations:
        if target is not None and m.version > target:
            break
        rollback = m.rollback.checksum if m.rollback else "-"
        digest.update(f"{m.version_text}\0{m.name}\0{m.checksum}\0{rollback}\n".encode())
    return digest.hexdigest()


def template_name(fingerprint: str) -> str:
    return TEMPLATE_PREFIX + fingerprint[:24]


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(b"poststack-template:" + name.encode()).digest()[:8], "big",
                          signed=True)


class TemplateCache:
    """The templates one process uses on one server; ``close()`` releases them (and drops unused ones)."""

    def __init__(self, server: TestServer, databases: DatabaseFactory | None = None) -> None:
        self.server = server
        self.databases = databases or DatabaseFactory(server)
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._held: dict[str, int] = {}  # template name -> lock key, held shared
        self._failed: dict[str, BaseException] = {}  # template name -> why its build failed

    def _conn(self) -> psycopg.Connection[Any]:
        # Advisory locks belong to a session: this connection must live as long as the leases do.
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = connect(self.server.url, autocommit=True)
        return self._lock_conn

    def _exists(self, name: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        return row is not None

    def template_for(self, migrations_dir: str | Path, history_schema: str = DEFAULT_SCHEMA,
                     target: int | None = None) -> str:
        """The name of a template at ``target`` (default: the head) of ``migrations_dir``, building it if no
        process has yet. Intermediate versions are built from the checkpoint below them."""
        migrations = load_cached(migrations_dir)
        migrations.raise_for_problems()
        versions = [m.version for m in migrations]
        if target is not None and target not in versions:
            raise UsageError(f"no migration with version {target} in {migrations_dir}")
        name = template_name(_fingerprint(migrations, history_schema, target))
        if name in self._held:
            return name
        if name in self._failed:
            raise self._failed[name]
        base = None
        base_version = checkpoint_below(versions, target)
        if base_version is not None:
            base = self.template_for(migrations_dir, history_schema, base_version)
        conn = self._conn()
        key = _lock_key(name)
        while True:
            conn.execute("SELECT pg_advisory_lock_shared(%s)", [key])
            if self._exists(name):
                self._held[name] = key
                return name
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", [key])
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if not (got and got[0]):
                time.sleep(_POLL_SECONDS)  # someone builds it, or is dropping it: look again
                continue
            try:
                if not self._exists(name):
                    self._build(name, Path(migrations_dir), history_schema, target, base)
                conn.execute("SELECT pg_advisory_lock_shared(%s)", [key])  # own exclusive: no wait
                self._held[name] = key
                return name
            except BaseException as exc:
                self._failed[name] = exc
                raise
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])

    def _build(self, name: str, migrations_dir: Path, history_schema: str, target: int | None,
               base: str | None) -> None:
        admin = self.databases.connection()
        building = name + "_building"
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building))
        if base is not None:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(base))
        admin.execute(create)
        try:
            if base is not None:
                copy_database_settings(admin, base, building)
            MigrationRunner(self.server.database_url(building), migrations_dir,
                            history_schema=history_schema).migrate(target)
        except BaseException:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
            raise
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building),
                                                                        sql.Identifier(name)))
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))

    def clone(self, migrations_dir: str | Path, history_schema: str = DEFAULT_SCHEMA,
              prefix: str = "pst", target: int | None = None) -> str:
        """Create a new database at ``target`` (default: the head) of ``migrations_dir``; return its name
        (drop it when done). Database-level settings and the comment are copied: a clone is what
        migrating a database directly gives."""
        template = self.template_for(migrations_dir, history_schema, target)
        name = self.databases.create(prefix, template=template)
        try:
            copy_database_settings(self.databases.connection(), template, name)
        except BaseException:
            self.databases.drop(name)
            raise
        return name

    def close(self) -> None:
        """Release every template; drop those no other process holds."""
        if self._lock_conn is None or self._lock_conn.closed:
            self._held.clear()
            return
        conn = self._lock_conn
        try:
            for name, key in self._held.items():
                conn.execute("SELECT pg_advisory_unlock_shared(%s)", [key])
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
                if got and got[0]:
                    try:
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    finally:
                        conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        except psycopg.OperationalError:
            pass  # the server went away first (it ended, or a test stopped it): nothing left to release
        finally:
            self._held.clear()
            conn.close()
            self._lock_conn = None


def checkpoint_below(versions: list[int], target: int | None) -> int | None:
    """The checkpoint version a template at ``target`` is built from (None: build from an empty database).

    The head (``target`` None) is built from empty: one migrate run, and no checkpoint templates a project
    that only uses ``migrated_database_url`` would never use."""
    if target is None:
        return None
    index = versions.index(target)
    below = (index // CHECKPOINT_EVERY) * CHECKPOINT_EVERY - 1  # checkpoints: indexes K-1, 2K-1, ...
    return versions[below] if below >= 0 else None


# Settings whose list elements pg_dump quotes one by one (its variable_is_guc_list_quote): stored as one text,
# they must be given back as several literals, or search_path 'a, b' would become one schema named "a, b".
_LIST_QUOTE = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                         "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})


def _split_list(value: str) -> list[str]:
    """Split a stored list setting (``"$user", public``) into its elements, double quotes removed."""
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    items.append(current.strip())
    return items


def copy_database_settings(conn: psycopg.Connection[Any], source: str, target: str) -> None:
    """Give database ``target`` the settings (``ALTER DATABASE ... SET``, also per role) and the comment
    of ``source``: ``CREATE DATABASE ... TEMPLATE`` copies neither."""
    rows = conn.execute(
        "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = %s", [source]).fetchall()
    comment = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           [source]).fetchone()
    for role, config in rows:
        head = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(target))
                if role else sql.SQL("ALTER DATABASE {}").format(sql.Identifier(target)))
        for entry in config or ():
            setting, _, value = entry.partition("=")
            values = _split_list(value) if setting.lower() in _LIST_QUOTE else [value]
            conn.execute(sql.SQL("{} SET {} = {}").format(
                head, sql.Identifier(setting), sql.SQL(", ").join(sql.Literal(v) for v in values)))
    if comment and comment[0] is not None:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(target),
                                                                   sql.Literal(comment[0])))
