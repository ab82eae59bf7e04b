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
id), which changes the sum unless 32-bit hashes collide. The catalogs are every one the snapshot query
and the deparse functions it calls read for objects in scope: relations, columns, defaults, constraints,
indexes, inheritance and partition keys, sequences, types and enum labels, functions and aggregates,
triggers, policies, view rules, comments, extensions and their members, sequence ownership, plus the
names the deparsed text shows of operators, operator classes, collations, text search objects, languages,
access methods and roles.

Why it stays put when the schema does. Rows are counted only in the snapshot's scope: schemas other than
the history schema, ``pg_catalog``, ``information_schema``, ``pg_toast*`` and ``pg_temp*``, so another
session's temporary tables, TOAST tables and poststack's own history writes are invisible. VACUUM,
autovacuum and ANALYZE update ``pg_class`` (page counts, frozen xids) in place, which keeps ``xmin``
(checked on PostgreSQL 18; in place on every version since long before 13); even so ``pg_class`` is
digested by the contents of the columns the snapshot reads rather than by ``xmin``, because TRUNCATE,
VACUUM FULL, CLUSTER, REINDEX and REFRESH MATERIALIZED VIEW rewrite its rows (a new relfilenode) without
changing the schema, and those run routinely. ``pg_index`` adds the validity flags to ``xmin``: CREATE
INDEX CONCURRENTLY flips them with an in-place update on older servers.

What still triggers a (harmless) full comparison: CLUSTER marking a new index, REINDEX CONCURRENTLY (a new
index row), ALTER ... SET STATISTICS, CREATE OR REPLACE of an unchanged function or view, roles created or
renamed anywhere in the cluster, a minor server upgrade. What it does not see, like the snapshot itself:
renaming objects in ``pg_catalog`` (needs a superuser and is not done).

The digest is read in one statement and must be taken *before* the snapshot it is stored with: a change
committed between the two is then in the snapshot but not in the digest, so the next check compares in
full; in the other order the change would hide behind a matching digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from poststack.snapshot import catalog_cursor
from poststack.snapshot_queries import USER_SCHEMA

# Bump when the statement below changes what it digests: a stored digest of another version never matches.
VERSION = 1

# Catalogs whose rows name their schema: (catalog, namespace column).
_BY_SCHEMA = (("pg_type", "typnamespace"), ("pg_proc", "pronamespace"), ("pg_constraint", "connamespace"),
              ("pg_collation", "collnamespace"), ("pg_operator", "oprnamespace"), ("pg_opclass", "opcnamespace"),
              ("pg_opfamily", "opfnamespace"), ("pg_conversion", "connamespace"), ("pg_ts_config", "cfgnamespace"),
              ("pg_ts_dict", "dictnamespace"), ("pg_ts_parser", "prsnamespace"),
              ("pg_ts_template", "tmplnamespace"), ("pg_statistic_ext", "stxnamespace"),
              ("pg_extension", "extnamespace"))
# Catalogs whose rows belong to a relation: (catalog, relation column).
_BY_RELATION = (("pg_attribute", "attrelid"), ("pg_attrdef", "adrelid"), ("pg_inherits", "inhrelid"),
                ("pg_trigger", "tgrelid"), ("pg_policy", "polrelid"), ("pg_rewrite", "ev_class"),
                ("pg_sequence", "seqrelid"), ("pg_partitioned_table", "partrelid"))
# Small catalogs read whole: languages and access methods are shown by name.
_WHOLE = ("pg_language", "pg_am")

# The pg_class columns a snapshot reads (directly, or through regclass names and the deparse functions);
# relfilenode, relpages, reltuples, relfrozenxid and the other storage columns are left out on purpose.
_CLASS_COLUMNS = ("oid", "relname", "relnamespace", "reltype", "reloftype", "relowner", "relam", "relkind",
                  "relpersistence", "relacl", "reloptions", "relispartition", "relpartbound", "relrowsecurity",
                  "relforcerowsecurity", "relreplident")


def _xmin_sum(alias: str) -> str:
    return f"count(*), sum(hashtext({alias}.xmin::text))"


def _statement() -> str:
    class_row = ", ".join(f"c.{column}" for column in _CLASS_COLUMNS)
    parts = [
        f"SELECT 'pg_namespace', {_xmin_sum('n')} FROM pg_namespace n JOIN ns ON ns.oid = n.oid",
        f"SELECT 'pg_class', count(*), sum(hashtext(row({class_row})::text)) "
        "FROM pg_class c JOIN ns ON ns.oid = c.relnamespace",
        "SELECT 'pg_index', count(*), sum(hashtext(x.xmin::text || x.indisvalid::text || x.indisready::text "
        "|| x.indislive::text)) FROM pg_index x JOIN rel ON rel.oid = x.indexrelid",
        *(f"SELECT '{catalog}', {_xmin_sum('x')} FROM {catalog} x JOIN ns ON ns.oid = x.{column}"
          for catalog, column in _BY_SCHEMA),
        *(f"SELECT '{catalog}', {_xmin_sum('x')} FROM {catalog} x JOIN rel ON rel.oid = x.{column}"
          for catalog, column in _BY_RELATION),
        f"SELECT 'pg_enum', {_xmin_sum('e')} FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "JOIN ns ON ns.oid = t.typnamespace",
        f"SELECT 'pg_range', {_xmin_sum('r')} FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid "
        "JOIN ns ON ns.oid = t.typnamespace",
        f"SELECT 'pg_aggregate', {_xmin_sum('a')} FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid "
        "JOIN ns ON ns.oid = p.pronamespace",
        # Comments: on relations and columns in scope, on schemas in scope, on any other user object.
        f"SELECT 'pg_description', {_xmin_sum('d')} FROM pg_description d "
        "WHERE CASE d.classoid WHEN 'pg_class'::regclass THEN d.objoid IN (SELECT oid FROM rel) "
        "WHEN 'pg_namespace'::regclass THEN d.objoid IN (SELECT oid FROM ns) ELSE d.objoid >= 16384 END",
        # Extension membership (ALTER EXTENSION ADD/DROP writes only pg_depend) and sequence ownership.
        f"SELECT 'pg_depend:extension', {_xmin_sum('d')} FROM pg_extension e JOIN pg_depend d "
        "ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'",
        f"SELECT 'pg_depend:sequence', {_xmin_sum('d')} FROM rel JOIN pg_depend d "
        "ON d.classid = 'pg_class'::regclass AND d.objid = rel.oid WHERE rel.relkind = 'S'",
        *(f"SELECT '{catalog}', {_xmin_sum('x')} FROM {catalog} x" for catalog in _WHOLE),
        # Role names appear in grants and policies; pg_authid (and its xmin) is for superusers only.
        "SELECT 'pg_roles', count(*), sum(hashtext(r.oid::text || ':' || r.rolname)) FROM pg_roles r",
    ]
    return (f"WITH ns AS MATERIALIZED (SELECT oid FROM pg_namespace WHERE {USER_SCHEMA} "
            "AND nspname <> ALL(%(excluded)s::text[])),\n"
            "rel AS MATERIALIZED (SELECT c.oid, c.relkind FROM pg_class c JOIN ns ON ns.oid = c.relnamespace)\n"
            "SELECT string_agg(part || '=' || n || '/' || coalesce(h, 0), ' ' ORDER BY part) FROM (\n"
            + "\nUNION ALL\n".join(parts) + "\n) digest(part, n, h)")


STATEMENT = _statement()


def catalog_fingerprint(conn: psycopg.Connection[Any], exclude_schemas: Iterable[str]) -> str:
    """The digest of every user schema but ``exclude_schemas``, with the server version it was read on.

    Equal strings mean an unchanged schema on the same server; the text (per catalog: rows/hash sum)
    also shows which catalog moved when they differ.
    """
    with catalog_cursor(conn) as cur:
        row = cur.execute(STATEMENT, {"excluded": list(exclude_schemas)}).fetchone()
    return f"v{VERSION} server={conn.info.server_version} {row[0] if row else ''}"
