"""The evidence model: catalog objects and what a migration expects of them (see poststack.source.objects).

Apart from the reader (poststack.source.objects_parse, and the ``extract`` in objects that calls it) so
that the reader can build these without importing the module that imports it, and so that code that only
names objects (poststack.catalog.presence) does not load the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

RELATION_KINDS = frozenset({"table", "view", "materialized_view", "index", "sequence"})
TYPE_KINDS = frozenset({"type", "domain"})
ROUTINE_KINDS = frozenset({"function", "procedure"})
KINDS = RELATION_KINDS | TYPE_KINDS | ROUTINE_KINDS | {
    "schema", "column", "constraint", "enum_label", "trigger", "policy", "extension", "comment"}


@dataclass(frozen=True)
class DbObject:
    """One catalog object. ``schema`` is None for schemas and extensions (and schema comments).

    ``parent`` is the table (column, constraint, trigger, policy, index), the type (enum label, domain
    constraint) or, for a column comment, the table. ``detail`` is a routine's input argument types (None:
    any overload) or a comment's text (None: "some comment").
    """

    kind: str
    schema: str | None
    name: str
    parent: str | None = None
    detail: str | None = None

    @cached_property
    def key(self) -> tuple[str | None, ...]:
        """Identity for net-effect bookkeeping: relations share one namespace, so do types; a comment's
        text and an index's table are not part of what the object *is*."""
        if self.kind in RELATION_KINDS:
            return ("relation", self.schema, self.name)
        if self.kind in TYPE_KINDS:
            return ("type", self.schema, self.name)
        if self.kind in ROUTINE_KINDS:
            return ("routine", self.schema, self.name, self.detail)
        if self.kind == "comment":
            return ("comment", self.schema, self.name, self.parent)
        return (self.kind, self.schema, self.name, self.parent)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def __str__(self) -> str:
        kind = self.kind.replace("_", " ")
        if self.kind in ROUTINE_KINDS:
            return f"{kind} {self.qualified}({self.detail if self.detail is not None else '...'})"
        if self.kind == "column":
            return f"column {self.schema}.{self.parent}.{self.name}"
        if self.kind == "enum_label":
            return f"enum label {self.name!r} of {self.schema}.{self.parent}"
        if self.kind == "comment":
            target = (f"column {self.schema}.{self.parent}.{self.name}" if self.parent
                      else f"{self.schema}.{self.name}" if self.schema else f"schema {self.name}")
            return f"comment on {target}" + (f" = {self.detail!r}" if self.detail is not None else "")
        if self.kind in ("constraint", "trigger", "policy"):
            return f"{kind} {self.name} on {self.schema}.{self.parent}"
        return f"{kind} {self.qualified}"


@dataclass(frozen=True)
class Expectation:
    """After the migration ran, ``obj`` exists (``exists``) or does not; ``line`` is where that was decided."""

    obj: DbObject
    exists: bool
    line: int
    weak: bool = False  # created with IF NOT EXISTS: finding it proves nothing, it may have been there before

    def __str__(self) -> str:
        return f"{self.obj}{'' if self.exists else ' (dropped)'}"


@dataclass(frozen=True)
class MigrationObjects:
    """The net effect of one migration's SQL, plus what the catalog cannot show. Immutable: it is cached."""

    expectations: tuple[Expectation, ...] = ()
    uncheckable: tuple[str, ...] = ()
    cascade: bool = False  # a DROP ... CASCADE: it may remove dependents nobody can list from the text

    @property
    def created(self) -> list[DbObject]:
        return [e.obj for e in self.expectations if e.exists]

    @property
    def dropped(self) -> list[DbObject]:
        return [e.obj for e in self.expectations if not e.exists]


def covers(removed: DbObject, obj: DbObject) -> bool:
    """Does removing ``removed`` also remove ``obj``? (a table takes its columns, indexes, triggers...)."""
    if removed.kind == "schema":
        return obj.schema == removed.name or (obj.kind == "comment" and obj.schema is None
                                              and obj.name == removed.name)
    if removed.kind in RELATION_KINDS or removed.kind in TYPE_KINDS:
        if obj.schema != removed.schema or obj.key == removed.key:
            return False
        return obj.parent == removed.name or (obj.kind == "comment" and obj.parent is None
                                              and obj.name == removed.name)
    if removed.kind in ROUTINE_KINDS and removed.detail is None:
        return obj.kind in ROUTINE_KINDS and (obj.schema, obj.name) == (removed.schema, removed.name)
    return False
