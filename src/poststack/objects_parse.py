"""The statement walker behind ``poststack.objects.extract``: one handler per pglast node type.

Each handler turns a statement into expectations on the running net effect (see objects.py for the model and
the name-resolution rule). Anything without a handler is reported as uncheckable, except statements that
change nothing in the catalog (SET, BEGIN, ANALYZE...).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from pglast import ast, parser
from pglast.enums import AlterTableType, ConstrType, FunctionParameterMode, ObjectType, VariableSetKind
from pglast.stream import RawStream

from poststack.objects import RELATION_KINDS, TYPE_KINDS, DbObject, Expectation, MigrationObjects, covers
from poststack.sqltext import check_syntax, line_of

_RELATION_OBJECTS = {
    ObjectType.OBJECT_TABLE: "table", ObjectType.OBJECT_FOREIGN_TABLE: "table", ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized_view", ObjectType.OBJECT_INDEX: "index",
    ObjectType.OBJECT_SEQUENCE: "sequence",
}
_NEUTRAL = frozenset({"VariableSetStmt", "VariableShowStmt", "TransactionStmt", "VacuumStmt", "LockStmt",
                      "NotifyStmt", "DiscardStmt", "CheckPointStmt", "ExplainStmt"})
_SKIP_PATH = frozenset({"$user", "pg_catalog", "pg_temp"})
_INPUT_MODES = frozenset({FunctionParameterMode.FUNC_PARAM_IN, FunctionParameterMode.FUNC_PARAM_INOUT,
                          FunctionParameterMode.FUNC_PARAM_VARIADIC, FunctionParameterMode.FUNC_PARAM_DEFAULT})


def _names(node: Any) -> list[str]:
    return [n.sval for n in (node or ()) if isinstance(n, ast.String)]


def _type_text(type_name: ast.TypeName) -> str | None:
    """A type as PostgreSQL's parser accepts it, without modifiers; None for ``%TYPE`` (not resolvable)."""
    if type_name.pct_type:
        return None
    bare = ast.TypeName(names=type_name.names, arrayBounds=type_name.arrayBounds, setof=False, pct_type=False)
    return RawStream()(bare)


def _args_text(types: list[ast.TypeName]) -> str | None:
    texts = [_type_text(t) for t in types]
    return None if any(t is None for t in texts) else ", ".join(t for t in texts if t is not None)


def _words(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", camel).upper()


def _snippet(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= 70 else one[:67] + "..."


class _Extractor:
    """Applies statements in order to an ordered map key -> Expectation (the net effect so far)."""

    def __init__(self, default_schema: str) -> None:
        self.default = default_schema
        self.schema = default_schema
        self.state: dict[tuple[str | None, ...], Expectation] = {}
        self.uncheckable: list[str] = []
        self.line = 1
        self.text = ""
        self.weak = False

    # -- bookkeeping ---------------------------------------------------------------------------------
    def expect(self, obj: DbObject, exists: bool) -> None:
        if not exists:
            for key in [k for k, e in self.state.items() if covers(obj, e.obj)]:
                del self.state[key]
        self.state.pop(obj.key, None)  # re-insert at the end: order of effects is order of statements
        self.state[obj.key] = Expectation(obj, exists, self.line, exists and self.weak)

    def rename(self, old: DbObject, new: DbObject) -> None:
        """Old name gone, new name present; what this migration attached to the old name follows it."""
        if old.kind in RELATION_KINDS or old.kind in TYPE_KINDS:
            for key, exp in list(self.state.items()):
                o = exp.obj
                if o.key != old.key and o.schema == old.schema and o.parent == old.name:
                    del self.state[key]
                    moved = replace(o, parent=new.name)
                    self.state[moved.key] = replace(exp, obj=moved)
        self.expect(old, False)
        self.expect(new, True)

    def skip(self, why: str) -> None:
        self.uncheckable.append(f"line {self.line}: {_snippet(self.text)} ({why})")

    def qualify(self, names: list[str]) -> tuple[str, str]:
        return (names[-2], names[-1]) if len(names) >= 2 else (self.schema, names[-1])

    def rel(self, rv: ast.RangeVar) -> tuple[str, str]:
        return rv.schemaname or self.schema, rv.relname

    # -- statements ----------------------------------------------------------------------------------
    def statement(self, node: Any, line: int, text: str) -> None:
        self.line, self.text = line, text
        self.weak = bool(getattr(node, "if_not_exists", False))
        name = type(node).__name__
        handler = getattr(self, f"on_{name}", None)
        if handler is not None:
            handler(node)
        elif name not in _NEUTRAL:
            self.skip("its effect is not visible in the catalog")

    def on_VariableSetStmt(self, node: ast.VariableSetStmt) -> None:
        if (node.name or "").lower() != "search_path":
            return
        if node.kind != VariableSetKind.VAR_SET_VALUE:
            self.schema = self.default
            return
        path = [a.val.sval for a in node.args or () if isinstance(a, ast.A_Const) and isinstance(a.val, ast.String)]
        self.schema = next((s for s in path if s not in _SKIP_PATH), self.default)

    def on_CreateSchemaStmt(self, node: ast.CreateSchemaStmt) -> None:
        if not node.schemaname:
            self.skip("schema named after a role: name not known from the text")
            return
        self.expect(DbObject("schema", None, node.schemaname), True)
        outer, self.schema = self.schema, node.schemaname
        try:
            for element in node.schemaElts or ():
                self.statement(element, self.line, self.text)
        finally:
            self.schema = outer

    def on_CreateStmt(self, node: ast.CreateStmt) -> None:
        schema, table = self.rel(node.relation)
        self.expect(DbObject("table", schema, table), True)
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                self._column(schema, table, element)
            elif isinstance(element, ast.Constraint):
                self._constraint(schema, table, element)

    def on_CreateForeignTableStmt(self, node: ast.CreateForeignTableStmt) -> None:
        self.on_CreateStmt(node.base)

    def _column(self, schema: str, table: str, col: ast.ColumnDef) -> None:
        self.expect(DbObject("column", schema, col.colname, table), True)
        for constraint in col.constraints or ():
            self._constraint(schema, table, constraint)

    def _constraint(self, schema: str, parent: str, con: ast.Constraint) -> None:
        # Only named ones: generated names are the server's choice. NOT NULL constraints are in pg_constraint
        # only since PostgreSQL 18, so they are not evidence on older servers.
        if con.conname and con.contype not in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_NULL,
                                               ConstrType.CONSTR_DEFAULT):
            self.expect(DbObject("constraint", schema, con.conname, parent), True)

    def on_CreateTableAsStmt(self, node: ast.CreateTableAsStmt) -> None:
        schema, name = self.rel(node.into.rel)
        kind = "materialized_view" if node.objtype == ObjectType.OBJECT_MATVIEW else "table"
        self.expect(DbObject(kind, schema, name), True)
        for col in _names(node.into.colNames):
            self.expect(DbObject("column", schema, col, name), True)

    def on_ViewStmt(self, node: ast.ViewStmt) -> None:
        self.expect(DbObject("view", *self.rel(node.view)), True)

    def on_IndexStmt(self, node: ast.IndexStmt) -> None:
        schema, table = self.rel(node.relation)
        if not node.idxname:
            self.skip("unnamed index: its name is chosen by the server")
            return
        self.expect(DbObject("index", schema, node.idxname, table), True)

    def on_CreateSeqStmt(self, node: ast.CreateSeqStmt) -> None:
        self.expect(DbObject("sequence", *self.rel(node.sequence)), True)

    def on_CreateEnumStmt(self, node: ast.CreateEnumStmt) -> None:
        schema, name = self.qualify(_names(node.typeName))
        self.expect(DbObject("type", schema, name), True)
        for label in _names(node.vals):
            self.expect(DbObject("enum_label", schema, label, name), True)

    def on_AlterEnumStmt(self, node: ast.AlterEnumStmt) -> None:
        schema, name = self.qualify(_names(node.typeName))
        self.weak = bool(node.skipIfNewValExists)
        if node.oldVal:
            self.rename(DbObject("enum_label", schema, node.oldVal, name),
                        DbObject("enum_label", schema, node.newVal, name))
        else:
            self.expect(DbObject("enum_label", schema, node.newVal, name), True)

    def on_CompositeTypeStmt(self, node: ast.CompositeTypeStmt) -> None:
        schema, name = self.rel(node.typevar)
        self.expect(DbObject("type", schema, name), True)
        for col in node.coldeflist or ():
            self.expect(DbObject("column", schema, col.colname, name), True)

    def on_CreateRangeStmt(self, node: ast.CreateRangeStmt) -> None:
        self.expect(DbObject("type", *self.qualify(_names(node.typeName))), True)

    def on_DefineStmt(self, node: ast.DefineStmt) -> None:
        if node.kind == ObjectType.OBJECT_TYPE:
            self.expect(DbObject("type", *self.qualify(_names(node.defnames))), True)
        else:
            self.skip(f"{node.kind.name.removeprefix('OBJECT_').lower()} definitions are not checked")

    def on_CreateDomainStmt(self, node: ast.CreateDomainStmt) -> None:
        schema, name = self.qualify(_names(node.domainname))
        self.expect(DbObject("domain", schema, name), True)
        for constraint in node.constraints or ():
            self._constraint(schema, name, constraint)

    def on_CreateFunctionStmt(self, node: ast.CreateFunctionStmt) -> None:
        schema, name = self.qualify(_names(node.funcname))
        args = _args_text([p.argType for p in node.parameters or () if p.mode in _INPUT_MODES])
        self.expect(DbObject("procedure" if node.is_procedure else "function", schema, name, None, args), True)

    def on_CreateTrigStmt(self, node: ast.CreateTrigStmt) -> None:
        schema, table = self.rel(node.relation)
        self.expect(DbObject("trigger", schema, node.trigname, table), True)

    def on_CreatePolicyStmt(self, node: ast.CreatePolicyStmt) -> None:
        schema, table = self.rel(node.table)
        self.expect(DbObject("policy", schema, node.policy_name, table), True)

    def on_CreateExtensionStmt(self, node: ast.CreateExtensionStmt) -> None:
        self.expect(DbObject("extension", None, node.extname), True)

    def on_CommentStmt(self, node: ast.CommentStmt) -> None:
        obj = node.object
        if node.objtype == ObjectType.OBJECT_SCHEMA and isinstance(obj, ast.String):
            target = DbObject("comment", None, obj.sval, None, node.comment)
        elif node.objtype == ObjectType.OBJECT_COLUMN:
            names = _names(obj)
            schema = names[-3] if len(names) >= 3 else self.schema
            target = DbObject("comment", schema, names[-1], names[-2], node.comment)
        elif node.objtype in _RELATION_OBJECTS:
            target = DbObject("comment", *self.qualify(_names(obj)), None, node.comment)
        else:
            self.skip("comments on this kind of object are not checked")
            return
        # COMMENT ... IS NULL removes the comment: expect "no comment" rather than a text.
        self.expect(target, node.comment is not None)

    def on_AlterTableStmt(self, node: ast.AlterTableStmt) -> None:
        schema, table = self.rel(node.relation)
        unchecked = []
        for cmd in node.cmds or ():
            sub = cmd.subtype
            self.weak = bool(cmd.missing_ok)
            if sub in (AlterTableType.AT_AddColumn, AlterTableType.AT_AddColumnToView):
                self._column(schema, table, cmd.def_)
            elif sub == AlterTableType.AT_DropColumn:
                self.expect(DbObject("column", schema, cmd.name, table), False)
            elif sub == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
                if cmd.def_.conname:
                    self._constraint(schema, table, cmd.def_)
                else:
                    unchecked.append("unnamed constraint")
            elif sub == AlterTableType.AT_DropConstraint:
                self.expect(DbObject("constraint", schema, cmd.name, table), False)
            else:
                unchecked.append(_words(sub.name.removeprefix("AT_")))
        if unchecked:
            self.skip(f"not checked: {', '.join(unchecked)}")

    def on_AlterDomainStmt(self, node: ast.AlterDomainStmt) -> None:
        schema, name = self.qualify(_names(node.typeName))
        if node.subtype == "C" and isinstance(node.def_, ast.Constraint) and node.def_.conname:
            self._constraint(schema, name, node.def_)
        elif node.subtype == "X" and node.name:
            self.expect(DbObject("constraint", schema, node.name, name), False)
        else:
            self.skip("this ALTER DOMAIN is not checked")

    def on_RenameStmt(self, node: ast.RenameStmt) -> None:
        kind = node.renameType
        if kind in _RELATION_OBJECTS:
            schema, name = self.rel(node.relation)
            self.rename(DbObject(_RELATION_OBJECTS[kind], schema, name),
                        DbObject(_RELATION_OBJECTS[kind], schema, node.newname))
        elif kind in (ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT, ObjectType.OBJECT_TRIGGER,
                      ObjectType.OBJECT_POLICY) and node.relation is not None:
            schema, table = self.rel(node.relation)
            child = {ObjectType.OBJECT_COLUMN: "column", ObjectType.OBJECT_TABCONSTRAINT: "constraint",
                     ObjectType.OBJECT_TRIGGER: "trigger", ObjectType.OBJECT_POLICY: "policy"}[kind]
            self.rename(DbObject(child, schema, node.subname, table), DbObject(child, schema, node.newname, table))
        elif kind == ObjectType.OBJECT_SCHEMA:
            self.rename(DbObject("schema", None, node.subname), DbObject("schema", None, node.newname))
        elif kind in (ObjectType.OBJECT_TYPE, ObjectType.OBJECT_DOMAIN):
            schema, name = self.qualify(_names(node.object))
            kind_name = "domain" if kind == ObjectType.OBJECT_DOMAIN else "type"
            self.rename(DbObject(kind_name, schema, name), DbObject(kind_name, schema, node.newname))
        else:
            self.skip("this rename is not checked")

    def on_AlterObjectSchemaStmt(self, node: ast.AlterObjectSchemaStmt) -> None:
        kind = node.objectType
        if kind in _RELATION_OBJECTS and node.relation is not None:
            schema, name = self.rel(node.relation)
            rel_kind = _RELATION_OBJECTS[kind]
            self.expect(DbObject(rel_kind, schema, name), False)
            self.expect(DbObject(rel_kind, node.newschema, name), True)
        else:
            self.skip("this SET SCHEMA is not checked")

    def on_DropStmt(self, node: ast.DropStmt) -> None:
        for target in node.objects or ():
            obj = self._dropped(node.removeType, target)
            if obj is None:
                self.skip(f"DROP {node.removeType.name.removeprefix('OBJECT_')} is not checked")
                return
            self.expect(obj, False)

    def _dropped(self, kind: ObjectType, target: Any) -> DbObject | None:
        if kind in _RELATION_OBJECTS:
            return DbObject(_RELATION_OBJECTS[kind], *self.qualify(_names(target)))
        if kind in (ObjectType.OBJECT_TYPE, ObjectType.OBJECT_DOMAIN) and isinstance(target, ast.TypeName):
            return DbObject("domain" if kind == ObjectType.OBJECT_DOMAIN else "type",
                            *self.qualify(_names(target.names)))
        if kind in (ObjectType.OBJECT_FUNCTION, ObjectType.OBJECT_PROCEDURE) and isinstance(
                target, ast.ObjectWithArgs):
            schema, name = self.qualify(_names(target.objname))
            args = None if target.args_unspecified else _args_text(list(target.objargs or ()))
            return DbObject("procedure" if kind == ObjectType.OBJECT_PROCEDURE else "function", schema, name,
                            None, args)
        if kind in (ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_POLICY):
            names = _names(target)
            schema, table = self.qualify(names[:-1])
            return DbObject("trigger" if kind == ObjectType.OBJECT_TRIGGER else "policy", schema, names[-1], table)
        if kind == ObjectType.OBJECT_SCHEMA and isinstance(target, ast.String):
            return DbObject("schema", None, target.sval)
        if kind == ObjectType.OBJECT_EXTENSION and isinstance(target, ast.String):
            return DbObject("extension", None, target.sval)
        return None


def net_effect(sql: str, default_schema: str) -> MigrationObjects:
    """Walk the statements in order; raises SqlSyntaxError when pglast cannot parse the text."""
    check_syntax(sql)
    extractor = _Extractor(default_schema)
    for raw in parser.parse_sql(sql):
        start = raw.stmt_location or 0
        length = raw.stmt_len or len(sql) - start
        chunk = sql[start:start + length]
        lead = len(chunk) - len(chunk.lstrip())
        extractor.statement(raw.stmt, line_of(sql, start + lead), chunk.strip())
    return MigrationObjects(tuple(extractor.state.values()), tuple(extractor.uncheckable))
