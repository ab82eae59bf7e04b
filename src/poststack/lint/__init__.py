"""``poststack db lint``: static checks of migrations for operations that lock or break running applications.

Works on PostgreSQL's own parse tree (pglast), without a database: a CREATE INDEX inside a string or a
comment is not an index, and a table created earlier in the same migration is known to be new. Each
finding names the file, the line, the rule and the safer way to do the same thing.

With a database URL, lint also reads the target's table sizes and history: each finding carries the size
of the table it touches (findings are ranked biggest table first), and the migrations not yet applied form
one batch, so a table created by an earlier migration of the batch is new to the later ones too.

A file silences rules for itself with a comment line ``-- poststack:lint-ignore RULE[,RULE]`` (or
``all``); naming a rule that does not exist is itself a finding, so a typo cannot silence anything.
Rollback files are linted too, with the rules that make a rollback fail or lock (a rollback exists to
drop things, so the destructive and compatibility rules do not apply to it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pglast import parser as pg_parser

from poststack.errors import UsageError
from poststack.lint.changes import long_identifiers
from poststack.lint.check import check_statement, finish
from poststack.lint.context import MigrationContext, NotNullChecks, RelationKey, created_relations
from poststack.lint.rules import DEFAULT_RULES, ROLLBACK_CATEGORIES, RULES, Hit, Rule
from poststack.lint.target import TableSize, TargetFacts, read_target
from poststack.source.files import Migration, header_directives, load_migrations
from poststack.source.sqltext import SqlSyntaxError, check_syntax, line_of, required

__all__ = ["RULES", "Finding", "LintReport", "Rule", "TableSize", "enabled_rules", "lint_migration",
           "lint_migrations", "lint_sql"]

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
    severity: str = "warning"
    table: str | None = None  # the existing table it touches, as the SQL names it
    rollback: bool = False  # found in the migration's rollback file
    size: TableSize | None = None  # with a database URL: the planner's size of ``table``

    def describe(self) -> str:
        size = f" [{self.size.describe()}]" if self.size else ""
        return f"{self.file}:{self.line}: {self.rule}: {self.message}{size} (safer: {self.alternative})"


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
    rollbacks: int = 0
    database: str | None = None  # masked URL when table sizes were read
    batch: list[int] = field(default_factory=list)  # versions not applied on the target (with a URL)

    @property
    def ok(self) -> bool:
        return not self.findings


def enabled_rules(enable: Iterable[str] = (), disable: Iterable[str] = (), *,
                  option: str = "--enable") -> frozenset[str]:
    """The default rules plus ``enable`` minus ``disable``; an unknown id is a usage error (exit 2)."""
    enable, disable = [r.strip().lower() for r in enable], [r.strip().lower() for r in disable]
    for name, rule in [*((option, r) for r in enable), *(("--disable", r) for r in disable)]:
        if rule != "all" and rule not in RULES:
            raise UsageError(f"{name} {rule}: no such lint rule (see 'poststack db lint --rules')")
    chosen = set(RULES) if "all" in enable else set(DEFAULT_RULES) | set(enable)
    return frozenset(chosen - set(disable) | _NEVER_IGNORED)


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
             checks: NotNullChecks | None = None, version: int | None = None, rollback: bool = False,
             enabled: frozenset[str] | None = None, created: set[RelationKey] | None = None,
             target: TargetFacts | None = None) -> FileLint:
    """Lint one migration's (or rollback's) text.

    ``checks`` carries NOT NULL checks over from earlier migrations; ``created`` the relations earlier
    migrations of the batch create (updated with this file's); ``target`` the table sizes.
    """
    if no_transaction is None:
        no_transaction = "poststack:no-transaction" in header_directives(text)
    rules = DEFAULT_RULES | _NEVER_IGNORED if enabled is None else enabled
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
    if created is not None:
        ctx.created = created  # shared: what this file creates is new to the rest of the batch
    for raw in raw_statements:
        hits += check_statement(required(raw.stmt), line_of(text, raw.stmt_location or 0), ctx)
    hits += finish(ctx)
    hits += long_identifiers(text)
    for hit in sorted(hits, key=lambda h: h.line):
        rule = RULES[hit.rule]
        if hit.rule not in rules or (rollback and rule.category not in ROLLBACK_CATEGORIES):
            continue
        if hit.rule in ignore:
            result.ignored += 1
            continue
        size = target.size_of(hit.table) if target is not None else None
        result.findings.append(Finding(filename, hit.line, hit.rule, hit.message, rule.alternative, version,
                                       rule.severity, hit.table, rollback, size))
    return result


def lint_migration(migration: Migration, checks: NotNullChecks | None = None, *,
                   enabled: frozenset[str] | None = None, created: set[RelationKey] | None = None,
                   target: TargetFacts | None = None) -> FileLint:
    return lint_sql(migration.sql, str(migration.path), no_transaction=migration.no_transaction, checks=checks,
                    version=migration.version, enabled=enabled, created=created, target=target)


def lint_rollback(migration: Migration, *, enabled: frozenset[str] | None = None,
                  target: TargetFacts | None = None) -> FileLint:
    """Lint a migration's rollback file, run the way ``rollback`` runs it (its own header, or the
    migration's no-transaction marker).

    Relations the migration itself creates count as new: dropping them is what the rollback is for, and
    they exist only because of the migration being undone.
    """
    assert migration.rollback is not None
    text = migration.rollback.text
    no_tx = migration.no_transaction or "poststack:no-transaction" in header_directives(text)
    try:
        created = created_relations([required(raw.stmt) for raw in pg_parser.parse_sql(migration.sql)])
    except pg_parser.ParseError:
        created = set()  # the migration's own syntax error is reported on the migration
    return lint_sql(text, str(migration.rollback.path), no_transaction=no_tx, version=migration.version,
                    rollback=True, enabled=enabled, created=created, target=target)


def lint_migrations(directory: str | Path, *, enabled: frozenset[str] | None = None,
                    database_url: str | None = None, history_schema: str = "poststack",
                    rollbacks: bool = True) -> LintReport:
    """Lint every migration (and rollback) of a directory in version order.

    NOT NULL checks carry across files. With ``database_url``, findings carry table sizes and are ranked
    biggest table first, and the migrations not yet applied share one batch of new relations.
    Raises MigrationFileError (exit 2) when the directory cannot be used, ConnectError (exit 3).
    """
    migrations = load_migrations(directory)
    migrations.raise_for_problems()
    target = read_target(database_url, history_schema) if database_url else None
    report = LintReport(str(directory), database=target.database if target else None)
    checks = NotNullChecks()
    batch: set[RelationKey] = set()
    for migration in migrations:
        pending = target is not None and migration.version not in target.applied
        if pending:
            report.batch.append(migration.version)
        result = lint_migration(migration, checks, enabled=enabled, created=batch if pending else None,
                                target=target)
        report.files += 1
        report.findings += result.findings
        report.ignored += result.ignored
        if rollbacks and migration.rollback is not None:
            back = lint_rollback(migration, enabled=enabled, target=target)
            report.rollbacks += 1
            report.findings += back.findings
            report.ignored += back.ignored
    if target is not None:  # stable sort: biggest table first, file order among equals
        report.findings.sort(key=lambda f: f.size.weight if f.size else (-1, -1), reverse=True)
    return report
