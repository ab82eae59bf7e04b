"""Adopt's plan and its application: files first (refusing to overwrite), then the history, in one transaction.

The plan is made before anything changes, and (unless a dry run) under the migration lock:

1. the tool's layout is read and converted (``convert``); each poststack file is new, or already there
   with the same bytes: any other file at that name or version is a conflict, and nothing is written;
2. the tool's table says which migrations are applied (``tables``); each claim is judged
   (``evidence.judge_claims``). One refused claim refuses the whole history, as recover does with a legacy
   table: the rest would be a guess. Dirty or failed versions are reported and never adopted;
3. the files are written, read back as poststack reads them, and every accepted claim becomes a history
   row with source ``adopt`` and an audit entry naming the tool's row, in one transaction; the tool's
   table is registered as ignored by drift checks, and a schema snapshot is recorded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from poststack.adopt import TOOLS
from poststack.adopt.convert import Conversion, Converted, Numbering, convert
from poststack.adopt.evidence import Verdict, judge_claims
from poststack.adopt.model import Claim, Layout, Note, ToolHistory
from poststack.adopt.tables import read_history
from poststack.catalog import ignored_objects
from poststack.catalog.drift import record_snapshot
from poststack.db.history import History, HistoryStatus
from poststack.engine.judgement import StateVerdict
from poststack.engine.target import Target
from poststack.errors import EXIT_ISSUES, EXIT_OK, MigrationFileError, UsageError
from poststack.source.files import Migration, SqlFile, load_migrations


class FileAction(StrEnum):
    """What adopt does with one converted file."""

    WRITE = "write"
    UNCHANGED = "unchanged"  # already there with the same bytes


class AdoptAction(StrEnum):
    """What adopt does with one version the tool's table mentions (or one file it does not)."""

    ADOPT = "adopt"  # the claim is accepted: a history row with source adopt
    REFUSED = "refused"  # the evidence contradicts the claim, or the file changed since the tool applied it
    BLOCKED = "blocked"  # accepted, but another claim was refused: nothing of the tool's history is adopted
    DIRTY = "dirty"  # the tool's own table marks it dirty or failed: never adopted
    ALREADY = "already_recorded"
    PENDING = "pending"  # the tool's table does not list it
    NO_FILE = "no_file"  # the tool's table lists a version no file has


@dataclass(frozen=True)
class FileStep:
    """One migration's files: where the tool had it, where poststack will, and what was noted."""

    tool_version: str
    source_path: str
    filename: str
    rollback_filename: str | None
    no_transaction: bool
    action: FileAction
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryStep:
    """What adopt does with one version the tool's table mentions (or one file it does not)."""

    tool_version: str
    version_text: str | None  # None: the tool's table names a version no file has
    name: str
    action: AdoptAction
    reason: str
    status: StateVerdict | None = None  # the evidence verdict, when the claim was judged
    evidence: list[str] = field(default_factory=list)


@dataclass
class AdoptResult:
    tool: str
    source: str
    target: str
    dry_run: bool
    numbering: Numbering
    numbering_reason: str
    table: str | None = None  # the tool's history table, schema-qualified; None when the database has none
    files: list[FileStep] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # everything reported, files' notes included
    history: list[HistoryStep] = field(default_factory=list)

    @property
    def recorded(self) -> list[HistoryStep]:
        """Recorded (in a dry run: would be)."""
        return [s for s in self.history if s.action == AdoptAction.ADOPT]

    @property
    def refused(self) -> list[HistoryStep]:
        return [s for s in self.history if s.action in (AdoptAction.REFUSED, AdoptAction.DIRTY, AdoptAction.NO_FILE)]

    @property
    def not_carried(self) -> list[Note]:
        return [n for n in self.notes if n.kind.blocking]

    @property
    def exit_code(self) -> int:
        """1 when a claim was refused or something could not be carried (a human must look), else 0."""
        return EXIT_ISSUES if self.refused or self.not_carried else EXIT_OK


def _sql_file(path: Path, text: str) -> SqlFile:
    return SqlFile(path, text, hashlib.sha256(text.encode()).hexdigest())


def _as_migration(converted: Converted, target: Path) -> Migration:
    """The migration exactly as poststack will load it once written."""
    up = _sql_file(target / converted.filename, converted.text)
    rollback = (_sql_file(target / converted.rollback_filename, converted.rollback_text)
                if converted.rollback_filename and converted.rollback_text is not None else None)
    return Migration(converted.version, converted.version_text, converted.name, up, rollback)


def _plan_files(conversion: Conversion, target: Path, existing: dict[int, Migration]) -> list[FileStep]:
    """Each file new or byte-identical; a conflict anywhere refuses the lot before anything is written."""
    steps = []
    for c in conversion.files:
        paths = [(target / c.filename, c.text)]
        if c.rollback_filename and c.rollback_text is not None:
            paths.append((target / c.rollback_filename, c.rollback_text))
        same = all(p.is_file() and p.read_bytes() == text.encode() for p, text in paths)
        for path, text in paths:
            if path.exists() and path.read_bytes() != text.encode():
                raise MigrationFileError(f"{path} exists with other content; adopt never overwrites a poststack "
                                         "file (move it away, or choose another --migrations-path)")
        other = existing.get(c.version)
        if other is not None and other.filename != c.filename:
            raise MigrationFileError(f"{other.path} already has version {c.version_text}, which adopt would give "
                                     f"to {c.source.path}; choose another --migrations-path")
        steps.append(FileStep(c.source.version, c.source.path, c.filename, c.rollback_filename, c.no_transaction,
                              FileAction.UNCHANGED if same else FileAction.WRITE, list(c.notes)))
    return steps


def _plan_history(conversion: Conversion, tool_history: ToolHistory, verdicts: dict[int, Verdict],
                  recorded: set[int], table: str) -> list[HistoryStep]:
    steps: list[HistoryStep] = []
    newest_claimed = max((c.version for c in conversion.files if c.source.key in tool_history.claims), default=0)
    for c in conversion.files:
        key, claim = c.source.key, tool_history.claims.get(c.source.key)
        if key in tool_history.dirty:
            seen = verdicts.get(c.version)  # shown, never acted on: what the failed run left
            steps.append(HistoryStep(c.source.version, c.version_text, c.name, AdoptAction.DIRTY,
                                     tool_history.dirty[key] + "; not adopted" + (
                                         f"; catalog: {seen.summary}" if seen else ""),
                                     seen.status if seen else None, seen.evidence if seen else []))
        elif claim is None:
            late = " (older than an adopted version: migrate needs --allow-out-of-order)" if (
                c.version < newest_claimed) else ""
            steps.append(HistoryStep(c.source.version, c.version_text, c.name, AdoptAction.PENDING,
                                     f"{table} does not list it: pending{late}"))
        elif key in tool_history.changed:
            steps.append(HistoryStep(c.source.version, c.version_text, c.name, AdoptAction.REFUSED,
                                     f"{table} says it is applied, but {tool_history.changed[key]}"))
        elif c.version in recorded:
            steps.append(HistoryStep(c.source.version, c.version_text, c.name, AdoptAction.ALREADY,
                                     "already in poststack's history"))
        else:
            v = verdicts[c.version]
            action = AdoptAction.ADOPT if v.accepted else AdoptAction.REFUSED
            said = f"{table} says it is applied ({claim.row})"
            reason = f"{said}; catalog: {v.summary}" if v.accepted else f"{said}, but {v.summary}"
            steps.append(HistoryStep(c.source.version, c.version_text, c.name, action, reason, v.status,
                                     v.evidence))
    for version in tool_history.unknown:
        steps.append(HistoryStep(str(version), None, "", AdoptAction.NO_FILE,
                                 f"{table} lists {version}, but --source has no migration for it: not adopted"))
    refused = next((s for s in steps if s.action == AdoptAction.REFUSED), None)
    if refused is not None:
        # Mixed evidence about the tool's history: recording the rest would be a guess.
        steps = [HistoryStep(s.tool_version, s.version_text, s.name, AdoptAction.BLOCKED,
                             f"not adopted: {refused.tool_version} was refused; {s.reason}", s.status, s.evidence)
                 if s.action == AdoptAction.ADOPT else s for s in steps]
    return steps


def _write_files(conversion: Conversion, steps: list[FileStep], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for c, step in zip(conversion.files, steps, strict=True):
        if step.action != FileAction.WRITE:
            continue
        for name, text in ((c.filename, c.text), (c.rollback_filename, c.rollback_text)):
            if name is None or text is None:
                continue
            temporary = target / f".{name}.adopt-tmp"
            temporary.write_bytes(text.encode())
            os.replace(temporary, target / name)  # never a half-written migration under its real name


def _record(conn: psycopg.Connection[Any], history: History, steps: list[HistoryStep], loaded: dict[int, Migration],
            claims: dict[int, Claim], tool: str, tool_history: ToolHistory) -> None:
    writes = [s for s in steps if s.action == AdoptAction.ADOPT]
    with conn.transaction():
        history.ensure(conn)  # an older layout is upgraded to accept the adopt source
        for s in writes:
            assert s.version_text is not None
            version = int(s.version_text)
            history.insert(conn, loaded[version], source="adopt")
            claim = claims[version]
            changes: dict[str, Any] = {}
            if isinstance(claim.applied_at, datetime):
                changes["applied_at"] = claim.applied_at
            if claim.applied_by:
                changes["applied_by"] = claim.applied_by
            if changes:
                history.update(conn, version, **changes)
        after = {r.version: r for r in history.rows(conn)}
        for s in writes:
            assert s.version_text is not None
            version = int(s.version_text)
            history.audit(conn, command="adopt", action=AdoptAction.ADOPT, version=version, before=None,
                          after=after[version], reason=f"from {tool}: {s.reason}")
        owned = [ignored_objects.IgnoredObject(kind, schema, name) for kind, schema, name in tool_history.objects]
        ignored_objects.add(conn, history.schema, owned,
                            f"{tool}'s history ({tool_history.table}), left in place by 'poststack db adopt'")


def _existing(target: Path) -> dict[int, Migration]:
    if not target.exists():
        return {}
    found = load_migrations(target)
    found.raise_for_problems()
    return found.by_version()


def adopt(target: Target, tool: str, source: Path | None = None, *, dry_run: bool = False,
          table: str | None = None) -> AdoptResult:
    """Convert ``tool``'s directory into the target's migrations path and adopt its history (see module doc)."""
    if tool not in TOOLS:
        raise UsageError(f"--from: {tool!r} is not one of {', '.join(sorted(TOOLS))}")
    source = Path(source) if source is not None else Path(TOOLS[tool].default_source)
    directory = target.migrations_path
    if source.exists() and directory.exists() and source.resolve() == directory.resolve():
        raise UsageError(f"--source {source} is also the poststack migrations directory: pass another "
                         "--migrations-path for poststack's files")
    layout: Layout = TOOLS[tool].read_layout(source)
    conversion = convert(layout)
    existing = _existing(directory)
    file_steps = _plan_files(conversion, directory, existing)
    result = AdoptResult(tool, str(source), str(directory), dry_run, conversion.numbering, conversion.reason,
                         files=file_steps, notes=[*layout.notes, *conversion.notes])
    planned = {**existing, **{c.version: _as_migration(c, directory) for c in conversion.files}}
    # The history tables are created only once the plan is made: bad input leaves the database as it was.
    with target.connection() if dry_run else target.locked(create_history=False) as conn:
        tool_history = read_history(conn, layout, table)
        if tool_history is None:
            if not dry_run:
                _write_files(conversion, file_steps, directory)
            return result
        result.table = tool_history.table
        applied = {r.version for r in target.history.rows(conn) if r.status == HistoryStatus.APPLIED}
        recorded = {r.version for r in target.history.rows(conn)}
        by_key = conversion.by_key()
        claimed = {by_key[k].version for k in (*tool_history.claims, *tool_history.dirty) if k in by_key} - recorded
        verdicts = judge_claims(target, conn, sorted(planned.values(), key=lambda m: m.version), claimed,
                                recorded=applied)
        result.history = _plan_history(conversion, tool_history, verdicts, recorded, tool_history.table)
        if dry_run:
            return result
        _write_files(conversion, file_steps, directory)
        loaded = load_migrations(directory)
        loaded.raise_for_problems()
        by_version = loaded.by_version()
        for version, migration in planned.items():
            if by_version.get(version) is None or by_version[version].checksum != migration.checksum:
                raise MigrationFileError(f"{migration.path} changed while adopt was writing it; nothing was recorded")
        if any(s.action == AdoptAction.REFUSED for s in result.history):
            return result  # the files are written (a later run finds them identical); the database is untouched
        claims = {by_key[k].version: c for k, c in tool_history.claims.items() if k in by_key}
        target.history.ensure(conn)
        _record(conn, target.history, result.history, by_version, claims, tool, tool_history)
        if result.recorded:
            record_snapshot(conn, target.history.schema)
        return result
