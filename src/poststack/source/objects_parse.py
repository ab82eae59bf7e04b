"""The statement walker behind ``poststack.source.objects.extract``: one handler per parse-node type.

Each handler turns a statement into expectations on the running net effect (see objects.py for the model and
the name-resolution rule). Anything without a handler is reported as uncheckable, except statements that
change nothing in the catalog (SET, BEGIN, ANALYZE...).

It walks pglast's JSON parse tree (plain dicts, as libpg_query emits them) rather than pglast's AST objects:
building the AST costs ten times the parse itself, and diagnose reads thousands of files. A node of a
generic type is wrapped as ``{"TypeName": {...}}``; fields of a known type are the bare dict; enums are
their names; false, zero and empty fields are omitted.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from pglast import ast, parser
from pglast.stream import RawStream

from poststack.source.object_model import RELATION_KINDS, TYPE_KINDS, DbObject, Expectation, MigrationObjects, covers
from poststack.source.sqltext import check_syntax

Node = dict[str, Any]

_RELATION_OBJECTS = {
    "OBJECT_TABLE": "table", "OBJECT_FOREIGN_TABLE": "table", "OBJECT_VIEW": "view",
    "OBJECT_MATVIEW": "materialized_view", "OBJECT_INDEX": "index", "OBJECT_SEQUENCE": "sequence",
}
_CHILD_OBJECTS = {"OBJECT_COLUMN": "column", "OBJECT_TABCONSTRAINT": "constraint", "OBJECT_TRIGGER": "trigger",
                  "OBJECT_POLICY": "policy"}
_NEUTRAL = frozenset({"VariableSetStmt", "VariableShowStmt", "TransactionStmt", "VacuumStmt", "LockStmt",
                      "NotifyStmt", "DiscardStmt", "CheckPointStmt", "ExplainStmt"})
_SKIP_PATH = frozenset({"$user", "pg_catalog", "pg_temp"})
_INPUT_MODES = frozenset({"FUNC_PARAM_IN", "FUNC_PARAM_INOUT", "FUNC_PARAM_VARIADIC", "FUNC_PARAM_DEFAULT"})
_NOT_OBJECTS = frozenset({"CONSTR_NOTNULL", "CONSTR_NULL", "CONSTR_DEFAULT"})


def _unwrap(wrapped: Node | None) -> tuple[str, Node]:
    """``{"Type": {fields}}`` -> ("Type", fields)."""
    if not wrapped:
        return "", {}
    ((kind, fields),) = wrapped.items()
    return kind, fields


def _names(items: list[Node] | None) -> list[str]:
    """Names from a list of wrapped String nodes (or a wrapped List of them)."""
    if isinstance(items, dict):
        kind, fields = _unwrap(items)
        items = fields.get("items") if kind == "List" else [items]
    return [fields["sval"] for kind, fields in map(_unwrap, items or ()) if kind == "String"]


def _type_text(type_name: Node) -> str | None:
    """A type as PostgreSQL's parser accepts it, without modifiers; None for ``%TYPE`` (not resolvable)."""
    if type_name.get("pct_type"):
        return None
    bounds = [ast.Integer(ival=_unwrap(b)[1].get("ival", 0)) for b in type_name.get("arrayBounds") or ()]
    bare = ast.TypeName(names=tuple(ast.String(sval=n) for n in _names(type_name.get("names"))),
                        arrayBounds=tuple(bounds) or None, setof=False, pct_type=False)
    return RawStream()(bare)


def _args_text(types: list[Node]) -> str | None:
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
        self.cascade = False

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

    def rel(self, range_var: Node) -> tuple[str, str]:
        return range_var.get("schemaname") or self.schema, range_var["relname"]

    # -- statements ----------------------------------------------------------------------------------
    def statement(self, wrapped: Node, line: int, text: str) -> None:
        self.line, self.text = line, text
        name, node = _unwrap(wrapped)
        self.weak = bool(node.get("if_not_exists"))
        handler = getattr(self, f"on_{name}", None)
        if handler is not None:
            handler(node)
        elif name not in _NEUTRAL:
            self.skip("its effect is not visible in the catalog")

    def on_VariableSetStmt(self, node: Node) -> None:
        if (node.get("name") or "").lower() != "search_path":
            return
        if node.get("kind") != "VAR_SET_VALUE":
            self.schema = self.default
            return
        path = [a["sval"]["sval"] for kind, a in map(_unwrap, node.get("args") or ())
                if kind == "A_Const" and "sval" in a]
        self.schema = next((s for s in path if s not in _SKIP_PATH), self.default)

    def on_CreateSchemaStmt(self, node: Node) -> None:
        if not node.get("schemaname"):
            self.skip("schema named after a role: name not known from the text")
            return
        self.expect(DbObject("schema", None, node["schemaname"]), True)
        outer, self.schema = self.schema, node["schemaname"]
        try:
            for element in node.get("schemaElts") or ():
                self.statement(element, self.line, self.text)
        finally:
            self.schema = outer

    def on_CreateStmt(self, node: Node) -> None:
        schema, table = self.rel(node["relation"])
        self.expect(DbObject("table", schema, table), True)
        for kind, element in map(_unwrap, node.get("tableElts") or ()):
            if kind == "ColumnDef":
                self._column(schema, table, element)
            elif kind == "Constraint":
                self._constraint(schema, table, element)

    def on_CreateForeignTableStmt(self, node: Node) -> None:
        self.on_CreateStmt(node["base"])

    def _column(self, schema: str, table: str, col: Node) -> None:
        self.expect(DbObject("column", schema, col["colname"], table), True)
        for _, constraint in map(_unwrap, col.get("constraints") or ()):
            self._constraint(schema, table, constraint)

    def _constraint(self, schema: str, parent: str, con: Node) -> None:
        # Only named ones: generated names are the server's choice. NOT NULL constraints are in pg_constraint
        # only since PostgreSQL 18, so they are not evidence on older servers.
        if con.get("conname") and con.get("contype") not in _NOT_OBJECTS:
            self.expect(DbObject("constraint", schema, con["conname"], parent), True)

    def on_CreateTableAsStmt(self, node: Node) -> None:
        into = node["into"]
        schema, name = self.rel(into["rel"])
        kind = "materialized_view" if node.get("objtype") == "OBJECT_MATVIEW" else "table"
        self.expect(DbObject(kind, schema, name), True)
        for col in _names(into.get("colNames")):
            self.expect(DbObject("column", schema, col, name), True)

    def on_ViewStmt(self, node: Node) -> None:
        self.expect(DbObject("view", *self.rel(node["view"])), True)

    def on_IndexStmt(self, node: Node) -> None:
        schema, table = self.rel(node["relation"])
        if not node.get("idxname"):
            self.skip("unnamed index: its name is chosen by the server")
            return
        self.expect(DbObject("index", schema, node["idxname"], table), True)

    def on_CreateSeqStmt(self, node: Node) -> None:
        self.expect(DbObject("sequence", *self.rel(node["sequence"])), True)

    def on_CreateEnumStmt(self, node: Node) -> None:
        schema, name = self.qualify(_names(node["typeName"]))
        self.expect(DbObject("type", schema, name), True)
        for label in _names(node.get("vals")):
            self.expect(DbObject("enum_label", schema, label, name), True)

    def on_AlterEnumStmt(self, node: Node) -> None:
        schema, name = self.qualify(_names(node["typeName"]))
        self.weak = bool(node.get("skipIfNewValExists"))
        if node.get("oldVal"):
            self.rename(DbObject("enum_label", schema, node["oldVal"], name),
                        DbObject("enum_label", schema, node["newVal"], name))
        else:
            self.expect(DbObject("enum_label", schema, node["newVal"], name), True)

    def on_CompositeTypeStmt(self, node: Node) -> None:
        schema, name = self.rel(node["typevar"])
        self.expect(DbObject("type", schema, name), True)
        for _, col in map(_unwrap, node.get("coldeflist") or ()):
            self.expect(DbObject("column", schema, col["colname"], name), True)

    def on_CreateRangeStmt(self, node: Node) -> None:
        self.expect(DbObject("type", *self.qualify(_names(node["typeName"]))), True)

    def on_DefineStmt(self, node: Node) -> None:
        if node.get("kind") == "OBJECT_TYPE":
            self.expect(DbObject("type", *self.qualify(_names(node["defnames"]))), True)
        else:
            self.skip(f"{str(node.get('kind')).removeprefix('OBJECT_').lower()} definitions are not checked")

    def on_CreateDomainStmt(self, node: Node) -> None:
        schema, name = self.qualify(_names(node["domainname"]))
        self.expect(DbObject("domain", schema, name), True)
        for _, constraint in map(_unwrap, node.get("constraints") or ()):
            self._constraint(schema, name, constraint)

    def on_CreateFunctionStmt(self, node: Node) -> None:
        schema, name = self.qualify(_names(node["funcname"]))
        params = [p for _, p in map(_unwrap, node.get("parameters") or ())]
        args = _args_text([p["argType"] for p in params if p.get("mode", "FUNC_PARAM_DEFAULT") in _INPUT_MODES])
        kind = "procedure" if node.get("is_procedure") else "function"
        self.expect(DbObject(kind, schema, name, None, args), True)

    def on_CreateTrigStmt(self, node: Node) -> None:
        schema, table = self.rel(node["relation"])
        self.expect(DbObject("trigger", schema, node["trigname"], table), True)

    def on_CreatePolicyStmt(self, node: Node) -> None:
        schema, table = self.rel(node["table"])
        self.expect(DbObject("policy", schema, node["policy_name"], table), True)

    def on_CreateExtensionStmt(self, node: Node) -> None:
        self.expect(DbObject("extension", None, node["extname"]), True)

    def on_CommentStmt(self, node: Node) -> None:
        objtype, names, text = node.get("objtype"), _names(node.get("object")), node.get("comment")
        if objtype == "OBJECT_SCHEMA" and names:
            target = DbObject("comment", None, names[-1], None, text)
        elif objtype == "OBJECT_COLUMN" and len(names) >= 2:
            schema = names[-3] if len(names) >= 3 else self.schema
            target = DbObject("comment", schema, names[-1], names[-2], text)
        elif objtype in _RELATION_OBJECTS and names:
            target = DbObject("comment", *self.qualify(names), None, text)
        else:
            self.skip("comments on this kind of object are not checked")
            return
        # COMMENT ... IS NULL removes the comment: expect "no comment" rather than a text.
        self.expect(target, text is not None)

    def on_AlterTableStmt(self, node: Node) -> None:
        schema, table = self.rel(node["relation"])
        unchecked = []
        for _, cmd in map(_unwrap, node.get("cmds") or ()):
            sub = cmd.get("subtype", "")
            definition_kind, definition = _unwrap(cmd.get("def"))
            self.weak = bool(cmd.get("missing_ok"))
            if sub in ("AT_AddColumn", "AT_AddColumnToView"):
                self._column(schema, table, definition)
            elif sub == "AT_DropColumn":
                self.cascade |= cmd.get("behavior") == "DROP_CASCADE"
                self.expect(DbObject("column", schema, cmd["name"], table), False)
            elif sub == "AT_AddConstraint" and definition_kind == "Constraint" and definition.get("conname"):
                self._constraint(schema, table, definition)
            elif sub == "AT_DropConstraint":
                self.expect(DbObject("constraint", schema, cmd["name"], table), False)
            else:
                unchecked.append("unnamed constraint" if sub == "AT_AddConstraint"
                                 else _words(sub.removeprefix("AT_")))
        if unchecked:
            self.skip(f"not checked: {', '.join(unchecked)}")

    def on_AlterDomainStmt(self, node: Node) -> None:
        schema, name = self.qualify(_names(node["typeName"]))
        definition_kind, definition = _unwrap(node.get("def"))
        if node.get("subtype") == "C" and definition_kind == "Constraint" and definition.get("conname"):
            self._constraint(schema, name, definition)
        elif node.get("subtype") == "X" and node.get("name"):
            self.expect(DbObject("constraint", schema, node["name"], name), False)
        else:
            self.skip("this ALTER DOMAIN is not checked")

    def on_RenameStmt(self, node: Node) -> None:
        kind, new = node.get("renameType"), node["newname"]
        if kind in _RELATION_OBJECTS:
            schema, name = self.rel(node["relation"])
            self.rename(DbObject(_RELATION_OBJECTS[kind], schema, name),
                        DbObject(_RELATION_OBJECTS[kind], schema, new))
        elif kind in _CHILD_OBJECTS and "relation" in node:
            schema, table = self.rel(node["relation"])
            child = _CHILD_OBJECTS[kind]
            self.rename(DbObject(child, schema, node["subname"], table), DbObject(child, schema, new, table))
        elif kind == "OBJECT_SCHEMA":
            self.rename(DbObject("schema", None, node["subname"]), DbObject("schema", None, new))
        elif kind in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
            schema, name = self.qualify(_names(node.get("object")))
            type_kind = "domain" if kind == "OBJECT_DOMAIN" else "type"
            self.rename(DbObject(type_kind, schema, name), DbObject(type_kind, schema, new))
        else:
            self.skip("this rename is not checked")

    def on_AlterObjectSchemaStmt(self, node: Node) -> None:
        kind = node.get("objectType")
        if kind in _RELATION_OBJECTS and "relation" in node:
            schema, name = self.rel(node["relation"])
            self.expect(DbObject(_RELATION_OBJECTS[kind], schema, name), False)
            self.expect(DbObject(_RELATION_OBJECTS[kind], node["newschema"], name), True)
        else:
            self.skip("this SET SCHEMA is not checked")

    def on_DropStmt(self, node: Node) -> None:
        kind = node.get("removeType", "")
        self.cascade |= node.get("behavior") == "DROP_CASCADE"
        for target in node.get("objects") or ():
            obj = self._dropped(kind, *_unwrap(target))
            if obj is None:
                self.skip(f"DROP {kind.removeprefix('OBJECT_')} is not checked")
                return
            self.expect(obj, False)

    def _dropped(self, kind: str, node_kind: str, target: Node) -> DbObject | None:
        names = _names(target.get("items")) if node_kind == "List" else []
        if kind in _RELATION_OBJECTS and names:
            return DbObject(_RELATION_OBJECTS[kind], *self.qualify(names))
        if kind in ("OBJECT_TYPE", "OBJECT_DOMAIN") and node_kind == "TypeName":
            return DbObject("domain" if kind == "OBJECT_DOMAIN" else "type", *self.qualify(_names(target["names"])))
        if kind in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE") and node_kind == "ObjectWithArgs":
            schema, name = self.qualify(_names(target["objname"]))
            types = [t for _, t in map(_unwrap, target.get("objargs") or ())]
            args = None if target.get("args_unspecified") else _args_text(types)
            return DbObject("procedure" if kind == "OBJECT_PROCEDURE" else "function", schema, name, None, args)
        if kind in ("OBJECT_TRIGGER", "OBJECT_POLICY") and len(names) >= 2:
            schema, table = self.qualify(names[:-1])
            return DbObject("trigger" if kind == "OBJECT_TRIGGER" else "policy", schema, names[-1], table)
        if kind in ("OBJECT_SCHEMA", "OBJECT_EXTENSION") and node_kind == "String":
            return DbObject("schema" if kind == "OBJECT_SCHEMA" else "extension", None, target["sval"])
        return None


def net_effect(sql: str, default_schema: str) -> MigrationObjects:
    """Walk the statements in order; raises SqlSyntaxError when pglast cannot parse the text."""
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError:
        check_syntax(sql)  # raises SqlSyntaxError with the line
        raise
    extractor = _Extractor(default_schema)
    data = sql.encode()  # the JSON tree's offsets count bytes, not characters
    for raw in tree.get("stmts", ()):
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len") or len(data) - start
        chunk = data[start:start + length]
        lead = len(chunk) - len(chunk.lstrip())
        extractor.statement(raw["stmt"], data.count(b"\n", 0, start + lead) + 1, chunk.decode().strip())
    return MigrationObjects(tuple(extractor.state.values()), tuple(extractor.uncheckable), extractor.cascade)
