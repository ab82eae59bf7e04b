"""The states verify compares, made cheap: content digests first, full snapshots only where they differ.

Proving a rollback compares the schema before a migration with the schema after its rollback. A full
``Snapshot`` deparses every object, so taking two per migration made verify quadratic: at 300 migrations
the snapshots were most of its time. Here:

- ``content_digest`` reads the catalog rows a snapshot is made of (the catalogs and scope of
  ``fingerprint``) and digests their *contents*: per catalog the row count and the sum of 64-bit hashes of
  the row texts. Unlike the drift fingerprint (which digests ``xmin`` so it can be stored and compared across
  sessions), a rename undone by its rollback or a column added and dropped again gives back the same digest:
  rows whose contents are equal again are equal. Dropped columns are left out (the snapshot never shows
  them). Equal digests mean equal catalog contents (up to 64-bit hash collisions: the same count and the
  same sum by chance, about 2^-64 for a wrong rollback), and a snapshot is a function of
  those contents, so the rollback is proven without a snapshot. A difference only means "compare in full":
  a rollback that re-creates an object gives it a new OID, which the digest sees and the snapshot does not.
- ``Shadow``: a second scratch database to which the same migrations are applied plainly, one behind the
  one being verified, so the state *before* a migration can still be snapshotted after its rollback went
  wrong (or only looked different). Without a shadow, verify snapshots the state before each migration up
  front, as it always did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from poststack.catalog.fingerprint import (
    _BY_RELATION,
    _BY_SCHEMA,
    _CLASS_COLUMNS,
    _COMMENTED_BY_CATALOG,
    FIRST_USER_OID,
)
from poststack.catalog.snapshot import Snapshot, snapshot
from poststack.catalog.snapshot_queries import USER_SCHEMA
from poststack.db.connection import connect
from poststack.db.history import History
from poststack.engine import executor
from poststack.errors import MigrationFailed
from poststack.source.files import Migration, MigrationSet


def _content(row: str) -> str:
    """Count and sum of 64-bit hashes of the row texts: order-free, no sort (a sorted md5 cost 3x more)."""
    return f"pg_catalog.count(*), pg_catalog.sum(pg_catalog.hashtextextended(({row})::pg_catalog.text, 0)::numeric)"


# A view's rule is a query tree kilobytes long: quoting it into a row's text cost more than all other rows
# together, so its tree (and condition) goes in as an md5 of the plain text.
_ROWS = {"pg_rewrite": "x.oid, x.rulename, x.ev_class, x.ev_type, x.ev_enabled, x.is_instead, "
                       "pg_catalog.md5(x.ev_qual::pg_catalog.text), pg_catalog.md5(x.ev_action::pg_catalog.text)"}


def _regclass(catalog: str) -> str:
    return f"'pg_catalog.{catalog}'::pg_catalog.regclass"


def _statement() -> str:
    user = FIRST_USER_OID
    in_scope = "= ANY(ARRAY(SELECT oid FROM ns))"
    class_row = "row(" + ", ".join(f"c.{column}" for column in _CLASS_COLUMNS) + ")"
    by_catalog = ", ".join(_regclass(catalog) for catalog in _COMMENTED_BY_CATALOG)
    # System columns (attnum < 0) are the same for every table; dropped ones are never shown.
    live = {"pg_attribute": " AND x.attnum > 0 AND NOT x.attisdropped"}
    parts = [
        f"SELECT 'pg_namespace', {_content('n')} FROM pg_catalog.pg_namespace n WHERE n.oid {in_scope}",
        f"SELECT 'pg_class', {_content(class_row)} FROM pg_catalog.pg_class c "
        f"WHERE c.relnamespace {in_scope} AND c.oid >= {user}",
        f"SELECT 'pg_index', {_content('x')} FROM pg_catalog.pg_index x JOIN rel ON rel.oid = x.indexrelid",
        *(f"SELECT '{catalog}', {_content('x')} FROM pg_catalog.{catalog} x "
          f"WHERE x.{column} {in_scope} AND x.oid >= {user}" for catalog, column in _BY_SCHEMA),
        # The OID bound changes no result (every relation in scope is a user one) but lets the scan skip the
        # system catalogs' rows: a whole-row reference detoasts each row it reads (pg_rewrite's rules).
        *(f"SELECT '{catalog}', {_content(_ROWS.get(catalog, 'x'))} FROM pg_catalog.{catalog} x "
          f"JOIN rel ON rel.oid = x.{column} WHERE x.{column} >= {user}{live.get(catalog, '')}"
          for catalog, column in _BY_RELATION),
        f"SELECT 'pg_enum', {_content('e')} FROM pg_catalog.pg_enum e "
        f"JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid WHERE t.typnamespace {in_scope}",
        f"SELECT 'pg_description', {_content('d')} FROM pg_catalog.pg_description d "
        f"WHERE d.objoid >= {user} AND CASE d.classoid WHEN {_regclass('pg_class')} THEN d.objoid IN "
        f"(SELECT oid FROM rel) WHEN {_regclass('pg_namespace')} THEN d.objoid {in_scope} ELSE true END",
        f"SELECT 'pg_description:schema', {_content('d')} FROM pg_catalog.pg_description d "
        f"WHERE d.classoid = {_regclass('pg_namespace')} AND d.objoid < {user} AND d.objoid {in_scope}",
        f"SELECT 'pg_description:identity', {_content('i.type, i.identity, d.description')} "
        "FROM pg_catalog.pg_description d "
        "CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid) i "
        f"WHERE d.objoid >= {user} AND d.classoid NOT IN ({by_catalog})",
        f"SELECT 'pg_depend:extension', {_content('d')} FROM pg_catalog.pg_extension e "
        f"JOIN pg_catalog.pg_depend d ON d.refclassid = {_regclass('pg_extension')} AND d.refobjid = e.oid "
        "AND d.deptype = 'e'",
        f"SELECT 'pg_depend:sequence', {_content('d')} FROM rel JOIN pg_catalog.pg_depend d "
        f"ON d.classid = {_regclass('pg_class')} AND d.objid = rel.oid WHERE rel.relkind = 'S'",
        f"SELECT 'pg_language', {_content('l')} FROM pg_catalog.pg_language l",
        f"SELECT 'pg_roles', {_content('r.oid, r.rolname')} FROM pg_catalog.pg_roles r",
    ]
    return (f"WITH ns AS MATERIALIZED (SELECT oid FROM pg_catalog.pg_namespace WHERE {USER_SCHEMA} "
            "AND nspname <> ALL(%(excluded)s::pg_catalog.text[])),\n"
            "rel AS MATERIALIZED (SELECT c.oid, c.relkind FROM pg_catalog.pg_class c "
            f"WHERE c.relnamespace {in_scope})\n"
            "SELECT pg_catalog.string_agg(part || '=' || n || '/' || coalesce(h::pg_catalog.text, '-'), ' ' "
            "ORDER BY part) FROM (\n"
            + "\nUNION ALL\n".join(parts) + "\n) digest(part, n, h)")


CONTENT_STATEMENT = _statement()  # one parameter, %(excluded)s: the schemas to leave out (the history schema)


def content_digest(conn: psycopg.Connection[Any], exclude_schemas: Iterable[str]) -> str:
    """The digest of the catalog contents of every user schema but ``exclude_schemas`` (see module doc)."""
    row = conn.execute(CONTENT_STATEMENT, {"excluded": list(exclude_schemas)}).fetchone()
    return str(row[0]) if row else ""


class Shadow:
    """A scratch database that follows the verified one with plain applies, for the state before a migration.

    ``catch_up(versions)`` applies, in order, each of ``versions`` it has not applied yet; ``usable`` turns
    false for good if one fails (verify then snapshots before each migration, as without a shadow).
    """

    def __init__(self, database_url: str, migrations: MigrationSet, history_schema: str) -> None:
        self.migrations = migrations
        self.history = History(history_schema)
        self.conn = connect(database_url, autocommit=True)
        self.history.ensure(self.conn)
        self.applied: set[int] = set()
        self.usable = True

    def __enter__(self) -> Shadow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def catch_up(self, versions: set[int]) -> bool:
        """Bring the shadow to exactly ``versions`` applied; False when that is not possible."""
        self.usable = self.usable and self.applied <= versions  # it never rolls back
        for migration in self.migrations:
            if not self.usable:
                break
            if migration.version in versions and migration.version not in self.applied:
                self.usable = self._apply(migration)
        return self.usable

    def _apply(self, migration: Migration) -> bool:
        apply = executor.apply_non_transactional if migration.no_transaction else executor.apply_transactional
        try:
            apply(self.conn, self.history, migration)
        except MigrationFailed:
            return False
        self.applied.add(migration.version)
        return True

    def snapshot(self) -> Snapshot:
        return snapshot(self.conn, exclude_schemas=(self.history.schema,))
