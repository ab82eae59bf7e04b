"""The catalog query behind ``poststack.catalog.snapshot``: one set-based statement returning every object as JSON.

Everything is read in one round trip so a snapshot costs one planner run and sees one consistent catalog
state, however many objects the database holds. Names are rendered through regclass / regtype /
regprocedure output while ``search_path`` is ``pg_catalog`` only, so they always come out schema-qualified
and quoted the way PostgreSQL quotes them, and no OID ever reaches the result. ``jsonb_strip_nulls`` keeps
absent attributes absent, which the diff treats as NULL.

Catalog differences between the supported versions (13 to 18) are handled by building the statement for
the server version: only function bodies need it (``prosqlbody`` and ``pg_get_function_sqlbody`` exist
from 14). Columns used everywhere else (``prokind``, ``attgenerated``, ``attidentity``, ``pg_sequence``,
``polpermissive``, ``relam``) exist since 11 or 12. Newer catalog facts (PostgreSQL 18 NOT NULL
constraints in ``pg_constraint``, virtual generated columns, NOT ENFORCED) arrive through
``pg_get_constraintdef`` and ``attgenerated`` without version checks.
"""

from __future__ import annotations

# A relation's kind as a word; shared by the parts that name a relation as somebody's parent.
_RELKIND = """CASE {c}.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'f' THEN 'foreign table'
    WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' ELSE 'relation' END"""

# Objects created by CREATE EXTENSION are the extension's business: the extension and its version stand
# for them, so they never show up one by one.
_NOT_EXTENSION_MEMBER = """NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
    AND e.classid = '{catalog}'::regclass AND e.objid = {oid})"""

# Range and multirange constructors come with CREATE TYPE ... AS RANGE (an internal dependency on the type):
# the type stands for them.
_NOT_IMPLICIT_FUNCTION = """NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.deptype = 'i'
    AND i.classid = 'pg_proc'::regclass AND i.objid = p.oid AND i.refclassid = 'pg_type'::regclass)"""

_SCHEMAS = "SELECT 'schema', quote_ident(ns.nspname), '{}'::jsonb FROM ns"

_TABLES = """
SELECT c.kind, c.name,
  jsonb_strip_nulls(jsonb_build_object(
    'persistence', CASE c.relpersistence WHEN 'u' THEN 'unlogged' END,
    'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
    'partition_of', CASE WHEN c.relispartition THEN
        (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid) END,
    'partition_bound', CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
    'inherits', CASE WHEN NOT c.relispartition THEN
        (SELECT jsonb_agg(i.inhparent::regclass::text ORDER BY i.inhseqno) FROM pg_inherits i
         WHERE i.inhrelid = c.oid) END,
    'row_security', NULLIF(c.relrowsecurity, false),
    'force_row_security', NULLIF(c.relforcerowsecurity, false),
    'replica_identity', CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'n' THEN 'nothing'
        WHEN 'i' THEN 'index' END,
    'access_method', NULLIF(am.amname, 'heap'),
    'options', to_jsonb(c.reloptions)))
FROM rel c LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r', 'p', 'f')"""

_COLUMNS = """
SELECT 'column', col.rel || '.' || quote_ident(col.attname),
  jsonb_strip_nulls(jsonb_build_object(
    'parent', jsonb_build_array(col.parent_kind, col.rel),
    'position', col.position,
    'type', col.type,
    'not_null', col.attnotnull,
    'default', CASE WHEN col.attgenerated = '' THEN col.expr END,
    'generated', CASE col.attgenerated WHEN 's' THEN 'stored: ' || col.expr WHEN 'v' THEN 'virtual: ' || col.expr END,
    'identity', CASE col.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
    'collation', col.collation))
FROM (
  SELECT c.name AS rel, c.kind AS parent_kind,
    a.attname, a.attnotnull, a.attgenerated, a.attidentity,
    row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position,
    format_type(a.atttypid, a.atttypmod) AS type,
    pg_get_expr(d.adbin, d.adrelid) AS expr,
    CASE WHEN a.attcollation <> t.typcollation THEN
        (SELECT quote_ident(co.collname) FROM pg_collation co WHERE co.oid = a.attcollation) END AS collation
  FROM pg_attribute a
  JOIN rel c ON c.oid = a.attrelid
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f')
) col"""

_CONSTRAINTS = f"""
SELECT 'constraint',
  CASE WHEN co.conrelid <> 0 THEN c.name ELSE co.contypid::regtype::text END || '.' || quote_ident(co.conname),
  jsonb_build_object(
    'parent', CASE WHEN co.conrelid <> 0 THEN jsonb_build_array(c.kind, c.name)
                   ELSE jsonb_build_array('type', co.contypid::regtype::text) END,
    'type', CASE co.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'f' THEN 'foreign key'
        WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' WHEN 't' THEN 'trigger' WHEN 'n' THEN 'not null'
        ELSE co.contype::text END,
    'definition', pg_get_constraintdef(co.oid))
FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace LEFT JOIN rel c ON c.oid = co.conrelid
WHERE (co.conrelid = 0 OR c.oid IS NOT NULL)
  AND (co.contypid = 0 OR {_NOT_EXTENSION_MEMBER.format(catalog='pg_type', oid='co.contypid')})"""

_INDEXES = """
SELECT 'index', ic.name,
  jsonb_build_object(
    'parent', jsonb_build_array(tc.kind, tc.name),
    'definition', pg_get_indexdef(i.indexrelid),
    'valid', i.indisvalid)
FROM pg_index i JOIN rel ic ON ic.oid = i.indexrelid JOIN rel tc ON tc.oid = i.indrelid"""

_SEQUENCES = """
SELECT 'sequence', c.name,
  jsonb_strip_nulls(jsonb_build_object(
    'type', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
    'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, 'cycle', s.seqcycle,
    'persistence', CASE c.relpersistence WHEN 'u' THEN 'unlogged' END,
    'owned_by', (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
                 LIMIT 1)))
FROM pg_sequence s JOIN rel c ON c.oid = s.seqrelid"""

_TYPES = f"""
SELECT 'type', t.oid::regtype::text,
  jsonb_strip_nulls(jsonb_build_object(
    'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'c' THEN 'composite' WHEN 'd' THEN 'domain'
        WHEN 'r' THEN 'range' WHEN 'm' THEN 'multirange' WHEN 'b' THEN 'base' ELSE t.typtype::text END,
    'labels', CASE WHEN t.typtype = 'e' THEN
        (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END,
    'attributes', CASE WHEN t.typtype = 'c' THEN
        (SELECT jsonb_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
         FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
    'base_type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
    'not_null', CASE WHEN t.typtype = 'd' THEN t.typnotnull END,
    'default', t.typdefault,
    'subtype', CASE WHEN t.typtype = 'r' THEN
        (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) END))
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE (t.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_class rc WHERE rc.oid = t.typrelid AND rc.relkind = 'c'))
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
  AND t.typtype <> 'm'  -- a multirange comes with its range type, which stands for it
  AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_type', oid='t.oid')}"""

_BODY_13 = "p.prosrc"
_BODY_14 = "CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) ELSE p.prosrc END"

_FUNCTIONS = """
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
  p.oid::regprocedure::text,
  jsonb_strip_nulls(jsonb_build_object(
    'arguments', pg_get_function_arguments(p.oid),
    'result', pg_get_function_result(p.oid),
    'language', l.lanname,
    'window', NULLIF(p.prokind = 'w', false),
    'volatility', CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END,
    'strict', p.proisstrict,
    'security_definer', p.prosecdef,
    'leakproof', p.proleakproof,
    'parallel', CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END,
    'cost', p.procost,
    'rows', NULLIF(p.prorows, 0),
    'config', to_jsonb(p.proconfig),
    'aggregate', (SELECT jsonb_strip_nulls(jsonb_build_object(
                      'sfunc', ag.aggtransfn::oid::regprocedure::text, 'stype', format_type(ag.aggtranstype, NULL),
                      'finalfunc', NULLIF(ag.aggfinalfn::oid, 0)::regprocedure::text, 'initcond', ag.agginitval))
                  FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid),
    'body', CASE WHEN p.prokind <> 'a' THEN {body} END))
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE {not_member} AND {not_implicit}"""

_TRIGGERS = """
SELECT 'trigger', c.name || '.' || quote_ident(tg.tgname),
  jsonb_build_object(
    'parent', jsonb_build_array(c.kind, c.name),
    'definition', pg_get_triggerdef(tg.oid),
    'enabled', CASE tg.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica'
        WHEN 'A' THEN 'always' END)
FROM pg_trigger tg JOIN rel c ON c.oid = tg.tgrelid
WHERE NOT tg.tgisinternal"""

_VIEWS = """
SELECT c.kind, c.name,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', pg_get_viewdef(c.oid),
    'options', to_jsonb(c.reloptions)))
FROM rel c WHERE c.relkind IN ('v', 'm')"""

_POLICIES = """
SELECT 'policy', c.name || '.' || quote_ident(pol.polname),
  jsonb_strip_nulls(jsonb_build_object(
    'parent', jsonb_build_array(c.kind, c.name),
    'command', CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
        WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
    'permissive', pol.polpermissive,
    'roles', (SELECT jsonb_agg(r.name ORDER BY r.name) FROM
        (SELECT CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x)::text END AS name
         FROM unnest(pol.polroles) x) r),
    'using', pg_get_expr(pol.polqual, pol.polrelid),
    'with_check', pg_get_expr(pol.polwithcheck, pol.polrelid)))
FROM pg_policy pol JOIN rel c ON c.oid = pol.polrelid"""

_EXTENSIONS = """
SELECT 'extension', quote_ident(x.extname), jsonb_build_object('version', x.extversion, 'schema', ns.nspname)
FROM pg_extension x JOIN ns ON ns.oid = x.extnamespace"""

# Comments on user objects (OID >= FirstNormalObjectId) and on schemas in scope, named the way
# pg_identify_object names them; the commented object becomes the parent for diff grouping.
_COMMENTS = """
SELECT 'comment', 'on ' || o.kind || ' ' || o.identity,
  jsonb_build_object('parent', jsonb_build_array(o.kind, o.identity), 'text', d.description)
FROM (SELECT * FROM pg_description d WHERE d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass
      OFFSET 0) d  -- filter first: identifying every built-in object's comment costs milliseconds
CROSS JOIN LATERAL (SELECT replace(replace(i.type, 'foreign table column', 'column'), 'table column', 'column') AS kind,
                           i.schema, i.identity
                    FROM pg_identify_object(d.classoid, d.objoid, d.objsubid) i) o
WHERE (o.schema IN (SELECT nspname FROM ns)
       OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM ns))
       OR (d.classoid = 'pg_extension'::regclass AND EXISTS (
             SELECT 1 FROM pg_extension x JOIN ns ON ns.oid = x.extnamespace WHERE x.oid = d.objoid)))
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e' AND e.classid = d.classoid
                  AND e.objid = d.objoid)"""

# Grants, independent of who owns the object: the owner's own entry and the grantor are left out, and an
# object whose grants equal the defaults for its kind contributes nothing (a NULL acl means the defaults,
# so only explicit acls are exploded; an explicit one equal to the defaults is no difference either).
_PRIVILEGES = f"""
SELECT 'privileges', 'on ' || pv.kind || ' ' || pv.name,
  jsonb_build_object('parent', jsonb_build_array(pv.kind, pv.name), 'grants', to_jsonb(g.grants))
FROM (
  SELECT c.kind, c.name, c.relacl AS acl, c.relowner AS owner,
    CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char" AS defkind
  FROM rel c
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relacl IS NOT NULL
  UNION ALL
  SELECT 'column', c.name || '.' || quote_ident(a.attname), a.attacl, c.relowner, 'c'
  FROM pg_attribute a JOIN rel c ON c.oid = a.attrelid
  WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
    p.oid::regprocedure::text, p.proacl, p.proowner, 'f'
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
  WHERE p.proacl IS NOT NULL AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_proc', oid='p.oid')}
  UNION ALL
  SELECT 'schema', quote_ident(ns.nspname), ns.nspacl, ns.nspowner, 'n' FROM ns WHERE ns.nspacl IS NOT NULL
  UNION ALL
  SELECT 'type', t.oid::regtype::text, t.typacl, t.typowner, 'T'
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typtype IN ('e', 'd', 'c', 'r') AND t.typacl IS NOT NULL
    AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_type', oid='t.oid')}
) pv
CROSS JOIN LATERAL (
  SELECT coalesce(array_agg(x.g ORDER BY x.g), '{{}}') AS grants FROM (
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END || ': '
           || a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS g
    FROM aclexplode(coalesce(pv.acl, acldefault(pv.defkind, pv.owner))) a WHERE a.grantee <> pv.owner) x
) g
CROSS JOIN LATERAL (
  SELECT coalesce(array_agg(x.g ORDER BY x.g), '{{}}') AS grants FROM (
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END || ': '
           || a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS g
    FROM aclexplode(acldefault(pv.defkind, pv.owner)) a WHERE a.grantee <> pv.owner) x
) dflt
WHERE g.grants <> dflt.grants"""

# The schemas in scope, and every relation in them that is not an extension's, named once: most parts join
# to ``rel`` instead of rendering regclass names and checking extension membership row by row.
_WITH = f"""WITH ns AS (SELECT oid, nspname, nspacl, nspowner FROM pg_namespace
               WHERE nspname::text = ANY(%(schemas)s::text[])),
rel AS (SELECT c.oid, c.relkind, c.relacl, c.relowner, c.relpersistence, c.relispartition, c.relpartbound,
               c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relam, c.reloptions,
               c.oid::regclass::text AS name, {_RELKIND.format(c='c')} AS kind
        FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S', 'i', 'I')
          AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_class', oid='c.oid')})
"""

# A schema users own: not information_schema, and none of pg_catalog, pg_toast*, pg_temp* (another session's
# temporary objects are never schema). Shared with ``poststack.catalog.fingerprint``, which must agree on the scope.
USER_SCHEMA = "nspname <> 'information_schema' AND left(nspname, 3) <> 'pg_'"

SCHEMAS_QUERY = f"SELECT nspname FROM pg_namespace WHERE {USER_SCHEMA} ORDER BY nspname"


def snapshot_query(server_version: int) -> str:
    """The whole snapshot statement for this server version; takes one parameter, ``%(schemas)s``, and
    returns one JSON value: ``{kind: {name: attributes}}`` (NULL when there is nothing in scope)."""
    body = _BODY_14 if server_version >= 140000 else _BODY_13
    functions = _FUNCTIONS.format(body=body, not_member=_NOT_EXTENSION_MEMBER.format(catalog="pg_proc", oid="p.oid"),
                                  not_implicit=_NOT_IMPLICIT_FUNCTION)
    parts = [_SCHEMAS, _TABLES, _COLUMNS, _CONSTRAINTS, _INDEXES, _SEQUENCES, _TYPES, functions, _TRIGGERS,
             _VIEWS, _POLICIES, _EXTENSIONS, _COMMENTS, _PRIVILEGES]
    # One row holding everything: one JSON document parses far faster client-side than a row per object.
    return ("SELECT json_object_agg(kind, objects) FROM (SELECT kind, json_object_agg(name, attributes) AS objects\n"
            "FROM (" + _WITH + "\nUNION ALL\n".join(parts) + ") found(kind, name, attributes) GROUP BY kind) by_kind")
