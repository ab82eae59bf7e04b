"""What a migration leaves behind in the catalog, read from pglast parse trees: the evidence model.

``extract(sql)`` walks a migration's statements in order and keeps their *net* effect: an object created
and dropped again in the same file is expected absent, a table created and renamed is expected under its
new name. ``DROP`` gives "expected absent" objects. Statements whose effect the catalog cannot show
(INSERT, UPDATE, DO blocks, GRANT, ALTER COLUMN TYPE...) are listed as uncheckable, never dropped silently:
recovery must know when it has no evidence, not mistake silence for proof.

Name resolution rule (documented in README/DESIGN): an unqualified name belongs to the first schema of the
latest ``SET search_path`` in the same migration (skipping ``"$user"``, ``pg_catalog`` and ``pg_temp``),
else to ``public`` (or the ``default_schema`` given). ``RESET search_path`` / ``SET search_path TO DEFAULT``
return to the default. Nested ``CREATE SCHEMA s CREATE TABLE t ...`` elements belong to ``s``. References are
resolved the same way as creations (the server would search the whole path; we do not guess further).

Functions and procedures are identified by schema, name and input argument types as pglast prints them
(``integer, varchar``; type modifiers dropped as PostgreSQL ignores them); the catalog resolves them exactly
with ``to_regprocedure``. ``DROP FUNCTION f`` without an argument list, or an argument declared with
``%TYPE``, matches every overload of that name.
"""

from __future__ import annotations

from functools import lru_cache

from poststack.source.object_model import (
    KINDS,
    RELATION_KINDS,
    ROUTINE_KINDS,
    TYPE_KINDS,
    DbObject,
    Expectation,
    MigrationObjects,
    covers,
)
from poststack.source.objects_parse import net_effect
from poststack.source.sqltext import SqlSyntaxError


@lru_cache(maxsize=8192)
def extract(sql: str, default_schema: str = "public") -> MigrationObjects:
    """The net effect of a migration's SQL. Raises SqlSyntaxError when pglast cannot parse it.

    Cached: diagnose and recover read the same thousands of files again and again.
    """
    return net_effect(sql, default_schema)


__all__ = ["KINDS", "RELATION_KINDS", "ROUTINE_KINDS", "TYPE_KINDS", "DbObject", "Expectation", "MigrationObjects",
           "SqlSyntaxError", "covers", "extract"]
