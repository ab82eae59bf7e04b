"""validate: the checks a CI job runs before deploying. File checks never touch a database.

``files``: every file is named right, readable, and parses with pglast (PostgreSQL's own parser), with the
file and line of a syntax error. ``rollbacks``: every migration has a rollback and every rollback belongs to
a migration; given a database, also that no applied migration's rollback file changed in meaning since it
was applied (``rollback`` would refuse it). ``checksums``: every applied migration's file still has the
checksum recorded when it ran (this one always needs the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from poststack.config import DEFAULT_SCHEMA
from poststack.db import embedded
from poststack.db.connection import connect, mask_url
from poststack.db.history import History
from poststack.engine.plan import MigrationState, compare
from poststack.lint import lint_sql
from poststack.source.files import Migration, MigrationSet, SqlFile, header_directives, load_migrations
from poststack.source.sqltext import SqlSyntaxError, check_syntax

CHECKS = ("files", "checksums", "rollbacks")


@dataclass(frozen=True)
class ValidationProblem:
    check: str  # files | checksums | rollbacks
    message: str  # one line, naming the file (and line) or version at fault
    path: str | None = None
    line: int | None = None
    version: int | None = None


@dataclass
class ValidationResult:
    checks: list[str]
    migrations: int
    problems: list[ValidationProblem] = field(default_factory=list)
    database: str | None = None  # masked URL, when checksums were checked
    warnings: list[ValidationProblem] = field(default_factory=list)  # worth a look, but not failures

    @property
    def ok(self) -> bool:
        return not self.problems


def _syntax(file: SqlFile) -> ValidationProblem | None:
    try:
        check_syntax(file.text)
    except SqlSyntaxError as exc:
        where = f"{file.path}:{exc.line}" if exc.line else str(file.path)
        return ValidationProblem("files", f"{where}: syntax error: {exc.message}", str(file.path), exc.line)
    return None


def check_files(migrations: MigrationSet) -> list[ValidationProblem]:
    """Naming, encoding, duplicates (from discovery) and syntax of every migration and rollback file, and
    CONCURRENTLY in a file that runs in a transaction (PostgreSQL refuses it there, so a rollback with it
    would fail exactly when it is needed)."""
    problems = [ValidationProblem("files", p.message, str(p.path), None, p.version)
                for p in migrations.problems if p.code != "orphan_rollback"]
    for m in migrations:
        for file in (m.up, m.rollback):
            if file is not None and (problem := _syntax(file)) is not None:
                problems.append(ValidationProblem(problem.check, problem.message, problem.path, problem.line,
                                                  m.version))
            elif file is not None:
                problems += _concurrently(m, file)
    return problems


def _concurrently(migration: Migration, file: SqlFile) -> list[ValidationProblem]:
    no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(file.text)
    found = lint_sql(file.text, str(file.path), no_transaction=no_tx, enabled=_CONCURRENTLY).findings
    return [ValidationProblem("files", f"{f.file}:{f.line}: {f.message}; {f.alternative}", f.file, f.line,
                              migration.version) for f in found]


_CONCURRENTLY = frozenset({"concurrently-in-transaction"})


def no_op_warnings(migrations: MigrationSet) -> list[ValidationProblem]:
    """Empty or comment-only files: accepted as no-ops (histories keep placeholders), but worth a look,
    because an empty rollback of a migration that changes the schema leaves that change in place."""
    warnings = []
    for m in migrations:
        if m.up.is_no_op:
            warnings.append(ValidationProblem("files", f"{m.path}: no statements (empty or only comments); "
                                              "it is applied as a no-op", str(m.path), None, m.version))
        if m.rollback is not None and m.rollback.is_no_op:
            warnings.append(ValidationProblem("rollbacks", f"{m.rollback.path}: no statements (empty or only "
                                              "comments); rolling back undoes nothing", str(m.rollback.path),
                                              None, m.version))
    return warnings


def check_rollbacks(migrations: MigrationSet) -> list[ValidationProblem]:
    problems = [ValidationProblem("rollbacks", f"{m.path}: no rollback file ({m.version_text}_{m.name}.rollback.sql)",
                                  str(m.path), None, m.version)
                for m in migrations if m.rollback is None]
    problems += [ValidationProblem("rollbacks", p.message, str(p.path), None, p.version)
                 for p in migrations.problems if p.code == "orphan_rollback"]
    return problems


def _state(migrations: MigrationSet, database_url: str, history_schema: str) -> MigrationState:
    with connect(database_url, autocommit=True) as conn:
        return compare(migrations, History(history_schema).rows(conn))


def check_checksums(migrations: MigrationSet, database_url: str | None = None, history_schema: str = DEFAULT_SCHEMA,
                    *, state: MigrationState | None = None) -> list[ValidationProblem]:
    """Applied migrations whose file is gone or differs from what was applied (cosmetic edits included:
    the recorded checksum no longer matches, and 'repair' re-records it)."""
    if state is None:
        assert database_url is not None
        state = _state(migrations, database_url, history_schema)
    problems = []
    for c in state.changed:
        path = migrations.directory / c.filename
        what = ("comments or whitespace changed (cosmetic; 'poststack db repair' re-records it)"
                if c.kind == "cosmetic_change" else "changed since it was applied")
        problems.append(ValidationProblem("checksums", f"{path}: {what} (recorded {c.stored_checksum[:12]}, "
                                          f"file {c.file_checksum[:12]})", str(path), None, c.version))
    for row in state.missing_files:
        problems.append(ValidationProblem("checksums", f"version {row.version_text} ({row.name}) is applied but "
                                          f"its file is missing from {migrations.directory}", None, None,
                                          row.version))
    return problems


def check_recorded_rollbacks(state: MigrationState) -> list[ValidationProblem]:
    """Rollback files whose meaning changed since their migration was applied: 'rollback' refuses them.

    Cosmetic edits pass here (rollback runs them, with a warning); diagnose reports them as low.
    """
    return [ValidationProblem("rollbacks", f"{c.path}: changed in meaning since {c.version_text} was applied "
                              f"(recorded {c.stored_checksum[:12]}, file {c.file_checksum[:12]}); rollback refuses "
                              "it: see 'poststack db diagnose'", c.path, None, c.version)
            for c in state.changed_rollbacks if not c.cosmetic]


def validate(migrations_path: str | Path, *, files: bool = True, rollbacks: bool = True,
             checksums: bool = True, database_url: str | None = None,
             history_schema: str = DEFAULT_SCHEMA) -> ValidationResult:
    """Run the chosen checks. Raises MigrationFileError (exit 2) when the directory cannot be read.

    ``rollbacks`` compares the rollback files with the history only when a database is given (or the
    checksums check connects anyway); without one it stays a check of the files alone.
    """
    migrations = load_migrations(migrations_path)
    chosen = [name for name, wanted in zip(CHECKS, (files, checksums, rollbacks), strict=True) if wanted]
    result = ValidationResult(chosen, len(migrations))
    if files:
        result.problems += check_files(migrations)
    if rollbacks:
        result.problems += check_rollbacks(migrations)
    if files or rollbacks:
        result.warnings += [w for w in no_op_warnings(migrations)
                            if (w.check == "files" and files) or (w.check == "rollbacks" and rollbacks)]
    if checksums and database_url is None:
        database_url = embedded.default_url()
    if database_url is not None and (checksums or rollbacks):
        result.database = mask_url(database_url)
        state = _state(migrations, database_url, history_schema)
        if rollbacks:
            result.problems += check_recorded_rollbacks(state)
        if checksums:
            result.problems += check_checksums(migrations, state=state)
    return result
