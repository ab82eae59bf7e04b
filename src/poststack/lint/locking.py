"""Rules about locks and rewrites: statements that make a running application wait.

Each check looks at one statement with the context of the statements before it. Statements on a relation
created earlier in the same migration (or batch) are never flagged: nobody else can be using it.
"""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType
from pglast.visitors import Visitor

from poststack.lint.context import MigrationContext, NotNullChecks, display, range_var
from poststack.lint.rules import Hit
from poststack.source.sqltext import required

# Functions whose result does not change row by row (stable or immutable), common in column defaults.
# Anything else is treated as possibly volatile: CREATE FUNCTION defaults to VOLATILE.
NON_VOLATILE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_setting", "current_database",
    "lower", "upper", "btrim", "trim", "concat", "length", "md5", "to_jsonb", "to_json", "jsonb_build_object",
    "json_build_object", "jsonb_build_array", "json_build_array", "make_interval", "make_date", "to_timestamp",
    "to_date", "array_fill", "int4range", "int8range", "tstzrange", "daterange", "numrange", "tsrange",
})
KNOWN_VOLATILE = frozenset({"random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc",
                            "uuid_generate_v4", "uuidv4", "uuidv7", "clock_timestamp", "timeofday", "nextval",
                            "txid_current", "random_normal"})
SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})
_REWRITING_ALTERS = {AlterTableType.AT_SetTableSpace: "SET TABLESPACE", AlterTableType.AT_SetLogged: "SET LOGGED",
                     AlterTableType.AT_SetUnLogged: "SET UNLOGGED", AlterTableType.AT_SetAccessMethod:
                     "SET ACCESS METHOD"}
_INDEX_CONSTRAINTS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE",
                      ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}


def setting(stmt: ast.Node, name: str) -> bool | None:
    """True/False when ``stmt`` sets ``name`` to a non-zero / zero value; None when it does not set it."""
    if isinstance(stmt, ast.VariableSetStmt) and stmt.name == name:
        return _nonzero_setting(stmt)
    if isinstance(stmt, ast.SelectStmt):
        finder = FunctionNames()
        finder(stmt)
        if any(fn == "set_config" and first == name for fn, first in finder.calls):
            return True
    return None


def _nonzero_setting(stmt: ast.VariableSetStmt) -> bool:
    args = stmt.args or ()
    if not args or not isinstance(args[0], ast.A_Const) or args[0].isnull:
        return False  # SET x TO DEFAULT / RESET: back to the server default (usually 0)
    value = args[0].val
    text = str(getattr(value, "sval", getattr(value, "ival", "0")))
    return text.strip() not in ("0", "0s", "0ms")


class FunctionNames(Visitor):
    """Collects called function names (last part) with their first argument when it is a string."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
        name = required(node.funcname)[-1].sval.lower()
        first = node.args[0] if node.args else None
        text = first.val.sval if isinstance(first, ast.A_Const) and isinstance(first.val, ast.String) else None
        self.calls.append((name, text))


def index(stmt: ast.IndexStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    if stmt.concurrent or ctx.is_new(stmt.relation):
        return []
    name = f"index {stmt.idxname}" if stmt.idxname else "an index"
    table = display(required(stmt.relation))
    return [Hit("index-not-concurrent", line, f"creates {name} on existing table {table} without CONCURRENTLY: "
                "writes to it wait until the index is built", table)]


def concurrently(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    if ctx.no_transaction:
        return []
    concurrent = (
        (isinstance(stmt, ast.IndexStmt | ast.DropStmt) and stmt.concurrent)
        or (isinstance(stmt, ast.ReindexStmt) and any(p.defname == "concurrently" for p in stmt.params or ()))
        or (isinstance(stmt, ast.AlterTableStmt)
            and any(isinstance(c.def_, ast.PartitionCmd) and c.def_.concurrent for c in stmt.cmds or ())))
    if not concurrent:
        return []
    return [Hit("concurrently-in-transaction", line,
                "CONCURRENTLY fails inside the transaction poststack wraps this file in")]


def alter_table_locks(cmd: ast.AlterTableCmd, table: str, key: str, line: int, new: bool,
                      checks: NotNullChecks) -> list[Hit]:
    """The lock rules of one ALTER TABLE subcommand (NOT NULL checks are remembered even on new tables)."""
    kind, hits = cmd.subtype, []
    if kind == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        _remember_not_null_check(cmd.def_, key, checks)
        if not new:
            hits += added_constraint(cmd.def_, table, line)
    elif kind == AlterTableType.AT_ValidateConstraint:
        column = checks.not_valid.pop((key, required(cmd.name)), None)
        if column:
            checks.validated.add((key, column))
    if new:
        return hits
    if kind == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        reason = _rewrite_reason(cmd.def_)
        if reason:
            hits.append(Hit("volatile-default", line, f"adds column {table}.{cmd.def_.colname} {reason}", table))
        for con in cmd.def_.constraints or ():
            hits += added_constraint(con, table, line, column=cmd.def_.colname)
    elif kind == AlterTableType.AT_SetNotNull and (key, cmd.name) not in checks.validated:
        hits.append(Hit("set-not-null", line, f"SET NOT NULL on {table}.{cmd.name} without a validated "
                                              f"CHECK ({cmd.name} IS NOT NULL) scans the table", table))
    elif kind == AlterTableType.AT_AlterColumnType:
        hits.append(Hit("column-type-change", line, f"changes the type of {table}.{cmd.name}", table))
    elif kind in _REWRITING_ALTERS:
        hits.append(Hit("rewrites-table", line, f"{_REWRITING_ALTERS[kind]} rewrites {table}", table))
    elif kind == AlterTableType.AT_DetachPartition and isinstance(cmd.def_, ast.PartitionCmd) \
            and not cmd.def_.concurrent:
        hits.append(Hit("detach-partition-not-concurrent", line,
                        f"detaches {display(required(cmd.def_.name))} from {table} under ACCESS EXCLUSIVE", table))
    return hits


def _remember_not_null_check(con: ast.Constraint, table: str, checks: NotNullChecks) -> None:
    """A CHECK (col IS NOT NULL) or (PostgreSQL 18) NOT NULL constraint: validated now or pending."""
    column = None
    if con.contype == ConstrType.CONSTR_CHECK and isinstance(con.raw_expr, ast.NullTest):
        arg = con.raw_expr.arg
        fields = required(arg.fields) if isinstance(arg, ast.ColumnRef) else ()
        if (con.raw_expr.nulltesttype == NullTestType.IS_NOT_NULL and len(fields) == 1
                and isinstance(fields[0], ast.String)):
            column = fields[0].sval
    elif con.contype == ConstrType.CONSTR_NOTNULL and con.keys and len(con.keys) == 1:
        column = con.keys[0].sval
    if column is None:
        return
    if con.skip_validation:
        checks.not_valid[(table, con.conname or "")] = column
    else:
        checks.validated.add((table, column))


def added_constraint(con: ast.Constraint, table: str, line: int, *, column: str | None = None) -> list[Hit]:
    """A constraint added to an existing table (table-level, or on a column ADD COLUMN adds)."""
    name = f" {con.conname}" if con.conname else ""
    if con.contype in _INDEX_CONSTRAINTS and not con.indexname:  # a new column's UNIQUE builds one too
        return [Hit("constraint-builds-index", line,
                    f"adds {_INDEX_CONSTRAINTS[con.contype]}{name} to {table}: its index is built while reads "
                    "and writes wait", table)]
    kinds = {ConstrType.CONSTR_FOREIGN: "foreign key", ConstrType.CONSTR_CHECK: "check constraint"}
    if con.contype not in kinds or con.skip_validation:
        return []
    if column is not None and con.contype == ConstrType.CONSTR_CHECK:
        return []  # a CHECK on a column being added: its rows are all NULL/default, checked with the add
    on = f" on new column {column}" if column else ""
    return [Hit("constraint-not-valid", line,
                f"adds {kinds[con.contype]}{name}{on} to {table} without NOT VALID: every row is checked while "
                "writes are blocked", table)]


def _rewrite_reason(column: ast.ColumnDef) -> str | None:
    type_name = required(column.typeName.names)[-1].sval.lower() if column.typeName else ""
    if type_name in SERIAL_TYPES:
        return f"of type {type_name}: its nextval() default is computed for every row (table rewrite)"
    for con in column.constraints or ():
        if con.contype == ConstrType.CONSTR_IDENTITY:
            return "as an identity column: every row gets a value (table rewrite)"
        if con.contype == ConstrType.CONSTR_GENERATED and con.generated_kind == "s":
            return "as a stored generated column: every row is computed (table rewrite)"
        if con.contype == ConstrType.CONSTR_DEFAULT and con.raw_expr is not None:
            finder = FunctionNames()
            finder(con.raw_expr)
            known = [name for name, _ in finder.calls if name in KNOWN_VOLATILE]
            if known:
                return f"with a default calling {known[0]}(), which is volatile: the table is rewritten"
            unknown = [name for name, _ in finder.calls if name not in NON_VOLATILE]
            if unknown:
                return (f"with a default calling {unknown[0]}(), which may be volatile (functions are unless "
                        "declared STABLE or IMMUTABLE): the table would be rewritten")
    return None


def maintenance(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    """DROP INDEX, REINDEX, REFRESH MATERIALIZED VIEW, VACUUM FULL, CLUSTER, UPDATE/DELETE of every row."""
    if isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_INDEX and not stmt.concurrent:
        existing = [display(r) for r in map(range_var, stmt.objects or ()) if not ctx.is_new(r)]
        if existing:
            return [Hit("drop-index-not-concurrent", line, f"drops index {', '.join(existing)} without "
                        "CONCURRENTLY: its table is locked against reads and writes", existing[0])]
    elif isinstance(stmt, ast.ReindexStmt) and not any(p.defname == "concurrently" for p in stmt.params or ()):
        target = display(stmt.relation) if stmt.relation is not None else (stmt.name or "")
        if stmt.relation is None or not ctx.is_new(stmt.relation):
            return [Hit("reindex-not-concurrent", line, f"REINDEX of {target} without CONCURRENTLY",
                        target if stmt.relation is not None else None)]
    elif isinstance(stmt, ast.RefreshMatViewStmt) and not stmt.concurrent and not ctx.is_new(stmt.relation):
        view = display(required(stmt.relation))
        return [Hit("refresh-matview-not-concurrent", line, f"refreshes {view} under ACCESS EXCLUSIVE", view)]
    elif isinstance(stmt, ast.VacuumStmt) and stmt.is_vacuumcmd \
            and any(o.defname == "full" and _true_option(o) for o in stmt.options or ()):
        tables = [display(v.relation) for v in stmt.rels or () if not ctx.is_new(v.relation)]
        if tables or not stmt.rels:
            return [Hit("rewrites-table", line, f"VACUUM FULL rewrites {', '.join(tables) or 'every table'}",
                        tables[0] if tables else None)]
    elif isinstance(stmt, ast.ClusterStmt) and (stmt.relation is None or not ctx.is_new(stmt.relation)):
        table = display(stmt.relation) if stmt.relation is not None else None
        return [Hit("rewrites-table", line, f"CLUSTER rewrites {table or 'every clustered table'}", table)]
    elif isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt) and stmt.whereClause is None \
            and not ctx.is_new(stmt.relation) and not ctx.no_transaction:
        table, verb = display(required(stmt.relation)), "updates" if isinstance(stmt, ast.UpdateStmt) else "deletes"
        return [Hit("write-without-where", line, f"{verb} every row of {table} in the migration's transaction",
                    table)]
    elif isinstance(stmt, ast.AlterDomainStmt) and stmt.subtype == "C" and isinstance(stmt.def_, ast.Constraint) \
            and not stmt.def_.skip_validation:
        domain = ".".join(n.sval for n in required(stmt.typeName))
        return [Hit("domain-constraint", line, f"adds a constraint to domain {domain}: every column of that "
                    "type is checked under lock")]
    elif isinstance(stmt, ast.CreateDomainStmt) and any(c.contype == ConstrType.CONSTR_CHECK
                                                        for c in stmt.constraints or ()):
        domain = ".".join(n.sval for n in required(stmt.domainname))
        return [Hit("domain-constraint", line, f"creates domain {domain} with a CHECK constraint")]
    return []


def _true_option(option: ast.DefElem) -> bool:
    arg = option.arg
    if isinstance(arg, ast.String):
        return required(arg.sval).lower() not in ("false", "off", "0")
    if isinstance(arg, ast.Integer):
        return arg.ival != 0
    return True


# ALTER TABLE subcommands that take less than a ShareLock (they do not block reads or writes).
_WEAK_ALTERS = frozenset({AlterTableType.AT_ValidateConstraint, AlterTableType.AT_SetStatistics,
                          AlterTableType.AT_ClusterOn, AlterTableType.AT_SetRelOptions})


def strongly_locked(stmt: ast.Node, ctx: MigrationContext) -> str | None:
    """The existing table this statement takes a ShareLock or stronger on, if any."""
    relations: list[ast.RangeVar] = []
    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        if any(cmd.subtype not in _WEAK_ALTERS for cmd in stmt.cmds or ()):
            relations.append(required(stmt.relation))
    elif ((isinstance(stmt, ast.IndexStmt) and not stmt.concurrent)
          or (isinstance(stmt, ast.RenameStmt | ast.CreateTrigStmt | ast.RefreshMatViewStmt)
              and stmt.relation is not None and not getattr(stmt, "concurrent", False))
          or (isinstance(stmt, ast.ClusterStmt) and stmt.relation is not None)):
        relations.append(required(stmt.relation))
    elif isinstance(stmt, ast.LockStmt | ast.TruncateStmt):
        relations.extend(stmt.relations or ())
    elif isinstance(stmt, ast.VacuumStmt) and any(o.defname == "full" for o in stmt.options or ()):
        relations.extend(v.relation for v in stmt.rels or ())
    elif isinstance(stmt, ast.DropStmt) and stmt.removeType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_INDEX) \
            and not stmt.concurrent:
        relations.extend(range_var(parts) for parts in stmt.objects or ())
    existing = [r for r in relations if not ctx.is_new(r)]
    return display(existing[0]) if existing else None


def timeouts(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    """missing-lock-timeout / missing-statement-timeout, once per file, at the first strong lock."""
    for name, attr in (("lock_timeout", "lock_timeout_set"), ("statement_timeout", "statement_timeout_set")):
        value = setting(stmt, name)
        if value is not None:
            setattr(ctx, attr, value)
    strong = strongly_locked(stmt, ctx)
    if not strong:
        return []
    hits = []
    if not ctx.lock_timeout_set and not ctx.lock_timeout_reported:
        ctx.lock_timeout_reported = True
        hits.append(Hit("missing-lock-timeout", line,
                        f"takes a strong lock on existing table {strong} without SET lock_timeout first", strong))
    if not ctx.statement_timeout_set and not ctx.statement_timeout_reported:
        ctx.statement_timeout_reported = True
        hits.append(Hit("missing-statement-timeout", line,
                        f"takes a strong lock on existing table {strong} without SET statement_timeout first",
                        strong))
    return hits
