"""What a CHECK constraint asks of one column, read from PostgreSQL's own deparse of it (pglast).

The filler satisfies the common shapes of CHECK constraints: bounds (``price > 0``, ``qty BETWEEN 1 AND
9``, ``0 <= pct``), lists (``status IN ('a', 'b')``, which PostgreSQL stores as ``= ANY (ARRAY[...])``),
equality, and length limits (``length(code) <= 8``), joined by AND. Anything else is left to the
server: the INSERT fails naming the constraint, and the filler says which one it could not satisfy.
Domain constraints are read the same way, with ``VALUE`` as the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pglast import ast, parse_sql
from pglast import parser as pg_parser
from pglast.enums import A_Expr_Kind, BoolExprType

from poststack.source.sqltext import required

Constant = int | Decimal | str | bool
# One side of an A_Expr: an expression node, or (IN lists, BETWEEN bounds) a tuple of them.
Operand = ast.Node | tuple[Any, ...] | None


@dataclass
class ColumnRule:
    """Bounds, allowed values and a length limit for one column (None: no such limit)."""

    low: Decimal | None = None
    high: Decimal | None = None
    choices: list[Constant] | None = None
    max_length: int | None = None
    notes: list[str] = field(default_factory=list)

    def bound(self, op: str, value: Decimal) -> None:
        step = Decimal(1)
        if op in (">", ">="):
            candidate = value + step if op == ">" else value
            self.low = candidate if self.low is None else max(self.low, candidate)
        elif op in ("<", "<="):
            candidate = value - step if op == "<" else value
            self.high = candidate if self.high is None else min(self.high, candidate)

    def allow(self, values: list[Constant]) -> None:
        self.choices = values if self.choices is None else [v for v in self.choices if v in values]


def rules_for(expressions: list[str], value_name: str | None = None) -> dict[str, ColumnRule]:
    """Per column (or ``value_name`` for a domain's VALUE), what the CHECK expressions require."""
    rules: dict[str, ColumnRule] = {}
    for text in expressions:
        try:
            select = parse_sql(f"SELECT {text}")[0].stmt
        except pg_parser.ParseError:  # an expression pglast cannot read is left to the server
            continue
        assert isinstance(select, ast.SelectStmt)
        node = required(select.targetList)[0].val
        for conjunct in _conjuncts(node):
            _read(conjunct, rules, value_name)
    return rules


def _conjuncts(node: ast.Node) -> list[ast.Node]:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return [part for arg in required(node.args) for part in _conjuncts(arg)]
    return [node]


def _strip(node: Operand) -> Operand:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _column(node: Operand, value_name: str | None) -> str | None:
    node = _strip(node)
    fields = required(node.fields) if isinstance(node, ast.ColumnRef) else ()
    if len(fields) == 1 and isinstance(fields[0], ast.String):
        name = fields[0].sval
        return value_name if value_name is not None and name == "value" else name
    if isinstance(node, ast.CoerceToDomainValue) and value_name is not None:
        return value_name
    return None


def _constant(node: Operand) -> Constant | None:
    node = _strip(node)
    if isinstance(node, ast.A_Expr) and node.kind == A_Expr_Kind.AEXPR_OP and node.lexpr is None \
            and required(node.name)[-1].sval == "-":
        inner = _constant(node.rexpr)
        return -inner if isinstance(inner, int | Decimal) and not isinstance(inner, bool) else None
    if not isinstance(node, ast.A_Const) or node.isnull:
        return None
    value = node.val
    if isinstance(value, ast.Integer):
        return int(required(value.ival))
    if isinstance(value, ast.Float):
        return Decimal(required(value.fval))
    if isinstance(value, ast.Boolean):
        return bool(value.boolval)
    if isinstance(value, ast.String):
        return value.sval
    return None


def _number(value: Constant | None) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, ValueError):
        return None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


def _read(node: ast.Node, rules: dict[str, ColumnRule], value_name: str | None) -> None:
    if not isinstance(node, ast.A_Expr):
        return
    op = node.name[-1].sval if node.name else ""
    if node.kind == A_Expr_Kind.AEXPR_OP and op in _FLIP:
        column, other, side_op = _column(node.lexpr, value_name), node.rexpr, op
        if column is None:
            column, other, side_op = _column(node.rexpr, value_name), node.lexpr, _FLIP[op]
        if column is not None:
            if _constant(other) is not None:  # col > other_col is left to the server (and to column order)
                _compare(rules.setdefault(column, ColumnRule()), side_op, other)
            return
        length = _length_of(node.lexpr, value_name)
        limit = _number(_constant(node.rexpr))
        if length is not None and limit is not None and op in ("<", "<="):
            rule = rules.setdefault(length, ColumnRule())
            maximum = int(limit) - (1 if op == "<" else 0)
            rule.max_length = maximum if rule.max_length is None else min(rule.max_length, maximum)
    elif node.kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_IN) and op == "=":
        column = _column(node.lexpr, value_name)
        items = _strip(node.rexpr)
        elements = items.elements if isinstance(items, ast.A_ArrayExpr) else items
        if column is not None and isinstance(elements, tuple | list):
            values = [_constant(e) for e in elements]
            constants = [v for v in values if v is not None]
            if values and len(constants) == len(values):
                rules.setdefault(column, ColumnRule()).allow(constants)
    elif node.kind == A_Expr_Kind.AEXPR_BETWEEN:
        column = _column(node.lexpr, value_name)
        if column is not None and isinstance(node.rexpr, tuple | list) and len(node.rexpr) == 2:
            rule = rules.setdefault(column, ColumnRule())
            _compare(rule, ">=", node.rexpr[0])
            _compare(rule, "<=", node.rexpr[1])


def _compare(rule: ColumnRule, op: str, other: Operand) -> None:
    value = _constant(other)
    if op == "=" and value is not None:
        rule.allow([value])
        return
    number = _number(value)
    if number is not None:
        rule.bound(op, number)


def _length_of(node: Operand, value_name: str | None) -> str | None:
    node = _strip(node)
    if isinstance(node, ast.FuncCall) \
            and required(node.funcname)[-1].sval in ("length", "char_length", "octet_length") \
            and node.args and len(node.args) == 1:
        return _column(node.args[0], value_name)
    return None
