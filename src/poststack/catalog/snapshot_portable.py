"""View definitions written the same way whatever PostgreSQL version printed them.

PostgreSQL 16 stopped qualifying column names in ``pg_get_viewdef`` when a query reads a single relation
(``SELECT id FROM app.accounts`` where 15 printed ``SELECT accounts.id``). ``portable_view_text`` parses the
definition (pglast), drops that qualifier wherever a SELECT reads exactly one relation, and prints it back,
so a golden schema written on one major version compares equal on another. Anything else is unchanged.
"""

from __future__ import annotations

from poststack.source.sqltext import required


def portable_view_text(text: str) -> str:
    """The definition printed canonically, without single-relation column qualifiers; ``text`` itself if
    it does not parse (a snapshot must never fail over a view)."""
    import pglast
    from pglast.stream import RawStream

    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return text
    for raw in statements:
        _strip(raw.stmt, set())
    return ";\n".join(RawStream()(raw) for raw in statements)


def _strip(node: object, qualifiers: set[str]) -> None:
    from pglast import ast

    if isinstance(node, list | tuple):
        for child in node:
            _strip(child, qualifiers)
        return
    if not isinstance(node, ast.Node):
        return
    if isinstance(node, ast.SelectStmt):
        sources = node.fromClause or ()
        qualifiers = set()
        if len(sources) == 1 and isinstance(sources[0], ast.RangeVar):
            source = sources[0]
            qualifiers = {required(source.alias.aliasname if source.alias else source.relname)}
    if isinstance(node, ast.ColumnRef) and qualifiers:
        fields = node.fields or ()
        if len(fields) == 2 and isinstance(fields[0], ast.String) and fields[0].sval in qualifiers:
            node.fields = (fields[1],)
        return
    for attribute in node:  # a Node iterates over its field names
        _strip(getattr(node, attribute, None), qualifiers)
