"""A normalised, OID-free picture of a database schema that compares with ``==`` and explains its differences.

This is what proves a rollback: snapshot, apply, roll back, snapshot again; the two must be equal, and when
they are not, ``diff`` says in words which object the rollback forgot. The same picture, stored as JSON
after each migrate or rollback, is what ``schema_drift`` compares the live catalog against.

Objects are grouped by kind and named as PostgreSQL names them (schema-qualified, quoted when needed), with
attributes that matter to users (a column's type, default, nullability; an index's definition and validity)
and none that only reflect history (OIDs, attribute numbers, owners, grantors). The catalog query itself
lives in ``snapshot_queries``.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads

from poststack.catalog.snapshot_portable import portable_view_text
from poststack.catalog.snapshot_queries import SCHEMAS_QUERY, snapshot_query
from poststack.config import DEFAULT_SCHEMA
from poststack.errors import SnapshotFormatError

FORMAT = 1
_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(identifier: str) -> str:
    """An identifier as snapshots name it: PostgreSQL's ``quote_ident`` (the queries call it), keywords aside;
    for code that builds a snapshot name from parts to look it up."""
    return identifier if _PLAIN_IDENTIFIER.fullmatch(identifier) else '"' + identifier.replace('"', '""') + '"'

# The order differences are listed in: containers before their contents, so a report reads top-down.
KIND_ORDER = ("database", "role", "schema", "extension", "type", "sequence", "table", "foreign table", "column",
              "constraint",
              "index", "view", "materialized view", "function", "procedure", "aggregate", "trigger", "policy",
              "privileges", "comment")
_INTERNAL_ATTRIBUTES = frozenset({"parent", "position"})
_INLINE_TEXT = 80

Objects = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Snapshot:
    """Schema objects by kind, then by qualified name, each with its normalised attributes.

    Two snapshots are equal when their objects are; which schemas were read and the server version are
    recorded for context but do not take part in the comparison.
    """

    objects: Objects
    schemas: tuple[str, ...] = field(default=(), compare=False)
    server_version: int = field(default=0, compare=False)

    __hash__ = None  # type: ignore[assignment]  # mutable contents: equality only

    def names(self, kind: str) -> list[str]:
        """The names of all objects of one kind, sorted (e.g. ``names("index")``)."""
        return sorted(self.objects.get(kind, {}))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The attributes of one object, or None when the snapshot has no such object."""
        return self.objects.get(kind, {}).get(name)

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, name = item
        return name in self.objects.get(kind, {})

    def __len__(self) -> int:
        return sum(len(v) for v in self.objects.values())

    def diff(self, other: Snapshot, *, missing: str = "missing", added: str = "added",
             column_order: bool = True) -> list[str]:
        """Readable differences from ``self`` (before) to ``other`` (after), one line each.

        ``missing`` and ``added`` word the two directions for the caller's context, e.g. "missing after
        rollback" / "left behind by rollback". Contents of a missing or added table (its columns, indexes,
        comments...) are not listed separately: the table line already says it all. A constraint that only
        changed its name is one "renamed" line, and a NOT NULL constraint (PostgreSQL 18 catalogues them)
        that comes or goes with its column's nullability is told by the column's line alone.
        ``column_order=False`` leaves out changes of column order (which matter to ``SELECT *`` and
        ``COPY``, so they count by default).
        """
        lines: list[str] = []
        for kind in _kinds(self.objects, other.objects):
            before = self.objects.get(kind, {})
            after = other.objects.get(kind, {})
            if before == after:  # compared in C: most kinds are unchanged, and walking them costs seconds
                continue
            gone = sorted(n for n in before.keys() - after.keys() if not _parent_also(before[n], self, other))
            new = sorted(n for n in after.keys() - before.keys() if not _parent_also(after[n], other, self))
            if kind == "constraint":
                lines.extend(_renamed_constraints(gone, new, before, after))
                gone = [n for n in gone if not _told_by_column(before[n], self, other)]
                new = [n for n in new if not _told_by_column(after[n], other, self)]
            lines.extend(f"{kind} {name}: {missing}" for name in gone)
            lines.extend(f"{kind} {name}: {added}" for name in new)
            for name in sorted(before.keys() & after.keys()):
                if before[name] != after[name]:
                    lines.extend(_attribute_changes(kind, name, before[name], after[name]))
        if column_order:
            lines.extend(_column_order_changes(self, other))
        return lines

    def same_as(self, other: Snapshot, *, column_order: bool = True) -> bool:
        """``==``, or with ``column_order=False`` equal but for the order of columns."""
        if column_order or self == other:
            return self == other
        return not self.diff(other, column_order=False)

    def portable(self) -> Snapshot:
        """This snapshot without what differs between PostgreSQL versions for the same migrations: extension
        versions (each release ships its own), NOT NULL constraints as objects (catalogued since
        PostgreSQL 18; a column's ``not_null`` still says it), and view texts printed canonically
        (``snapshot_portable``). For golden schemas compared across servers."""
        objects = {kind: dict(named) for kind, named in self.objects.items()}
        if "extension" in objects:
            objects["extension"] = {name: {k: v for k, v in attributes.items() if k != "version"}
                                    for name, attributes in objects["extension"].items()}
        if "constraint" in objects:
            objects["constraint"] = {name: attributes for name, attributes in objects["constraint"].items()
                                     if attributes.get("type") != "not null"}
        for kind in ("view", "materialized view"):
            if kind in objects:
                objects[kind] = {name: _portable_view(attributes) for name, attributes in objects[kind].items()}
        return Snapshot(objects, self.schemas, self.server_version)

    def with_objects(self, extra: Objects) -> Snapshot:
        """This snapshot with more objects (kinds poststack reads apart, such as ``database`` or ``role``)."""
        if not extra:
            return self
        objects = dict(self.objects)
        for kind, named in extra.items():
            objects[kind] = {**objects.get(kind, {}), **named}
        return Snapshot(objects, self.schemas, self.server_version)

    def without(self, objects: Collection[tuple[str, str]]) -> Snapshot:
        """This snapshot minus ``objects`` ((kind, name) pairs) and everything inside them (a table's
        columns, indexes, comments...), so a comparison can leave out what something else accounts for."""
        if not objects:
            return self
        everything = self.objects

        def inside(kind: str, name: str, attributes: Any, depth: int = 0) -> bool:
            if (kind, name) in objects:
                return True
            parent = attributes.get("parent") if isinstance(attributes, dict) else None
            if depth > 3 or not isinstance(parent, list) or len(parent) != 2:
                return False
            parent_kind, parent_name = parent
            return inside(parent_kind, parent_name, everything.get(parent_kind, {}).get(parent_name), depth + 1)

        kept = {kind: {name: attributes for name, attributes in named.items() if not inside(kind, name, attributes)}
                for kind, named in everything.items()}
        return Snapshot(kept, self.schemas, self.server_version)

    # -- storage -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "server_version": self.server_version, "schemas": list(self.schemas),
                "objects": self.objects}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Rebuild a stored snapshot; raises SnapshotFormatError (a ValueError) for a format this version does
        not read: a user can hand one in (a golden schema file written by another version)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT or not isinstance(data.get("objects"),
                                                                                              dict):
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise SnapshotFormatError(f"not a poststack schema snapshot of format {FORMAT} (found {found!r})")
        return cls(data["objects"], tuple(data.get("schemas", ())), int(data.get("server_version", 0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_dict(json.loads(text))


def snapshot(conn: psycopg.Connection[Any], schemas: Iterable[str] | None = None, *,
             exclude_schemas: Iterable[str] = (DEFAULT_SCHEMA,), database: bool = False) -> Snapshot:
    """Read the schema objects of ``schemas`` (default: every user schema) in one catalog query.

    System schemas (pg_catalog, information_schema, pg_toast*, pg_temp*) are never read, nor are
    ``exclude_schemas`` (poststack's history schema by default). The search_path is narrowed to
    pg_catalog for the duration, transaction-locally, so every name comes out schema-qualified no
    matter how the caller's session is configured; the caller's setting is restored afterwards.

    ``database=True`` adds the database's own settings and comment (``database_objects``). Off by default:
    on a production database they are often the operator's (a DBA's ``statement_timeout``), and drift or
    verify must not read them as the migrations' doing; tests that own their database turn it on.
    """
    wanted = set(schemas) if schemas is not None else None
    excluded = set(exclude_schemas)
    with catalog_cursor(conn) as cur:
        scope = [name for (name,) in cur.execute(SCHEMAS_QUERY).fetchall()
                 if name not in excluded and (wanted is None or name in wanted)]
        row = cur.execute(snapshot_query(conn.info.server_version), {"schemas": scope}).fetchone()
    objects: Objects = row[0] if row and row[0] else {}
    result = Snapshot(objects, tuple(scope), conn.info.server_version)
    return result.with_objects(database_objects(conn)) if database else result


DATABASE_SETTINGS_QUERY = """
SELECT r.rolname, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"""


def database_objects(conn: psycopg.Connection[Any]) -> Objects:
    """The current database's settings (``ALTER DATABASE ... SET``, and ``ALTER ROLE r IN DATABASE ... SET``)
    and comment as objects of kind ``database``: ``current`` (the database itself) and ``current for role r``. The name
    is not the database's, so a clone compares equal to its template. Empty when there is nothing."""
    named: dict[str, dict[str, Any]] = {}
    for role, config in conn.execute(DATABASE_SETTINGS_QUERY).fetchall():
        settings = dict(entry.partition("=")[::2] for entry in config or ())
        if settings:
            named["current" if role is None else f"current for role {role}"] = {"settings": settings}
    row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                       "WHERE datname = current_database()").fetchone()
    if row and row[0] is not None:
        named.setdefault("current", {})["comment"] = row[0]
    return {"database": named} if named else {}


@contextmanager
def catalog_cursor(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
    """A cursor in a transaction whose search_path is only pg_catalog, restored on the way out.

    Catalog names in the queries then resolve to the catalogs whatever the session's search_path holds,
    and regclass / regtype / regprocedure output always comes out schema-qualified.
    """
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        set_json_loads(loads, cur)
        previous = cur.execute("SELECT current_setting('search_path')").fetchone()
        cur.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        yield cur
        cur.execute("SELECT set_config('search_path', %s, true)", [previous[0] if previous else ""])


def loads(text: str | bytes) -> Any:
    """``json.loads`` with the cyclic garbage collector paused: parsing a snapshot allocates hundreds of
    thousands of dicts and lists, which triggers collections that rescan all of them (3.9 MB parsed in
    118 ms with the collector, 72 ms without; 7.9 MB in 333 ms against 182 ms). The parse makes no cycles,
    so there is nothing for the collector to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if enabled:
            gc.enable()


# -- diff helpers ------------------------------------------------------------------------------------------
def _kinds(*maps: Mapping[str, Any]) -> list[str]:
    present = set().union(*(m.keys() for m in maps))
    known = [k for k in KIND_ORDER if k in present]
    return known + sorted(present - set(KIND_ORDER))


def _parent_also(attributes: Mapping[str, Any], has: Snapshot, lacks: Snapshot) -> bool:
    """True when the object's parent is itself present in ``has`` and absent from ``lacks``."""
    parent = attributes.get("parent")
    if not isinstance(parent, list) or len(parent) != 2:
        return False
    return tuple(parent) in has and tuple(parent) not in lacks


def _portable_view(attributes: dict[str, Any]) -> dict[str, Any]:
    text = attributes.get("definition")
    return {**attributes, "definition": portable_view_text(text)} if isinstance(text, str) else attributes


def _renamed_constraints(gone: list[str], new: list[str], before: Mapping[str, Any],
                         after: Mapping[str, Any]) -> list[str]:
    """Pair constraints that differ only by name (same table, same definition): one line, and both names
    are removed from ``gone`` and ``new``."""
    lines = []
    for old in list(gone):
        match = next((n for n in new if before[old] == after[n]), None)
        if match is not None:
            gone.remove(old)
            new.remove(match)
            lines.append(f"constraint {old}: renamed to {match.rpartition('.')[2]}")
    return lines


def _told_by_column(attributes: Mapping[str, Any], has: Snapshot, lacks: Snapshot) -> bool:
    """A NOT NULL constraint whose column's ``not_null`` changed the same way: the column line tells it."""
    if attributes.get("type") != "not null":
        return False
    parent = attributes.get("parent")
    definition = str(attributes.get("definition", ""))
    if not isinstance(parent, list) or len(parent) != 2 or not definition.upper().startswith("NOT NULL "):
        return False
    column = f"{parent[1]}.{definition[len('NOT NULL '):]}"
    now, then = has.get("column", column), lacks.get("column", column)
    return bool(now and then and now.get("not_null") and not then.get("not_null"))


def _attribute_changes(kind: str, name: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    lines = []
    for attribute in sorted(before.keys() | after.keys()):
        if attribute in _INTERNAL_ATTRIBUTES:
            continue
        old, new = before.get(attribute), after.get(attribute)
        if old != new:
            lines.append(f"{kind} {name}: {attribute.replace('_', ' ')} {describe_change(old, new)}")
    return lines


def _column_order_changes(before: Snapshot, after: Snapshot) -> list[str]:
    """Column order matters to ``SELECT *`` and INSERT without a column list, but only among columns both
    snapshots have: a dropped column must not make every later column look moved."""
    lines: list[str] = []
    old_columns, new_columns = before.objects.get("column", {}), after.objects.get("column", {})
    if old_columns == new_columns:
        return lines
    tables: dict[str, list[str]] = {}
    for name in old_columns.keys() & new_columns.keys():
        parent = old_columns[name].get("parent") or ["", ""]
        tables.setdefault(parent[1], []).append(name)
    for table in sorted(tables):
        common = tables[table]
        old_order = sorted(common, key=lambda n: old_columns[n].get("position", 0))
        new_order = sorted(common, key=lambda n: new_columns[n].get("position", 0))
        if old_order != new_order:
            short = [n[len(table) + 1:] if n.startswith(table + ".") else n for n in old_order]
            moved = [n[len(table) + 1:] if n.startswith(table + ".") else n for n in new_order]
            lines.append(f"table {table}: column order changed from {_render(short)} to {_render(moved)}")
    return lines


def describe_change(old: Any, new: Any) -> str:
    """``changed from X to Y``; long or multi-line texts are shown by their first differing line.

    Lines are compared without their surrounding whitespace first, so a real change is found even after a
    re-indented line; a text that differs only in whitespace says so, with the first line where it does.
    """
    if isinstance(old, str) and isinstance(new, str) and (
            "\n" in old or "\n" in new or max(len(old), len(new)) > _INLINE_TEXT):
        old_lines, new_lines = _content_lines(old), _content_lines(new)
        for (number, a), (_, b) in zip(old_lines, new_lines, strict=False):
            if a != b:
                return f"changed at line {number}: {_clip(a)!r} became {_clip(b)!r}"
        if len(old_lines) > len(new_lines):
            number, text = old_lines[len(new_lines)]
            return f"changed: line {number} {_clip(text)!r} was removed"
        if len(new_lines) > len(old_lines):
            number, text = new_lines[len(old_lines)]
            return f"changed: line {number} {_clip(text)!r} was added"
        raw_old, raw_new = old.splitlines(), new.splitlines()
        where = next((n for n, (a, b) in enumerate(zip(raw_old, raw_new, strict=False), start=1) if a != b),
                     min(len(raw_old), len(raw_new)) + 1)
        return f"changed in whitespace only (from line {where})"
    return f"changed from {_render(old)} to {_render(new)}"


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that hold something."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _INLINE_TEXT else text[:_INLINE_TEXT - 1] + "…"


def _render(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
