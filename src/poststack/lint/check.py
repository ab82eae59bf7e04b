"""One statement through every rule: the dispatcher lint_sql calls for each statement of a file."""

from __future__ import annotations

from pglast import ast
from pglast.enums import ObjectType

from poststack.lint import changes, locking, style
from poststack.lint.context import MigrationContext, display, record_creations
from poststack.lint.rules import Hit
from poststack.source.sqltext import required


def check_statement(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    """All findings for one statement, updating ``ctx`` with what the statement does."""
    hits: list[Hit] = []
    if isinstance(stmt, ast.IndexStmt):
        hits += locking.index(stmt, line, ctx)
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        hits += _alter_table(stmt, line, ctx)
    elif isinstance(stmt, ast.RenameStmt):
        hits += changes.rename(stmt, line, ctx)
    elif isinstance(stmt, ast.TransactionStmt):
        hits += changes.transaction_control(stmt, line, ctx)
    hits += changes.drop(stmt, line, ctx)
    hits += locking.maintenance(stmt, line, ctx)
    hits += locking.concurrently(stmt, line, ctx)
    hits += changes.enum_values(stmt, line, ctx)
    hits += style.column_types(stmt, line)
    hits += style.unqualified(stmt, line)
    hits += locking.timeouts(stmt, line, ctx)
    record_creations(stmt, ctx)
    changes.sequence_created(stmt, ctx)
    return hits


def finish(ctx: MigrationContext) -> list[Hit]:
    """Findings only the end of a file shows (a transaction left open)."""
    return changes.unclosed_transaction(ctx)


def _alter_table(stmt: ast.AlterTableStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    relation = required(stmt.relation)
    table, key = display(relation), str(relation.relname)
    new = ctx.is_new(relation)
    hits = []
    for cmd in stmt.cmds or ():
        hits += locking.alter_table_locks(cmd, table, key, line, new, ctx.checks)
        if not new:
            hits += changes.alter_table_changes(cmd, table, line)
    return hits
