"""A cheap digest of the catalog rows a schema snapshot is made of, so drift is only computed when it can exist.

A full snapshot deparses every object (``pg_get_indexdef``, ``pg_get_constraintdef``...) and the comparison
walks every object again in Python: seconds at 5,000 tables. This digest reads the same catalogs without
deparsing anything, and is stored beside the snapshot. When it is unchanged, the schema is too, and the
comparison is skipped; when it changed, the full comparison runs and decides (so a spurious change only
costs time, never a false report).

Why it changes whenever the snapshot could. Every DDL statement writes catalog rows transactionally, and
a written row carries its writer's transaction id as ``xmin``. Per catalog, the digest is the number of
rows in scope and the sum of a hash of each row's ``xmin``: a statement that only deletes rows changes the
count, and one that writes any row adds an ``xmin`` that no row had before (the writer's own transaction
id), which changes the sum unless 32-bit hashes collide. The catalogs digested are those whose rows the
snapshot shows, directly or through the names deparsed text contains (operators, operator classes,
collations, text search configurations and dictionaries in expressions, languages, roles in grants);
comments on any other kind of object are digested by the identity ``pg_identify_object`` gives them, the
name the snapshot shows. Left out on purpose, because their rows only change together with a digested
row: ``pg_aggregate`` (with its ``pg_proc`` row), ``pg_range`` and ``pg_partitioned_table`` (fixed at
creation, with ``pg_type`` / ``pg_class`` rows), ``pg_am`` (an access method can be neither renamed nor
dropped while used).

Why it stays put when the schema does. Rows are counted only in the snapshot's scope: schemas other than the
history schema (and other applications' dedicated poststack history schemas), ``pg_catalog``,
``information_schema``, ``pg_toast*`` and ``pg_temp*``, so another session's temporary tables, TOAST tables
and poststack's own history writes are invisible (objects users create have OIDs from 16384 up, which lets the
scans skip the built-in rows). VACUUM, autovacuum and ANALYZE update ``pg_class`` (page counts, frozen xids)
in place, which keeps ``xmin`` (checked on PostgreSQL 18; in place on every version since long before 13);
even so ``pg_class`` is digested by the contents of the columns the snapshot reads rather than by ``xmin``,
because TRUNCATE, VACUUM FULL, CLUSTER, REINDEX and REFRESH MATERIALIZED VIEW rewrite its rows (a new
relfilenode) without changing the schema, and those run routinely. ``pg_index`` adds the validity flags to
``xmin``: CREATE INDEX CONCURRENTLY flips them with an in-place update on older servers.

What still triggers a (harmless) full comparison: CLUSTER marking a new index, REINDEX CONCURRENTLY (a new
index row), ALTER ... SET STATISTICS, CREATE OR REPLACE of an unchanged function or view, roles created or
renamed anywhere in the cluster, a minor server upgrade. What it does not see, like the snapshot itself:
renaming objects in ``pg_catalog`` (needs a superuser and is not done).

The digest must be taken *before* the snapshot it is stored with: a change committed between the two is
then in the snapshot but not in the digest, so the next check compares in full; in the other order the
change would hide behind a matching digest. Every name in the statement is schema-qualified, so it runs
as one statement whatever the session's search_path holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from poststack.catalog.sibling_histories import DEDICATED_NAMES
from poststack.catalog.snapshot_queries import USER_SCHEMA

# Bump when the statement below changes what it digests: a stored digest of another version never matches.
# 4: other applications' dedicated poststack history schemas are out of scope (see sibling_histories).
VERSION = 4
FIRST_USER_OID = 16384  # FirstNormalObjectId: everything initdb creates has a lower OID

# Catalogs whose rows name their schema: (catalog, namespace column).
_BY_SCHEMA = (("pg_type", "typnamespace"), ("pg_proc", "pronamespace"), ("pg_constraint", "connamespace"),
              ("pg_collation", "collnamespace"), ("pg_operator", "oprnamespace"), ("pg_opclass", "opcnamespace"),
              ("pg_ts_config", "cfgnamespace"), ("pg_ts_dict", "dictnamespace"), ("pg_extension", "extnamespace"))
# Catalogs whose rows belong to a relation: (catalog, relation column).
_BY_RELATION = (("pg_attribute", "attrelid"), ("pg_attrdef", "adrelid"), ("pg_inherits", "inhrelid"),
                ("pg_trigger", "tgrelid"), ("pg_policy", "polrelid"), ("pg_rewrite", "ev_class"),
                ("pg_sequence", "seqrelid"))
# Comments on objects of these catalogs are covered by the object's own row (renames included); comments on
# any other kind (a conversion, an operator family, a statistics object...) are digested by their identity.
_COMMENTED_BY_CATALOG = ("pg_class", "pg_namespace", "pg_language", "pg_trigger", "pg_policy", "pg_rewrite",
                         *(catalog for catalog, _ in _BY_SCHEMA))

# The pg_class columns a snapshot reads (directly, or through regclass names and the deparse functions);
# relfilenode, relpages, reltuples, relfrozenxid and the other storage columns are left out on purpose.
_CLASS_COLUMNS = ("oid", "relname", "relnamespace", "reltype", "reloftype", "relowner", "relam", "relkind",
                  "relpersistence", "relacl", "reloptions", "relispartition", "relpartbound", "relrowsecurity",
                  "relforcerowsecurity", "relreplident")

_HASH = "pg_catalog.hashtext"


def _xmin_sum(alias: str) -> str:
    return f"pg_catalog.count(*), pg_catalog.sum({_HASH}({alias}.xmin::pg_catalog.text))"


def _regclass(catalog: str) -> str:
    return f"'pg_catalog.{catalog}'::pg_catalog.regclass"


def _statement() -> str:
    user = FIRST_USER_OID
    in_scope = "= ANY(ARRAY(SELECT oid FROM ns))"
    class_row = ", ".join(f"c.{column}" for column in _CLASS_COLUMNS)
    by_catalog = ", ".join(_regclass(catalog) for catalog in _COMMENTED_BY_CATALOG)
    parts = [
        f"SELECT 'pg_namespace', {_xmin_sum('n')} FROM pg_catalog.pg_namespace n WHERE n.oid {in_scope}",
        f"SELECT 'pg_class', pg_catalog.count(*), pg_catalog.sum({_HASH}(row({class_row})::pg_catalog.text)) "
        f"FROM pg_catalog.pg_class c WHERE c.relnamespace {in_scope} AND c.oid >= {user}",
        f"SELECT 'pg_index', pg_catalog.count(*), pg_catalog.sum({_HASH}(x.xmin::pg_catalog.text "
        "|| x.indisvalid::pg_catalog.text || x.indisready::pg_catalog.text || x.indislive::pg_catalog.text)) "
        "FROM pg_catalog.pg_index x JOIN rel ON rel.oid = x.indexrelid",
        *(f"SELECT '{catalog}', {_xmin_sum('x')} FROM pg_catalog.{catalog} x "
          f"WHERE x.{column} {in_scope} AND x.oid >= {user}" for catalog, column in _BY_SCHEMA),
        *(f"SELECT '{catalog}', {_xmin_sum('x')} FROM pg_catalog.{catalog} x JOIN rel ON rel.oid = x.{column}"
          for catalog, column in _BY_RELATION),
        f"SELECT 'pg_enum', {_xmin_sum('e')} FROM pg_catalog.pg_enum e "
        f"JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid WHERE t.typnamespace {in_scope}",
        # Comments: on relations and columns in scope, on schemas in scope, on any other user object; the
        # public schema (and its comment) comes from initdb.
        f"SELECT 'pg_description', {_xmin_sum('d')} FROM pg_catalog.pg_description d "
        f"WHERE d.objoid >= {user} AND CASE d.classoid WHEN {_regclass('pg_class')} THEN d.objoid IN "
        f"(SELECT oid FROM rel) WHEN {_regclass('pg_namespace')} THEN d.objoid {in_scope} ELSE true END",
        f"SELECT 'pg_description:schema', {_xmin_sum('d')} FROM pg_catalog.pg_description d "
        f"WHERE d.classoid = {_regclass('pg_namespace')} AND d.objoid < {user} AND d.objoid {in_scope}",
        "SELECT 'pg_description:identity', pg_catalog.count(*), pg_catalog.sum("
        f"{_HASH}(pg_catalog.concat_ws(' ', i.type, i.identity))) FROM pg_catalog.pg_description d "
        "CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid) i "
        f"WHERE d.objoid >= {user} AND d.classoid NOT IN ({by_catalog})",
        # Extension membership (ALTER EXTENSION ADD/DROP writes only pg_depend) and sequence ownership.
        f"SELECT 'pg_depend:extension', {_xmin_sum('d')} FROM pg_catalog.pg_extension e "
        f"JOIN pg_catalog.pg_depend d ON d.refclassid = {_regclass('pg_extension')} AND d.refobjid = e.oid "
        "AND d.deptype = 'e'",
        f"SELECT 'pg_depend:sequence', {_xmin_sum('d')} FROM rel JOIN pg_catalog.pg_depend d "
        f"ON d.classid = {_regclass('pg_class')} AND d.objid = rel.oid WHERE rel.relkind = 'S'",
        f"SELECT 'pg_language', {_xmin_sum('l')} FROM pg_catalog.pg_language l",  # plpgsql's OID is below 16384
        # Role names appear in grants and policies; pg_authid (and its xmin) is for superusers only.
        "SELECT 'pg_roles', pg_catalog.count(*), pg_catalog.sum("
        f"{_HASH}(r.oid::pg_catalog.text || ':' || r.rolname)) FROM pg_catalog.pg_roles r",
    ]
    # Catalog statistics right after a migration still describe initdb's catalogs, so any estimate involving
    # user OIDs is near zero: filters on OID ranges stay off join keys (a nested loop would rescan the range
    # per relation), and the scope by schema is an array test rather than a join.
    return (f"WITH ns AS MATERIALIZED (SELECT oid FROM pg_catalog.pg_namespace WHERE {USER_SCHEMA} "
            f"AND nspname <> ALL(%(excluded)s::pg_catalog.text[]) AND nspname <> ALL({DEDICATED_NAMES})),\n"
            "rel AS MATERIALIZED (SELECT c.oid, c.relkind FROM pg_catalog.pg_class c "
            f"WHERE c.relnamespace {in_scope})\n"
            "SELECT pg_catalog.string_agg(part || '=' || n || '/' || coalesce(h, 0), ' ' ORDER BY part) FROM (\n"
            + "\nUNION ALL\n".join(parts) + "\n) digest(part, n, h)")


STATEMENT = _statement()  # one parameter, %(excluded)s: the schemas to leave out (the history schema)


def fingerprint_of(digest: str | None, server_version: int) -> str:
    """The stored form: the digest with the statement version and the server it was read on."""
    return f"v{VERSION} server={server_version} {digest or ''}"


def catalog_fingerprint(conn: psycopg.Connection[Any], exclude_schemas: Iterable[str]) -> str:
    """The digest of every user schema but ``exclude_schemas``, with the server version it was read on.

    Equal strings mean an unchanged schema on the same server; the text (per catalog: rows/hash sum)
    also shows which catalog moved when they differ.
    """
    row = conn.execute(STATEMENT, {"excluded": list(exclude_schemas)}).fetchone()
    return fingerprint_of(row[0] if row else None, conn.info.server_version)
