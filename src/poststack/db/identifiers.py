"""SQL identifiers that survive psycopg's placeholder parsing, whatever characters they hold.

psycopg turns ``%s`` in a query into a server placeholder whenever parameters are passed, without knowing
about quotes: a history schema named ``a%sb`` composed with ``sql.Identifier`` into a query that also takes
parameters counted as one more placeholder (``the query has 17 placeholders but 16 parameters``), and a
lone ``%`` made psycopg refuse the query. Doubling it (``%%``) is right only when parameters are passed, so
no one spelling fits every query. PostgreSQL's Unicode identifier form ``U&"a\\0025sb"`` names the same
object and holds no ``%`` at all: this module writes names containing ``%`` that way, and every other name
exactly as ``sql.Identifier`` does.
"""

from __future__ import annotations

from psycopg import sql
from psycopg.abc import AdaptContext


class Identifier(sql.Identifier):
    """``sql.Identifier`` whose text never contains ``%`` (see the module docstring)."""

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        if not any("%" in part for part in self._obj):
            return super().as_bytes(context)
        return b".".join(_unicode_identifier(part) for part in self._obj)


def _unicode_identifier(name: str) -> bytes:
    if "%" not in name:
        return sql.Identifier(name).as_bytes(None)
    escaped = name.replace("\\", "\\\\").replace('"', '""').replace("%", "\\0025")
    return f'U&"{escaped}"'.encode()


def regclass_text(schema: str, table: str) -> str:
    """``"schema"."table"`` as ``to_regclass()`` parses it (a parameter value, so ``%`` is harmless there)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
