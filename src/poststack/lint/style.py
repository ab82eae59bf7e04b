"""Opt-in conventions: column types and names a team may choose to require (off unless enabled).

These look at every column a migration defines (CREATE TABLE, ADD COLUMN, ALTER COLUMN TYPE), new tables
included: a new table is exactly where a type is chosen.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from poststack.lint.rules import Hit
from poststack.source.sqltext import required

_INT_KEYS = {"int4": "int", "int2": "smallint", "serial": "serial", "serial4": "serial",
             "smallserial": "smallserial", "serial2": "smallserial"}
_SERIALS = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})


def _columns(stmt: ast.Node) -> Iterator[tuple[str, ast.ColumnDef, frozenset[str]]]:
    """(table, column, primary key columns of the table statement) for every column ``stmt`` defines."""
    if isinstance(stmt, ast.CreateStmt):
        table = _name(required(stmt.relation))
        keys = frozenset(k.sval for c in stmt.tableElts or () if isinstance(c, ast.Constraint)
                         and c.contype == ConstrType.CONSTR_PRIMARY for k in c.keys or ())
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                yield table, element, keys
    elif isinstance(stmt, ast.AlterTableStmt):
        table = _name(required(stmt.relation))
        for cmd in stmt.cmds or ():
            if cmd.subtype in (AlterTableType.AT_AddColumn, AlterTableType.AT_AlterColumnType) \
                    and isinstance(cmd.def_, ast.ColumnDef):
                column = cmd.def_
                if column.colname is None:
                    column = ast.ColumnDef(colname=cmd.name, typeName=column.typeName,
                                           constraints=column.constraints)
                yield table, column, frozenset()


def _name(relation: ast.RangeVar) -> str:
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else str(relation.relname)


def column_types(stmt: ast.Node, line: int) -> list[Hit]:
    hits = []
    for table, column, keys in _columns(stmt):
        if column.typeName is None:
            continue
        names = [n.sval for n in required(column.typeName.names)]
        type_name, where = names[-1].lower(), f"{table}.{column.colname}"
        builtin = len(names) == 1 or names[0] == "pg_catalog"
        if builtin and type_name == "bpchar":
            hits.append(Hit("char-type", line, f"{where} is char(n)", table))
        if builtin and type_name == "varchar" and column.typeName.typmods:
            hits.append(Hit("varchar-length", line, f"{where} is varchar(n)", table))
        if builtin and type_name == "timestamp":
            hits.append(Hit("timestamp-without-time-zone", line, f"{where} is timestamp without time zone", table))
        if type_name in _SERIALS and len(names) == 1:
            hits.append(Hit("serial-column", line, f"{where} is {type_name}", table))
        primary = column.colname in keys or any(c.contype == ConstrType.CONSTR_PRIMARY
                                                for c in column.constraints or ())
        if primary and builtin and type_name in _INT_KEYS:
            hits.append(Hit("int-primary-key", line, f"key {where} is {_INT_KEYS[type_name]}", table))
    return hits


def unqualified(stmt: ast.Node, line: int) -> list[Hit]:
    """CREATE of a table, view, sequence, type, domain or function without a schema."""
    name: str | None = None
    if isinstance(stmt, ast.CreateStmt | ast.CreateSeqStmt):
        relation = required(stmt.relation if isinstance(stmt, ast.CreateStmt) else stmt.sequence)
        name = None if relation.schemaname else relation.relname
    elif isinstance(stmt, ast.ViewStmt):
        view = required(stmt.view)
        name = None if view.schemaname else view.relname
    elif isinstance(stmt, ast.CreateTableAsStmt):
        into = required(required(stmt.into).rel)
        name = None if into.schemaname else into.relname
    elif isinstance(stmt, ast.CreateEnumStmt | ast.CreateDomainStmt | ast.CreateFunctionStmt):
        parts = {ast.CreateEnumStmt: "typeName", ast.CreateDomainStmt: "domainname",
                 ast.CreateFunctionStmt: "funcname"}[type(stmt)]
        names = getattr(stmt, parts)
        name = names[0].sval if len(names) == 1 else None
    if name is None:
        return []
    return [Hit("unqualified-name", line, f"creates {name} without a schema: where it lands depends on "
                                          "search_path")]
