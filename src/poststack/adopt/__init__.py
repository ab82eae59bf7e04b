"""``poststack db adopt --from TOOL``: another migration tool's directory and history, taken over.

One module per tool's layout (``flyway``, ``golang_migrate``, ``dbmate``, ``diesel``, ``yoyo``, ``sqitch``),
``convert`` for the pure file conversion, ``tables`` for reading the tools' history tables, ``evidence`` for
the one question adopt does not answer itself (is a claimed version really applied?), and ``plan`` for the
plan and its application.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from poststack.adopt import dbmate, diesel, flyway, golang_migrate, sqitch, yoyo
from poststack.adopt.model import Layout


@dataclass(frozen=True)
class Tool:
    name: str
    default_source: str
    read_layout: Callable[[Path], Layout]


TOOLS = {t.name: t for t in (
    Tool("flyway", "sql", flyway.read_layout),
    Tool("golang-migrate", "db/migrations", golang_migrate.read_layout),
    Tool("dbmate", "db/migrations", dbmate.read_layout),
    Tool("diesel", "migrations", diesel.read_layout),
    Tool("yoyo", "migrations", yoyo.read_layout),
    Tool("sqitch", ".", sqitch.read_layout),
)}

__all__ = ["TOOLS", "Tool"]
