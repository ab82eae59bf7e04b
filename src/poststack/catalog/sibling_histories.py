"""Other applications' poststack histories on the same database, which drift must not blame on anyone.

Two applications can share a database, each with its own history schema (``--history-schema``). Each one's
history tables are written by its own poststack, never by the other's migrations, so they are not drift for
the other: the snapshot, its fingerprint and the comparison leave them out, as each leaves out its own.

A schema is recognised as a poststack history by what poststack itself puts there: a ``migrations`` table
whose comment is poststack's layout stamp (``poststack history layout N``) and which has poststack's columns,
next to an ``audit_log`` table. A *dedicated* history schema (nothing in it but poststack's relations) is
left out whole, in the fingerprint too; a history kept in a schema shared with other objects (``public``)
loses only poststack's tables and the audit sequence, and the fingerprint still digests them (their catalog
rows change only when that history is created or upgraded, which then costs one full comparison, never a
false report).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from poststack.catalog.snapshot import Snapshot

TABLES = ("migrations", "audit_log", "schema_snapshot")
RELATIONS = (*TABLES, "audit_log_id_seq")

# ``n`` is a pg_namespace row. Every name is schema-qualified: this runs inside the fingerprint statement,
# whatever the session's search_path.
IS_HISTORY = """EXISTS (SELECT 1 FROM pg_catalog.pg_class m WHERE m.relnamespace = n.oid AND m.relkind = 'r'
    AND m.relname = 'migrations'
    AND pg_catalog.obj_description(m.oid, 'pg_class') LIKE 'poststack history layout %%'
    AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute x WHERE x.attrelid = m.oid AND NOT x.attisdropped
         AND x.attname IN ('version', 'checksum', 'sql', 'rollback_checksum', 'status')) = 5)
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_class a WHERE a.relnamespace = n.oid AND a.relkind = 'r'
    AND a.relname = 'audit_log')"""
_RELATION_NAMES = "'{" + ",".join(RELATIONS) + "}'::pg_catalog.text[]"
IS_DEDICATED = f"""NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class o WHERE o.relnamespace = n.oid
    AND o.relkind NOT IN ('i', 'I', 't') AND o.relname <> ALL({_RELATION_NAMES}))
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid
    AND (t.typtype IN ('d', 'e', 'r', 'm') OR (t.typtype = 'b' AND t.typelem = 0)))"""
# For the fingerprint's schema scope: names of dedicated poststack history schemas.
DEDICATED_NAMES = f"""ARRAY(SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {IS_HISTORY}
  AND {IS_DEDICATED})"""

_FIND = f"""SELECT n.nspname, pg_catalog.quote_ident(n.nspname), {IS_DEDICATED}
FROM pg_catalog.pg_namespace n
WHERE {IS_HISTORY} AND n.nspname <> ALL(%(excluded)s::pg_catalog.text[])
ORDER BY 1"""


@dataclass(frozen=True)
class SiblingHistories:
    """The other poststack history schemas on the database: names as stored and as the snapshot quotes them."""

    dedicated: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    quoted: dict[str, str] = field(default_factory=dict)

    def exclude_schemas(self, own: str) -> tuple[str, ...]:
        """The schemas a drift snapshot leaves out whole: its own history and the dedicated others."""
        return (own, *self.dedicated)

    def strip(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` without the other histories' objects, also for snapshots stored before this existed."""
        objects: set[tuple[str, str]] = set()
        for schema in self.dedicated:
            prefix = self.quoted[schema] + "."
            objects.add(("schema", self.quoted[schema]))
            objects.update((kind, name) for kind, named in snapshot.objects.items() for name in named
                           if name.startswith(prefix))
        for schema in self.shared:
            prefix = self.quoted[schema] + "."
            objects.update(("table", prefix + table) for table in TABLES)
            objects.add(("sequence", prefix + "audit_log_id_seq"))
        stripped = snapshot.without(objects) if objects else snapshot
        # A shared schema stays in scope, but its own entry is the history's doing as much as the objects'
        # (a dedicated history schema that later gains a table turns shared): only the entry goes, not what
        # hangs off it (comments, privileges), which is still compared.
        shared = {self.quoted[schema] for schema in self.shared} & set(stripped.objects.get("schema", {}))
        if not shared:
            return stripped
        kept = dict(stripped.objects)
        kept["schema"] = {name: attrs for name, attrs in kept["schema"].items() if name not in shared}
        return Snapshot(kept, stripped.schemas, stripped.server_version)


def find(conn: psycopg.Connection[Any], own: Iterable[str]) -> SiblingHistories:
    """The poststack history schemas other than ``own``, in one catalog query."""
    rows = conn.execute(_FIND, {"excluded": list(own)}).fetchall()
    return SiblingHistories(tuple(name for name, _, dedicated in rows if dedicated),
                            tuple(name for name, _, dedicated in rows if not dedicated),
                            {name: quoted for name, quoted, _ in rows})
