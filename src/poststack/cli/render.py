"""Rendering library results: rich tables for people, stable JSON for programs. No decisions here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click


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

    t = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
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
