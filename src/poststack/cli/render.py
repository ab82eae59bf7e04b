"""Rendering library results: rich tables for people, stable JSON for programs. No decisions here.

Every text that reaches a terminal goes through ``escape`` here (``line``, ``block``, ``table``): history
rows, ``-- Description:`` headers, file names and server messages are data anyone who can write a file or a
history row controls, and a raw newline, ESC sequence or bidi override in them would forge output (a row
named ``x\nCurrent version: 999``). JSON needs no such care: json.dumps escapes control characters itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

# C0 controls, DEL, C1 controls; bidi embeddings, overrides and isolates (Trojan Source); line separators.
_UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A), 0x2028, 0x2029]
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE} | {
    9: "\\t", 10: "\\n", 13: "\\r"}
_BLOCK_ESCAPES = {c: v for c, v in _ESCAPES.items() if c not in (9, 10)}


def escape(text: object) -> str:
    """One line fit for a terminal: every control and bidi character shown as an escape (``\\n``, ``\\x1b``)."""
    return str(text).translate(_ESCAPES)


def escape_block(text: str) -> str:
    """Several lines (SQL shown by --dry-run): line breaks and tabs kept, every other control escaped."""
    return text.translate(_BLOCK_ESCAPES)


def line(text: object = "", *, err: bool = False) -> None:
    """Print one line; whatever it holds cannot start another line or move the cursor."""
    click.echo(escape(text), err=err)


def block(text: str) -> None:
    click.echo(escape_block(text))


class Lines(tuple[str, ...]):
    """A table cell of several lines: each escaped, then joined with real line breaks."""


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Lines):
        return "\n".join(escape(v) for v in value)
    return escape(value)


def jsonable(value: Any) -> Any:
    """Dataclasses, paths and datetimes to plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def echo_json(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2, sort_keys=False))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a rich table to stdout (rich is imported only when a table is actually shown)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title=escape(title) if title else None, title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(Text(cell(v)) for v in row))  # Text: a '[red]' in a name is not rich markup
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped or captured: do not squeeze columns into 80 characters
        console = Console(soft_wrap=False, width=200)
    console.print(t)


def short(checksum: str | None) -> str:
    return checksum[:12] if checksum else ""


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
