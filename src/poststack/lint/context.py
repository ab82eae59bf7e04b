"""What lint knows while it walks a migration: which relations are new, which settings are set.

"New" is the point of this module: a table (or index) created earlier in the same migration, or by an
earlier migration of the same batch (the migrations not yet applied to the target, when lint has a database
URL), has no readers and no rows to scan, so statements on it are never flagged as touching an existing
table. This is a small walker of PostgreSQL's own parse tree (pglast), not a model of what SQL does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import ObjectType

from poststack.source.sqltext import required

RelationKey = tuple[str | None, str]  # (schema or None when unqualified, name)


@dataclass
class NotNullChecks:
    """NOT NULL checks seen so far, across migrations: the safe SET NOT NULL spans three of them."""

    validated: set[tuple[str, str]] = field(default_factory=set)  # (table name, column)
    not_valid: dict[tuple[str, str], str] = field(default_factory=dict)  # (table name, constraint) -> column


@dataclass
class MigrationContext:
    """What the statements of one migration (and its batch) so far have done."""

    no_transaction: bool
    checks: NotNullChecks = field(default_factory=NotNullChecks)
    created: set[RelationKey] = field(default_factory=set)  # tables, views and indexes created so far
    lock_timeout_set: bool = False
    lock_timeout_reported: bool = False
    statement_timeout_set: bool = False
    statement_timeout_reported: bool = False
    enum_values_added: set[str] = field(default_factory=set)  # ALTER TYPE ... ADD VALUE in this transaction
    open_transaction: int | None = None  # line of a BEGIN not yet committed (no-transaction files)

    def is_new(self, relation: ast.RangeVar | None) -> bool:
        if relation is None:
            return False
        return self.is_new_name(relation.schemaname, str(relation.relname))

    def is_new_name(self, schema: str | None, name: str) -> bool:
        return any(created == name and (known is None or schema is None or known == schema)
                   for known, created in self.created)

    def remember(self, schema: str | None, name: str | None) -> None:
        if name:
            self.created.add((schema, name))


def display(relation: ast.RangeVar) -> str:
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else str(relation.relname)


def names_of(parts: tuple[ast.String, ...] | list[ast.String]) -> tuple[str | None, str]:
    """(schema, name) of a qualified name list as DROP and ALTER TYPE spell it."""
    names = [required(p.sval) for p in parts]
    return (names[-2] if len(names) > 1 else None), names[-1]


def range_var(parts: tuple[ast.String, ...] | list[ast.String]) -> ast.RangeVar:
    schema, name = names_of(parts)
    return ast.RangeVar(schemaname=schema, relname=name)


def record_creations(stmt: ast.Node, ctx: MigrationContext) -> None:
    """Remember the relations ``stmt`` creates (or renames a new one to)."""
    if isinstance(stmt, ast.CreateStmt | ast.CreateTableAsStmt | ast.ViewStmt):
        relation = required(_created_relation(stmt))
        ctx.remember(relation.schemaname, relation.relname)
    elif isinstance(stmt, ast.IndexStmt) and stmt.idxname:
        ctx.remember(required(stmt.relation).schemaname, stmt.idxname)
    elif (isinstance(stmt, ast.RenameStmt) and stmt.renameType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_INDEX)
          and stmt.relation is not None and ctx.is_new(stmt.relation)):
        ctx.remember(stmt.relation.schemaname, stmt.newname)


def _created_relation(stmt: ast.CreateStmt | ast.CreateTableAsStmt | ast.ViewStmt) -> ast.RangeVar | None:
    if isinstance(stmt, ast.CreateStmt):
        return stmt.relation
    if isinstance(stmt, ast.CreateTableAsStmt):
        return required(stmt.into).rel
    return stmt.view


def created_relations(statements: list[ast.Node]) -> set[RelationKey]:
    """Every relation a list of statements creates: what a batch's earlier migrations make new."""
    ctx = MigrationContext(no_transaction=False)
    for stmt in statements:
        record_creations(stmt, ctx)
    return ctx.created
