"""What every tool's layout reader produces, and what adopt reports: plain data, no I/O.

A layout reader turns another tool's directory into ``SourceMigration``s in that tool's order, plus
``Note``s for what it found but cannot carry. ``key`` is the identity the tool's own history table uses for
the migration (Flyway's version, yoyo's migration id, sqitch's change name...), so that the history reader
and the files can be matched without either knowing poststack's numbering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class NoteKind(StrEnum):
    """Why something is reported. ``NOT_CARRIED`` and ``NEEDS_EDIT`` make adopt exit 1; the others inform."""

    NOT_CARRIED = "not_carried"  # left out of the poststack directory (R__ repeatables, Java/Go/Python code)
    NEEDS_EDIT = "needs_edit"  # written, but poststack will refuse it until a human edits it
    CHANGED_SEMANTICS = "changed_semantics"  # written; runs differently under poststack (said how)
    INFO = "info"  # written; something worth knowing (a transaction wrapper removed, a rollback missing)

    @property
    def blocking(self) -> bool:
        return self in (NoteKind.NOT_CARRIED, NoteKind.NEEDS_EDIT)


@dataclass(frozen=True)
class Note:
    """One thing adopt reports about a source file; ``path`` is relative to the source directory."""

    kind: NoteKind
    path: str
    message: str


@dataclass(frozen=True)
class SourceMigration:
    """One migration as the other tool sees it.

    ``up``/``down`` are the SQL bodies with the tool's own markers removed (dbmate's ``-- migrate:up``,
    yoyo's header directives); ``down`` is None when the tool has no rollback for it.
    ``single_query`` says the tool sends the whole file as one query string (dbmate, golang-migrate,
    diesel), which PostgreSQL runs as one implicit transaction: a non-transactional file of several
    statements then behaves differently under poststack, which runs them one by one.
    """

    key: str
    version: str  # the tool's version as written (Flyway "1.2", dbmate "20240101120000", yoyo's id)
    name: str  # the tool's name for it, as written
    path: str  # the up file, relative to the source directory
    up: str
    down: str | None = None
    down_path: str | None = None
    no_transaction: bool = False
    down_no_transaction: bool = False
    single_query: bool = False
    planned_at: str | None = None  # sqitch: the plan's timestamp, which tells reworked changes apart
    notes: tuple[Note, ...] = ()


@dataclass
class Layout:
    """A source directory read by one tool's reader: migrations in the tool's order, and what was left out."""

    tool: str
    source: Path
    migrations: list[SourceMigration] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    project: str | None = None  # sqitch: the plan's %project, which its registry rows are keyed by


@dataclass(frozen=True)
class Claim:
    """The other tool's history says ``key`` is applied; when and by whom, where it says so."""

    key: str
    applied_at: object | None = None  # datetime when known
    applied_by: str | None = None
    row: str = ""  # the row, as a human reads it, for the audit reason


@dataclass
class ToolHistory:
    """What the other tool's table says: applied keys, and keys it marks dirty or failed (never adopted)."""

    table: str  # schema-qualified, as found
    claims: dict[str, Claim] = field(default_factory=dict)
    dirty: dict[str, str] = field(default_factory=dict)  # key -> why (golang-migrate dirty, Flyway success=false)
    changed: dict[str, str] = field(default_factory=dict)  # key -> why the file is not the one it applied
    unknown: list[str] = field(default_factory=list)  # keys the table has but no source file matches
    objects: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, schema, name): the tool's own
