"""What a statement of a non-transactional file is, for running and resuming it: whether it may run in a
transaction block, whether it opens or ends the file's own block, and what the catalog says about the index
a CREATE INDEX CONCURRENTLY builds or a DROP INDEX CONCURRENTLY removes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from poststack.source.sqltext import Statement, required

if TYPE_CHECKING:
    from pglast import ast

# Statements PostgreSQL refuses inside a transaction block (or that must be free to commit, as CALL and DO
# may). Anything else missed here is found by its error (25001) and run alone.
ALONE_KINDS = frozenset({"VacuumStmt", "ReindexStmt", "ClusterStmt", "CallStmt", "DoStmt", "CreatedbStmt",
                          "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt",
                          "CreateSubscriptionStmt", "DropSubscriptionStmt", "AlterSubscriptionStmt",
                          "AlterDatabaseStmt"})
# Of those, the ones that can simply run again after a crash left their outcome unknown.
REPEATABLE_KINDS = frozenset({"VacuumStmt", "ReindexStmt", "ClusterStmt", "AlterSystemStmt"})


def node(statement: Statement) -> ast.Node:
    from pglast import parser
    from pglast.ast import RawStmt

    raw = parser.parse_sql(statement.text)[0]
    assert isinstance(raw, RawStmt)
    return required(raw.stmt)


def is_concurrent_index(st: Statement) -> bool:
    return st.kind == "IndexStmt" and bool(getattr(node(st), "concurrent", False))


def is_concurrent_drop(st: Statement) -> bool:
    return st.kind == "DropStmt" and bool(getattr(node(st), "concurrent", False))


def runs_alone(st: Statement) -> bool:
    return st.kind in ALONE_KINDS or is_concurrent_index(st) or is_concurrent_drop(st)


def transaction_word(st: Statement) -> str | None:
    """'begin', 'commit' or 'rollback' for a statement that opens or ends the file's own block."""
    if st.kind != "TransactionStmt":
        return None
    words = st.text.lower().split()
    first = words[0] if words else ""
    if first in ("begin", "start"):
        return "begin"
    if first in ("commit", "end") and "prepared" not in words[1:2]:
        return "commit"
    if first in ("rollback", "abort") and not {"to", "prepared"} & set(words[1:3]):
        return "rollback"
    return None


# -- what the catalog says about a statement whose outcome the record cannot tell ---------------------------

def index_target(st: Statement) -> tuple[str, str] | None:
    """(table as text for to_regclass, index name) of a named CREATE INDEX CONCURRENTLY, else None."""
    if not is_concurrent_index(st):
        return None
    from pglast import ast

    parsed = node(st)
    assert isinstance(parsed, ast.IndexStmt)  # is_concurrent_index read its kind
    if not parsed.idxname:
        return None
    rel = required(parsed.relation)
    parts = [p for p in (rel.catalogname, rel.schemaname, rel.relname) if p]
    return ".".join(sql.Identifier(p).as_string(None) for p in parts), parsed.idxname


def index_state(conn: psycopg.Connection[Any], st: Statement) -> tuple[str, tuple[str, str]] | None:
    """("valid" | "invalid" | "absent", (schema, name)) for a named CREATE INDEX CONCURRENTLY, else None."""
    target = index_target(st)
    if target is None:
        return None
    table, name = target
    row = conn.execute(
        "SELECT i.indisvalid, n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE c.relname = %s AND c.relnamespace = "
        "(SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%s))", [name, table]).fetchone()
    if row is None:
        return "absent", ("", name)
    return ("valid" if row[0] else "invalid"), (row[1], row[2])


def left_index(conn: psycopg.Connection[Any], st: Statement) -> str | None:
    state = index_state(conn, st)
    return ".".join(state[1]) if state and state[0] == "invalid" else None


def dropped_all(conn: psycopg.Connection[Any], st: Statement) -> bool:
    """Whether every index a DROP INDEX CONCURRENTLY names is gone (resolved on the current search_path)."""
    from pglast import ast

    parsed = node(st)
    assert isinstance(parsed, ast.DropStmt)  # callers ask only of a DROP INDEX CONCURRENTLY
    names = [".".join(sql.Identifier(p.sval).as_string(None) for p in obj) for obj in required(parsed.objects)]
    for name in names:
        row = conn.execute("SELECT to_regclass(%s) IS NULL", [name]).fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        if not row[0]:
            return False
    return True
