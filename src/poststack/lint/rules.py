"""The lint rules: what in a parse tree locks or breaks a running application, and the safer way to do it.

Each rule looks at one statement of a migration with the context of the statements before it (which
tables this migration created, whether ``lock_timeout`` was set, which NOT NULL checks are validated).
Statements on a table created earlier in the same migration are never flagged: nobody else can be using
a table that did not exist before this transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType
from pglast.visitors import Visitor


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    alternative: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("index-not-concurrent", "CREATE INDEX without CONCURRENTLY on an existing table blocks its writes",
         "CREATE INDEX CONCURRENTLY in a migration of its own marked '-- poststack:no-transaction'"),
    Rule("concurrently-in-transaction", "CONCURRENTLY cannot run inside a transaction block",
         "put the statement in a migration of its own with the header '-- poststack:no-transaction'"),
    Rule("volatile-default", "adding this column rewrites the whole table under an ACCESS EXCLUSIVE lock",
         "add the column without a default (or with a constant one), backfill in batches, then SET DEFAULT"),
    Rule("set-not-null", "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
         "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later migration, "
         "then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the check"),
    Rule("constraint-not-valid", "adding a validated constraint scans the table while blocking writes",
         "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later migration (weaker lock)"),
    Rule("column-type-change", "changing a column's type usually rewrites the table and breaks running code",
         "add a new column, backfill it, switch the application, then drop the old column"),
    Rule("rename-column", "renaming a column breaks every running query that uses the old name",
         "add the new column (or a view), deploy code that uses it, and drop the old one later"),
    Rule("rename-table", "renaming a table breaks every running query that uses the old name",
         "create the new table or a view under the new name, switch the application, then drop the old"),
    Rule("drop-column", "dropping a column breaks running code that still reads or writes it",
         "stop using the column in a release first, then drop it in a later migration"),
    Rule("drop-table", "dropping a table breaks running code that still uses it, and loses its data",
         "stop using the table in a release first, then drop it in a later migration"),
    Rule("missing-lock-timeout", "a strong lock request waits forever and queues every query behind it",
         "start the migration with SET lock_timeout = '5s' (and retry on failure)"),
    Rule("syntax-error", "the file does not parse", "fix the SQL"),
    Rule("unknown-rule", "a lint-ignore comment names a rule that does not exist",
         "use a rule id listed by 'poststack db lint --rules'"),
)}

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


@dataclass(frozen=True)
class Hit:
    rule: str
    line: int
    message: str


@dataclass
class NotNullChecks:
    """NOT NULL checks seen so far, across migrations: the safe SET NOT NULL spans three of them."""

    validated: set[tuple[str, str]] = field(default_factory=set)  # (table name, column)
    not_valid: dict[tuple[str, str], str] = field(default_factory=dict)  # (table name, constraint) -> column


@dataclass
class MigrationContext:
    """What the statements of one migration so far have done."""

    no_transaction: bool
    checks: NotNullChecks = field(default_factory=NotNullChecks)
    created: set[tuple[str | None, str]] = field(default_factory=set)
    lock_timeout_set: bool = False
    lock_timeout_reported: bool = False

    def is_new(self, relation: ast.RangeVar | None) -> bool:
        if relation is None:
            return False
        return any(name == relation.relname and (schema is None or relation.schemaname is None
                                                 or schema == relation.schemaname)
                   for schema, name in self.created)


def display(relation: ast.RangeVar) -> str:
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else str(relation.relname)


def check_statement(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    """All findings for one statement, updating ``ctx`` with what the statement does."""
    hits: list[Hit] = []
    if isinstance(stmt, ast.VariableSetStmt) and stmt.name == "lock_timeout":
        ctx.lock_timeout_set = _nonzero_setting(stmt)
    elif isinstance(stmt, ast.SelectStmt) and _sets_lock_timeout(stmt):
        ctx.lock_timeout_set = True
    elif isinstance(stmt, ast.CreateStmt | ast.CreateTableAsStmt):
        relation = stmt.relation if isinstance(stmt, ast.CreateStmt) else stmt.into.rel
        ctx.created.add((relation.schemaname, relation.relname))
    elif isinstance(stmt, ast.IndexStmt):
        hits += _index(stmt, line, ctx)
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        hits += _alter_table(stmt, line, ctx)
    elif isinstance(stmt, ast.RenameStmt):
        hits += _rename(stmt, line, ctx)
    elif isinstance(stmt, ast.DropStmt):
        hits += _drop(stmt, line, ctx)
    hits += _concurrently(stmt, line, ctx)
    strong = _strongly_locked(stmt, ctx)
    if strong and not ctx.lock_timeout_set and not ctx.lock_timeout_reported:
        ctx.lock_timeout_reported = True
        hits.append(Hit("missing-lock-timeout", line,
                        f"takes a strong lock on existing table {strong} without SET lock_timeout first"))
    return hits


def _nonzero_setting(stmt: ast.VariableSetStmt) -> bool:
    args = stmt.args or ()
    if not args or not isinstance(args[0], ast.A_Const) or args[0].isnull:
        return False  # SET lock_timeout TO DEFAULT / RESET: back to the server default (usually 0)
    value = args[0].val
    text = str(getattr(value, "sval", getattr(value, "ival", "0")))
    return text.strip() not in ("0", "0s", "0ms")


def _sets_lock_timeout(stmt: ast.SelectStmt) -> bool:
    finder = _FunctionNames()
    finder(stmt)
    return any(name == "set_config" and first == "lock_timeout" for name, first in finder.calls)


class _FunctionNames(Visitor):
    """Collects called function names (last part) with their first argument when it is a string."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
        name = node.funcname[-1].sval.lower()
        first = node.args[0] if node.args else None
        text = first.val.sval if isinstance(first, ast.A_Const) and isinstance(first.val, ast.String) else None
        self.calls.append((name, text))


def _index(stmt: ast.IndexStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    if stmt.concurrent or ctx.is_new(stmt.relation):
        return []
    name = f"index {stmt.idxname}" if stmt.idxname else "an index"
    return [Hit("index-not-concurrent", line,
                f"creates {name} on existing table {display(stmt.relation)} without CONCURRENTLY: "
                "writes to it wait until the index is built")]


def _concurrently(stmt: ast.Node, line: int, ctx: MigrationContext) -> list[Hit]:
    if ctx.no_transaction:
        return []
    concurrent = (
        (isinstance(stmt, ast.IndexStmt | ast.DropStmt) and stmt.concurrent)
        or (isinstance(stmt, ast.ReindexStmt)
            and any(p.defname == "concurrently" for p in stmt.params or ()))
        or (isinstance(stmt, ast.AlterTableStmt)
            and any(isinstance(c.def_, ast.PartitionCmd) and c.def_.concurrent for c in stmt.cmds or ())))
    if not concurrent:
        return []
    return [Hit("concurrently-in-transaction", line,
                "CONCURRENTLY fails inside the transaction poststack wraps this migration in")]


def _alter_table(stmt: ast.AlterTableStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    table = display(stmt.relation)
    checks, key = ctx.checks, str(stmt.relation.relname)
    new = ctx.is_new(stmt.relation)
    hits = []
    for cmd in stmt.cmds or ():
        kind = cmd.subtype
        if kind == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            _remember_not_null_check(cmd.def_, key, checks)
            if not new:
                hits += _added_constraint(cmd.def_, table, line)
        elif kind == AlterTableType.AT_ValidateConstraint:
            column = checks.not_valid.pop((key, cmd.name), None)
            if column:
                checks.validated.add((key, column))
        if new:
            continue
        if kind == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            reason = _rewrite_reason(cmd.def_)
            if reason:
                hits.append(Hit("volatile-default", line, f"adds column {table}.{cmd.def_.colname} {reason}"))
        elif kind == AlterTableType.AT_SetNotNull and (key, cmd.name) not in checks.validated:
            hits.append(Hit("set-not-null", line, f"SET NOT NULL on {table}.{cmd.name} without a validated "
                                                  f"CHECK ({cmd.name} IS NOT NULL) scans the table"))
        elif kind == AlterTableType.AT_AlterColumnType:
            hits.append(Hit("column-type-change", line, f"changes the type of {table}.{cmd.name}"))
        elif kind == AlterTableType.AT_DropColumn:
            hits.append(Hit("drop-column", line, f"drops column {table}.{cmd.name}"))
    return hits


def _remember_not_null_check(con: ast.Constraint, table: str, checks: NotNullChecks) -> None:
    """A CHECK (col IS NOT NULL) or (PostgreSQL 18) NOT NULL constraint: validated now or pending."""
    column = None
    if con.contype == ConstrType.CONSTR_CHECK and isinstance(con.raw_expr, ast.NullTest):
        arg = con.raw_expr.arg
        if (con.raw_expr.nulltesttype == NullTestType.IS_NOT_NULL and isinstance(arg, ast.ColumnRef)
                and len(arg.fields) == 1 and isinstance(arg.fields[0], ast.String)):
            column = arg.fields[0].sval
    elif con.contype == ConstrType.CONSTR_NOTNULL and con.keys and len(con.keys) == 1:
        column = con.keys[0].sval
    if column is None:
        return
    if con.skip_validation:
        checks.not_valid[(table, con.conname or "")] = column
    else:
        checks.validated.add((table, column))


def _added_constraint(con: ast.Constraint, table: str, line: int) -> list[Hit]:
    kinds = {ConstrType.CONSTR_FOREIGN: "foreign key", ConstrType.CONSTR_CHECK: "check constraint"}
    if con.contype not in kinds or con.skip_validation:
        return []
    name = f" {con.conname}" if con.conname else ""
    return [Hit("constraint-not-valid", line,
                f"adds {kinds[con.contype]}{name} to {table} without NOT VALID: every row is checked while "
                "writes are blocked")]


def _rewrite_reason(column: ast.ColumnDef) -> str | None:
    type_name = column.typeName.names[-1].sval.lower() if column.typeName else ""
    if type_name in SERIAL_TYPES:
        return f"of type {type_name}: its nextval() default is computed for every row (table rewrite)"
    for con in column.constraints or ():
        if con.contype == ConstrType.CONSTR_IDENTITY:
            return "as an identity column: every row gets a value (table rewrite)"
        if con.contype == ConstrType.CONSTR_GENERATED and con.generated_kind == "s":
            return "as a stored generated column: every row is computed (table rewrite)"
        if con.contype == ConstrType.CONSTR_DEFAULT and con.raw_expr is not None:
            finder = _FunctionNames()
            finder(con.raw_expr)
            known = [name for name, _ in finder.calls if name in KNOWN_VOLATILE]
            if known:
                return f"with a default calling {known[0]}(), which is volatile: the table is rewritten"
            unknown = [name for name, _ in finder.calls if name not in NON_VOLATILE]
            if unknown:
                return (f"with a default calling {unknown[0]}(), which may be volatile (functions are unless "
                        "declared STABLE or IMMUTABLE): the table would be rewritten")
    return None


def _rename(stmt: ast.RenameStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    if stmt.relation is None or ctx.is_new(stmt.relation):
        return []
    table = display(stmt.relation)
    if stmt.renameType == ObjectType.OBJECT_COLUMN and stmt.relationType == ObjectType.OBJECT_TABLE:
        return [Hit("rename-column", line, f"renames column {table}.{stmt.subname} to {stmt.newname}")]
    if stmt.renameType == ObjectType.OBJECT_TABLE:
        return [Hit("rename-table", line, f"renames table {table} to {stmt.newname}")]
    return []


def _drop(stmt: ast.DropStmt, line: int, ctx: MigrationContext) -> list[Hit]:
    if stmt.removeType != ObjectType.OBJECT_TABLE:
        return []
    hits = []
    for parts in stmt.objects or ():
        names = [p.sval for p in parts]
        relation = ast.RangeVar(schemaname=names[-2] if len(names) > 1 else None, relname=names[-1])
        if not ctx.is_new(relation):
            hits.append(Hit("drop-table", line, f"drops table {display(relation)}"))
    return hits


# ALTER TABLE subcommands that take less than a ShareLock (they do not block reads or writes).
_WEAK_ALTERS = frozenset({AlterTableType.AT_ValidateConstraint, AlterTableType.AT_SetStatistics,
                          AlterTableType.AT_ClusterOn, AlterTableType.AT_SetRelOptions})


def _strongly_locked(stmt: ast.Node, ctx: MigrationContext) -> str | None:
    """The existing table this statement takes a ShareLock or stronger on, if any."""
    relations: list[ast.RangeVar] = []
    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        if any(cmd.subtype not in _WEAK_ALTERS for cmd in stmt.cmds or ()):
            relations.append(stmt.relation)
    elif ((isinstance(stmt, ast.IndexStmt) and not stmt.concurrent)
          or (isinstance(stmt, ast.RenameStmt | ast.CreateTrigStmt) and stmt.relation is not None)):
        relations.append(stmt.relation)
    elif isinstance(stmt, ast.LockStmt | ast.TruncateStmt):
        relations.extend(stmt.relations or ())
    elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
        for parts in stmt.objects or ():
            names = [p.sval for p in parts]
            relations.append(ast.RangeVar(schemaname=names[-2] if len(names) > 1 else None, relname=names[-1]))
    existing = [r for r in relations if not ctx.is_new(r)]
    return display(existing[0]) if existing else None
