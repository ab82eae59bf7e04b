"""Rules about what a statement changes: running code that breaks, data that is lost, SQL that will fail.

Like the lock rules, statements on relations created earlier in the same migration (or batch) are not
flagged: no running code uses them and they hold no data yet.
"""

from __future__ import annotations

from pglast import ast
from pglast import parser as pg_parser
from pglast.enums import AlterTableType, ConstrType, DropBehavior, ObjectType, TransactionStmtKind
from pglast.visitors import Visitor

from poststack.lint.context import MigrationContext, display, range_var
from poststack.lint.rules import Hit
from poststack.source.sqltext import required

MAX_IDENTIFIER_BYTES = 63
_OPENS = frozenset({TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START})
_CLOSES = frozenset({TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK,
                     TransactionStmtKind.TRANS_STMT_PREPARE})
_DROPS = {ObjectType.OBJECT_SCHEMA: "drop-schema", ObjectType.OBJECT_SEQUENCE: "drop-sequence",
          ObjectType.OBJECT_EXTENSION: "drop-extension", ObjectType.OBJECT_TABLE: "drop-table"}


def alter_table_changes(cmd: ast.AlterTableCmd, table: str, line: int) -> list[Hit]:
    """Compatibility and failure rules of one ALTER TABLE subcommand on an existing table."""
    kind = cmd.subtype
    if kind == AlterTableType.AT_DropColumn:
        return [Hit("drop-column", line, f"drops column {table}.{cmd.name}", table)]
    if kind == AlterTableType.AT_DropNotNull:
        return [Hit("drop-not-null", line, f"drops NOT NULL from {table}.{cmd.name}", table)]
    if kind == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef) and _needs_a_value(cmd.def_):
        return [Hit("not-null-without-default", line, f"adds NOT NULL column {table}.{cmd.def_.colname} without "
                    "a default: fails as soon as the table has a row", table)]
    return []


def _needs_a_value(column: ast.ColumnDef) -> bool:
    constraints = column.constraints or ()
    not_null = column.is_not_null or any(c.contype in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY)
                                         for c in constraints)
    filled = any(c.contype in (ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED)
                 for c in constraints)
    serial = column.typeName is not None and required(column.typeName.names)[-1].sval.lower() in (
        "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8")
    return not_null and not filled and not serial


def rename(stmt: ast.RenameStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    if stmt.relation is None or ctx.is_new(stmt.relation):
        return []
    table = display(stmt.relation)
    if stmt.renameType == ObjectType.OBJECT_COLUMN and stmt.relationType == ObjectType.OBJECT_TABLE:
        return [Hit("rename-column", line, f"renames column {table}.{stmt.subname} to {stmt.newname}", table)]
    if stmt.renameType == ObjectType.OBJECT_TABLE:
        return [Hit("rename-table", line, f"renames table {table} to {stmt.newname}", table)]
    return []


def drop(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    if isinstance(stmt, ast.DropdbStmt):
        return [Hit("drop-database", line, f"drops database {stmt.dbname}")]
    if isinstance(stmt, ast.TruncateStmt):
        if stmt.behavior != DropBehavior.DROP_CASCADE:
            return []
        tables = ", ".join(display(r) for r in stmt.relations or ())
        return [Hit("truncate-cascade", line, f"TRUNCATE {tables} CASCADE also empties every table referencing it",
                    display(stmt.relations[0]) if stmt.relations else None)]
    if not isinstance(stmt, ast.DropStmt) or stmt.removeType not in _DROPS:
        return []
    rule, hits = _DROPS[stmt.removeType], []
    for parts in stmt.objects or ():
        if stmt.removeType in (ObjectType.OBJECT_SCHEMA, ObjectType.OBJECT_EXTENSION):
            name = parts.sval if isinstance(parts, ast.String) else ".".join(p.sval for p in parts)
            cascade = " CASCADE" if stmt.behavior == DropBehavior.DROP_CASCADE else ""
            hits.append(Hit(rule, line, f"drops {stmt.removeType.name[7:].lower()} {name}{cascade}"))
            continue
        relation = range_var(parts)
        if not ctx.is_new(relation):
            kind = "table" if stmt.removeType == ObjectType.OBJECT_TABLE else "sequence"
            hits.append(Hit(rule, line, f"drops {kind} {display(relation)}",
                            display(relation) if kind == "table" else None))
    return hits


def transaction_control(stmt: ast.TransactionStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    """BEGIN/COMMIT/ROLLBACK in a transactional file; in a no-transaction file, a BEGIN never closed."""
    if stmt.kind not in _OPENS and stmt.kind not in _CLOSES:
        return []  # SAVEPOINT, RELEASE, ROLLBACK TO stay inside the transaction
    word = stmt.kind.name.removeprefix("TRANS_STMT_")
    if not ctx.no_transaction:
        return [Hit("transaction-nesting", line, f"{word} inside the transaction poststack runs this file in")]
    if stmt.kind in _OPENS:
        if ctx.open_transaction is not None:
            return [Hit("transaction-nesting", line, f"{word} while the transaction opened on line "
                                                     f"{ctx.open_transaction} is still open")]
        ctx.open_transaction = line
    else:
        ctx.open_transaction = None
    return []


def unclosed_transaction(ctx: MigrationContext) -> list[Hit]:
    """At the end of a no-transaction file: a BEGIN without COMMIT holds its locks until the session ends."""
    if ctx.open_transaction is None:
        return []
    return [Hit("transaction-nesting", ctx.open_transaction, "this BEGIN is never committed: its locks and "
                "changes stay pending until the session ends")]


def enum_values(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    """ALTER TYPE ... ADD VALUE, and a later use of that value as a literal in the same transaction."""
    if isinstance(stmt, ast.AlterEnumStmt):
        if stmt.newVal and not stmt.oldVal and not ctx.no_transaction:
            ctx.enum_values_added.add(stmt.newVal)
        return []
    if not ctx.enum_values_added:
        return []
    finder = _Literals()
    finder(stmt)
    used = sorted(finder.values & ctx.enum_values_added)
    if not used:
        return []
    return [Hit("enum-value-used-in-transaction", line, f"uses enum value {used[0]!r}, added by "
                "ALTER TYPE ... ADD VALUE in this same transaction: PostgreSQL refuses it")]


class _Literals(Visitor):
    def __init__(self) -> None:
        self.values: set[str] = set()

    def visit_A_Const(self, ancestors: object, node: ast.A_Const) -> None:
        if isinstance(node.val, ast.String):
            self.values.add(required(node.val.sval))


def long_identifiers(text: str) -> list[Hit]:
    """Identifiers over 63 bytes, from the scanner's tokens: the parser has already truncated them."""
    data = text.encode()
    try:
        tokens = pg_parser.scan(text)
    except pg_parser.ParseError:
        return []
    hits, seen = [], set()
    for token in tokens:
        if token.name != "IDENT":
            continue
        raw = data[token.start:token.end + 1]
        name = raw[1:-1].replace(b'""', b'"') if raw.startswith(b'"') and raw.endswith(b'"') else raw.lower()
        if len(name) > MAX_IDENTIFIER_BYTES and name not in seen:
            seen.add(name)
            shown = name.decode(errors="replace")
            hits.append(Hit("identifier-too-long", data.count(b"\n", 0, token.start) + 1,
                            f"identifier {shown[:24]}... is {len(name)} bytes: PostgreSQL keeps only the first "
                            f"{MAX_IDENTIFIER_BYTES} ({shown[:MAX_IDENTIFIER_BYTES]!r})"))
    return hits


def sequence_created(stmt: ast.Node, ctx: MigrationContext) -> None:
    if isinstance(stmt, ast.CreateSeqStmt):
        sequence = required(stmt.sequence)
        ctx.remember(sequence.schemaname, sequence.relname)
