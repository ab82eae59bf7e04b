"""``poststack db lint``: static checks of migrations for operations that lock or break running applications.

Works on PostgreSQL's own parse tree (pglast), without a database: a CREATE INDEX inside a string or a
comment is not an index, and a table created earlier in the same migration is known to be new. Each
finding names the file, the line, the rule and the safer way to do the same thing.

A file silences rules for itself with a comment line ``-- poststack:lint-ignore RULE[,RULE]`` (or
``all``); naming a rule that does not exist is itself a finding, so a typo cannot silence anything.
Only migrations are linted, not rollback files: a rollback exists to drop things.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pglast import parser as pg_parser

from poststack.files import Migration, header_directives, load_migrations
from poststack.lint.rules import RULES, Hit, MigrationContext, NotNullChecks, Rule, check_statement
from poststack.sqltext import SqlSyntaxError, check_syntax, line_of

__all__ = ["RULES", "Finding", "LintReport", "Rule", "lint_migration", "lint_migrations", "lint_sql"]

IGNORE_DIRECTIVE = re.compile(r"^\s*--\s*poststack:lint-ignore\b:?(?P<rules>.*)$", re.IGNORECASE | re.MULTILINE)
_NEVER_IGNORED = frozenset({"syntax-error", "unknown-rule"})


@dataclass(frozen=True)
class Finding:
    """One risky operation: where it is, which rule, what happens, and what to do instead."""

    file: str
    line: int
    rule: str
    message: str
    alternative: str
    version: int | None = None

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message} (safer: {self.alternative})"


@dataclass
class FileLint:
    findings: list[Finding] = field(default_factory=list)
    ignored: int = 0  # findings silenced by the file's lint-ignore comments


@dataclass
class LintReport:
    """The findings of a whole directory; ``ok`` (no findings) is what the exit code reflects."""

    directory: str
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    ignored: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def ignored_rules(text: str) -> tuple[set[str], list[tuple[int, str]]]:
    """The rules a file silences, and the (line, name) of every name that is not a rule."""
    rules: set[str] = set()
    unknown: list[tuple[int, str]] = []
    for match in IGNORE_DIRECTIVE.finditer(text):
        line = line_of(text, match.start())
        for name in (n.strip().lower() for n in re.split(r"[,\s]+", match["rules"]) if n.strip()):
            if name == "all":
                rules.update(RULES)
            elif name in RULES:
                rules.add(name)
            else:
                unknown.append((line, name))
    return rules - _NEVER_IGNORED, unknown


def lint_sql(text: str, filename: str = "<sql>", *, no_transaction: bool | None = None,
             checks: NotNullChecks | None = None, version: int | None = None) -> FileLint:
    """Lint one migration's text. ``checks`` carries NOT NULL checks over from earlier migrations."""
    if no_transaction is None:
        no_transaction = "poststack:no-transaction" in header_directives(text)
    result = FileLint()
    ignore, unknown = ignored_rules(text)
    hits = [Hit("unknown-rule", line, f"lint-ignore names unknown rule {name!r}") for line, name in unknown]
    try:
        raw_statements = pg_parser.parse_sql(text)
    except pg_parser.ParseError:
        try:
            check_syntax(text)
        except SqlSyntaxError as exc:
            hits.append(Hit("syntax-error", exc.line or 1, exc.message))
        raw_statements = ()
    ctx = MigrationContext(no_transaction, checks if checks is not None else NotNullChecks())
    for raw in raw_statements:
        hits += check_statement(raw.stmt, line_of(text, raw.stmt_location or 0), ctx)
    for hit in sorted(hits, key=lambda h: h.line):
        if hit.rule in ignore:
            result.ignored += 1
            continue
        rule = RULES[hit.rule]
        result.findings.append(Finding(filename, hit.line, hit.rule, hit.message, rule.alternative, version))
    return result


def lint_migration(migration: Migration, checks: NotNullChecks | None = None) -> FileLint:
    return lint_sql(migration.sql, str(migration.path), no_transaction=migration.no_transaction, checks=checks,
                    version=migration.version)


def lint_migrations(directory: str | Path) -> LintReport:
    """Lint every migration of a directory in version order (NOT NULL checks carry across files).

    Raises MigrationFileError (exit 2) when the directory cannot be used as a migrations directory.
    """
    migrations = load_migrations(directory)
    migrations.raise_for_problems()
    report = LintReport(str(directory))
    checks = NotNullChecks()
    for migration in migrations:
        result = lint_migration(migration, checks)
        report.files += 1
        report.findings += result.findings
        report.ignored += result.ignored
    return report
