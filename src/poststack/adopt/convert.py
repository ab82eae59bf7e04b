"""Another tool's migrations -> poststack files (``NNN_name.sql`` + ``NNN_name.rollback.sql``). Pure: no I/O.

Numbering: the tool's versions are kept as poststack versions when they can be (every one a run of ASCII
digits, above 0, within the history's bigint, strictly increasing as integers in the tool's own order:
dbmate's and golang-migrate's timestamps usually are). Otherwise (Flyway's ``1.2``, yoyo's and sqitch's
names, diesel's ``00000000000000`` setup migration) every migration is renumbered 1..n in the tool's order
and the original version and name stay in the file name: ``003_1.2__add_users.sql``. One rule for the whole
directory, never a mix, so that the order of the files is the tool's order at a glance.

Bodies: a clean ``BEGIN; ... COMMIT;`` wrapper is removed (poststack runs every transactional file in its
own transaction and refuses transaction control in it); a statement PostgreSQL refuses inside a
transaction block (``CREATE INDEX CONCURRENTLY``, ``VACUUM``...) makes the file ``-- poststack:no-transaction``
as the tool's own flag does; an empty body becomes a comment-only no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from poststack.adopt.model import Layout, Note, NoteKind, SourceMigration
from poststack.source.files import MAX_VERSION


class Numbering(StrEnum):
    """One rule for the whole directory (see the module docstring)."""

    KEPT = "kept"  # the tool's versions are poststack's
    RENUMBERED = "renumbered"  # 1..n in the tool's order, the original version kept in the file name


KEPT, RENUMBERED = Numbering.KEPT, Numbering.RENUMBERED  # the names before the enum (tests import them)
NO_TRANSACTION = "-- poststack:no-transaction"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_\-.]+")
_DIGITS = re.compile(r"[0-9]+")
_WRAPPER_END = re.compile(r"(?is)\b(begin|start\s+transaction|commit|end)\b(\s+(work|transaction))?\s*$")
_BEGIN_KINDS, _COMMIT_KINDS = (0, 1), (2,)  # pglast TransactionStmtKind: BEGIN, START; COMMIT
_KEEPS_TRANSACTION = (4, 5, 6)  # SAVEPOINT, RELEASE, ROLLBACK TO: stay inside the transaction


@dataclass(frozen=True)
class Converted:
    """One migration as poststack will read it."""

    source: SourceMigration
    version: int
    version_text: str
    name: str
    text: str
    rollback_text: str | None
    no_transaction: bool
    notes: tuple[Note, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.version_text}_{self.name}.sql"

    @property
    def rollback_filename(self) -> str | None:
        return f"{self.version_text}_{self.name}.rollback.sql" if self.rollback_text is not None else None


@dataclass
class Conversion:
    numbering: Numbering
    reason: str
    files: list[Converted] = field(default_factory=list)

    @property
    def notes(self) -> list[Note]:
        return [n for f in self.files for n in f.notes]

    def by_key(self) -> dict[str, Converted]:
        return {f.source.key: f for f in self.files}


def safe_name(text: str) -> str:
    """A poststack file-name part: letters, digits, ``_ - .``, starting with a letter or digit."""
    name = _UNSAFE_NAME.sub("_", text).lstrip("_-.")
    if name.endswith(".rollback"):
        name += "_"  # NNN_x.rollback.sql would read as the rollback of NNN_x
    return name or "migration"


def numbering(migrations: list[SourceMigration]) -> tuple[Numbering, str]:
    """Keep the tool's versions, or renumber: (KEPT | RENUMBERED, why)."""
    previous = 0
    for m in migrations:
        if not _DIGITS.fullmatch(m.version):
            return Numbering.RENUMBERED, f"version {m.version!r} ({m.path}) is not a run of digits"
        value = int(m.version)
        if value == 0 or value > MAX_VERSION:
            return Numbering.RENUMBERED, f"version {m.version} ({m.path}) is outside 1..{MAX_VERSION}"
        if value <= previous:
            return Numbering.RENUMBERED, (f"version {m.version} ({m.path}) does not sort after the one before it "
                                          "as a number")
        previous = value
    return Numbering.KEPT, "every version is a run of digits, increasing in the tool's order"


def convert(layout: Layout) -> Conversion:
    """The poststack files for a layout, in the tool's order."""
    how, reason = numbering(layout.migrations)
    width = max(3, len(str(len(layout.migrations))))
    result = Conversion(how, reason)
    for index, m in enumerate(layout.migrations, start=1):
        if how == Numbering.KEPT:
            version_text, name = m.version, safe_name(m.name)
        else:
            version_text = f"{index:0{width}d}"
            name = safe_name(m.name if m.version == m.name else f"{m.version}__{m.name}")
        up, up_no_tx, up_notes = prepare_body(m.up, m, m.path, m.no_transaction)
        down: str | None = None
        notes = list(m.notes) + up_notes
        if m.down is not None:
            down, _, down_notes = prepare_body(m.down, m, m.down_path or m.path, m.down_no_transaction)
            notes += down_notes
        else:
            notes.append(Note(NoteKind.INFO, m.path, f"{layout.tool} has no rollback for it: none written"))
        result.files.append(Converted(m, int(version_text), version_text, name, up, down, up_no_tx,
                                      tuple(notes)))
    return result


def prepare_body(body: str, m: SourceMigration, path: str, no_transaction: bool) -> tuple[str, bool, list[Note]]:
    """The file text poststack gets: a header naming the origin, the directive if needed, the body."""
    tool_flag = no_transaction
    notes: list[Note] = []
    statements = _parse(body)
    if statements is None:
        notes.append(Note(NoteKind.INFO, path, "poststack's parser cannot read it: written unchanged, "
                                               "without checking for transaction control"))
        count = 0
    else:
        body, statements, wrapper_notes = _without_wrapper(body, statements, path)
        notes += wrapper_notes
        outside = [_outside_transaction(s) for s in statements]
        needs = next((w for w in outside if w), None)
        if needs and not no_transaction:
            no_transaction = True
            notes.append(Note(NoteKind.INFO, path, f"{needs} cannot run in a transaction block: "
                                                   "marked -- poststack:no-transaction"))
        count = len(statements)
    if no_transaction and count > 1 and m.single_query:
        how = "the tool's flag" if tool_flag else "a statement that cannot run in a transaction"
        notes.append(Note(NoteKind.CHANGED_SEMANTICS, path,
                          f"non-transactional ({how}) with {count} statements: the tool sends a file as one query "
                          "string (one implicit transaction, or an error with CONCURRENTLY; golang-migrate's "
                          "x-multi-statement splits it); poststack runs them one by one and resumes after a failure"))
    header = [f"-- Adopted from {path}"] + ([NO_TRANSACTION] if no_transaction else [])
    text = "\n".join(header) + "\n"
    if statements is not None and count == 0:
        comments = body.strip("\n")
        text += "-- (empty in the original: a no-op)\n" + (comments + "\n" if comments.strip() else "")
    else:
        text += "\n" + body.strip("\n") + "\n"
    return text, no_transaction, notes


def _parse(body: str) -> list[Any] | None:
    from pglast import parser

    try:
        return list(parser.parse_sql(body))
    except parser.ParseError:
        return None


def _without_wrapper(body: str, statements: list[Any], path: str) -> tuple[str, list[Any], list[Note]]:
    """Remove a leading BEGIN and trailing COMMIT that wrap the whole body; report any other control."""
    control = [(i, s) for i, s in enumerate(statements) if type(s.stmt).__name__ == "TransactionStmt"
               and int(s.stmt.kind) not in _KEEPS_TRANSACTION]
    if not control:
        return body, statements, []
    first, last = statements[0].stmt, statements[-1].stmt
    wrapped = (len(control) == 2 and control[0][0] == 0 and control[1][0] == len(statements) - 1
               and int(first.kind) in _BEGIN_KINDS and not first.options and int(last.kind) in _COMMIT_KINDS
               and not getattr(last, "chain", False))
    if not wrapped:
        return body, statements, [Note(NoteKind.NEEDS_EDIT, path,
                                       "transaction control other than one BEGIN ... COMMIT around the whole "
                                       "file: written unchanged; poststack refuses it until it is edited")]
    text = _cut(body, statements[-1], last_one=True)
    text = _cut(text, statements[0], last_one=False)
    reparsed = _parse(text) or []
    return text, reparsed, [Note(NoteKind.INFO, path, "its BEGIN ... COMMIT wrapper was removed: poststack runs "
                                                      "the file in one transaction itself")]


def _cut(body: str, raw: Any, *, last_one: bool) -> str:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(body)
    match = _WRAPPER_END.search(body, start, end)
    if match is None:  # not where the parser says: leave the text alone rather than guess
        return body
    after = end + 1 if end < len(body) and body[end] == ";" else end
    return body[:match.start()] + body[after:]


def _outside_transaction(raw: Any) -> str | None:
    """The statement, named, when PostgreSQL refuses to run it inside a transaction block."""
    stmt = raw.stmt
    kind = type(stmt).__name__
    if kind == "IndexStmt" and stmt.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and stmt.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt" and any(getattr(p, "defname", None) == "concurrently" for p in stmt.params or ()):
        return "REINDEX CONCURRENTLY"
    named = {"VacuumStmt": "VACUUM", "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE",
             "AlterSystemStmt": "ALTER SYSTEM", "CreateTableSpaceStmt": "CREATE TABLESPACE",
             "DropTableSpaceStmt": "DROP TABLESPACE", "CreateSubscriptionStmt": "CREATE SUBSCRIPTION"}
    if kind == "VacuumStmt" and not stmt.is_vacuumcmd:
        return None  # ANALYZE runs in a transaction
    return named.get(kind)
